#include "etna/rag/chunker.h"

#include <algorithm>
#include <unordered_map>

#include "etna/base/error.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::rag {

int TokenCounter::count(std::string_view word) const {
  if (tok_ == nullptr) return 1 + static_cast<int>(word.size() > 6 ? (word.size() - 1) / 6 : 0);
  auto& cache = cache_;
  auto it = cache.find(std::string(word));
  if (it != cache.end()) return it->second;
  if (cache.size() > 200000) cache.clear();
  // A leading space makes the word look as it does mid-sentence to BPE/SPM vocabularies.
  const int n = std::max<int>(1, static_cast<int>(tok_->encode(" " + std::string(word), {false, false}).size()));
  cache.emplace(std::string(word), n);
  return n;
}

namespace {

// A word of the document with its source position.
struct Unit {
  size_t begin, end;  // in Document::text
  size_t block;
  int line_start, line_end;
  uint64_t src_start, src_end;
  int tokens;
  bool para_end = false;      // last word of a block
  bool sentence_end = false;  // ends with . ! ? (or : ;)
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

void units_of_block(const Document& doc, size_t bi, const TokenCounter& counter, std::vector<Unit>& out) {
  const Block& b = doc.blocks[bi];
  const std::string& s = doc.text;
  int line = b.line_start;
  size_t i = b.begin;
  const size_t first = out.size();
  while (i < b.end) {
    while (i < b.end && is_space(s[i])) {
      if (s[i] == '\n' && b.verbatim) ++line;
      ++i;
    }
    if (i >= b.end) break;
    size_t j = i;
    while (j < b.end && !is_space(s[j])) ++j;
    Unit u;
    u.begin = i;
    u.end = j;
    u.block = bi;
    if (b.verbatim) {
      u.line_start = u.line_end = line;
      u.src_start = b.src_byte_start + (i - b.begin);
      u.src_end = b.src_byte_start + (j - b.begin);
    } else {
      u.line_start = b.line_start;
      u.line_end = b.line_end;
      u.src_start = b.src_byte_start;
      u.src_end = b.src_byte_end;
    }
    u.tokens = counter.count(std::string_view(s).substr(i, j - i));
    const char last = s[j - 1];
    u.sentence_end = last == '.' || last == '!' || last == '?' || last == ':' || last == ';';
    out.push_back(u);
    i = j;
  }
  if (out.size() > first) out.back().para_end = true;
}

void trim(std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && is_space(s[a])) ++a;
  while (b > a && is_space(s[b - 1])) --b;
  s = s.substr(a, b - a);
}

// Chunks of one section (units [0, n) share a heading and a page).
void chunk_section(const Document& doc, const std::vector<Unit>& u, const std::string& heading,
                   const ChunkOptions& opt, std::vector<Chunk>& out) {
  const size_t n = u.size();
  size_t s = 0;
  while (s < n) {
    // Greedy: the longest run from s within max_tokens (at least one word).
    size_t e = s;
    int tokens = 0;
    while (e < n && (e == s || tokens + u[e].tokens <= opt.max_tokens)) tokens += u[e++].tokens;
    size_t cut = e;
    if (e < n) {
      // Prefer a paragraph end, else a sentence end, in the second half of the run.
      int acc = 0;
      size_t best_para = 0, best_sent = 0;
      for (size_t k = s; k < e; ++k) {
        acc += u[k].tokens;
        if (acc * 2 < tokens) continue;
        if (u[k].para_end) best_para = k + 1;
        if (u[k].sentence_end) best_sent = k + 1;
      }
      cut = best_para ? best_para : best_sent ? best_sent : e;
    }
    Chunk c;
    c.text = doc.text.substr(u[s].begin, u[cut - 1].end - u[s].begin);
    trim(c.text);
    c.heading = heading;
    c.page = doc.blocks[u[s].block].page;
    c.line_start = u[s].line_start;
    c.line_end = u[cut - 1].line_end;
    c.byte_start = u[s].src_start;
    c.byte_end = u[cut - 1].src_end;
    c.tokens = 0;
    for (size_t k = s; k < cut; ++k) c.tokens += u[k].tokens;
    out.push_back(std::move(c));
    if (cut >= n) break;
    // Next chunk starts up to overlap_tokens before the cut (always moving forward).
    size_t next = cut;
    int back = 0;
    while (next > s + 1 && back + u[next - 1].tokens <= opt.overlap_tokens) back += u[--next].tokens;
    s = next;
  }
}

}  // namespace

std::vector<Chunk> chunk_document(const Document& doc, const ChunkOptions& opt, const TokenCounter& counter) {
  if (opt.max_tokens < 8 || opt.max_tokens > 1000000)
    fail(ErrorKind::invalid_argument, "chunk size must be between 8 and 1000000 tokens, got {}", opt.max_tokens);
  if (opt.overlap_tokens < 0 || opt.overlap_tokens * 2 >= opt.max_tokens)
    fail(ErrorKind::invalid_argument, "overlap must be at least 0 and less than half the chunk size ({}), got {}",
         opt.max_tokens, opt.overlap_tokens);
  std::vector<Chunk> out;
  std::vector<Unit> section;
  std::string heading;
  int page = -1;
  for (size_t bi = 0; bi < doc.blocks.size(); ++bi) {
    const Block& b = doc.blocks[bi];
    if (b.heading_level > 0 || b.page != page) {
      if (!section.empty()) chunk_section(doc, section, heading, opt, out);
      section.clear();
      if (b.heading_level > 0) {
        heading = doc.text.substr(b.begin, b.end - b.begin);
        // Markdown markers are not part of the heading's words.
        size_t k = heading.find_first_not_of("# \t");
        heading = k == std::string::npos ? "" : heading.substr(k);
        size_t nl = heading.find('\n');  // setext: drop the underline
        if (nl != std::string::npos) heading = heading.substr(0, nl);
        trim(heading);
      }
      page = b.page;
    }
    units_of_block(doc, bi, counter, section);
  }
  if (!section.empty()) chunk_section(doc, section, heading, opt, out);
  return out;
}

}  // namespace etna::rag
