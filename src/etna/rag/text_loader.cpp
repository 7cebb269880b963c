// Plain text and Markdown: the extracted text is the file itself, so every block is verbatim.
// Text splits into paragraphs at blank lines; Markdown also knows ATX/setext headings and
// fenced code blocks (kept whole, never split at their blank lines).
#include <string_view>

#include "etna/rag/loader.h"

namespace etna::rag {
namespace {

struct Line {
  size_t begin, end;  // without the line terminator
  int number;         // 1-based
};

std::vector<Line> split_lines(const std::string& s) {
  std::vector<Line> lines;
  size_t pos = 0;
  int n = 1;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    size_t end = nl == std::string::npos ? s.size() : nl;
    size_t trimmed = end;
    if (trimmed > pos && s[trimmed - 1] == '\r') --trimmed;
    lines.push_back({pos, trimmed, n++});
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return lines;
}

bool is_blank(const std::string& s, const Line& l) {
  for (size_t i = l.begin; i < l.end; ++i)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\f' && s[i] != '\v') return false;
  return true;
}

Block make_block(const std::vector<Line>& lines, size_t first, size_t last, int heading = 0) {
  Block b;
  b.begin = lines[first].begin;
  b.end = lines[last].end;
  b.line_start = lines[first].number;
  b.line_end = lines[last].number;
  b.src_byte_start = b.begin;
  b.src_byte_end = b.end;
  b.heading_level = heading;
  b.verbatim = true;
  return b;
}

// Leading spaces (at most 3 allowed by CommonMark before a marker); -1 when more.
int indent(std::string_view l) {
  int n = 0;
  while (n < static_cast<int>(l.size()) && l[n] == ' ') ++n;
  return n <= 3 ? n : -1;
}

// ATX heading level of the line, 0 when it is not one.
int atx_level(std::string_view l) {
  const int in = indent(l);
  if (in < 0) return 0;
  size_t i = in, hashes = 0;
  while (i < l.size() && l[i] == '#') ++i, ++hashes;
  if (hashes == 0 || hashes > 6) return 0;
  if (i < l.size() && l[i] != ' ' && l[i] != '\t') return 0;
  return static_cast<int>(hashes);
}

// '=' underline: 1, '-' underline: 2, else 0.
int setext_level(std::string_view l) {
  const int in = indent(l);
  if (in < 0) return 0;
  std::string_view t = l.substr(in);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  if (t.empty()) return 0;
  const char c = t[0];
  if (c != '=' && c != '-') return 0;
  for (char d : t)
    if (d != c) return 0;
  return c == '=' ? 1 : 2;
}

// The fence marker ("```" or "~~~", possibly longer) opening a code block, or "".
std::string_view fence(std::string_view l) {
  const int in = indent(l);
  if (in < 0) return {};
  std::string_view t = l.substr(in);
  if (t.size() < 3 || (t[0] != '`' && t[0] != '~')) return {};
  size_t n = 0;
  while (n < t.size() && t[n] == t[0]) ++n;
  return n >= 3 ? t.substr(0, n) : std::string_view{};
}

}  // namespace

Document load_text(std::string bytes) {
  Document doc;
  doc.format = Format::text;
  doc.text = std::move(bytes);
  const std::vector<Line> lines = split_lines(doc.text);
  size_t i = 0;
  while (i < lines.size()) {
    if (is_blank(doc.text, lines[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j + 1 < lines.size() && !is_blank(doc.text, lines[j + 1])) ++j;
    doc.blocks.push_back(make_block(lines, i, j));
    i = j + 1;
  }
  return doc;
}

Document load_markdown(std::string bytes) {
  Document doc;
  doc.format = Format::markdown;
  doc.text = std::move(bytes);
  const std::string& s = doc.text;
  const std::vector<Line> lines = split_lines(s);
  auto view = [&](size_t k) { return std::string_view(s).substr(lines[k].begin, lines[k].end - lines[k].begin); };
  size_t i = 0;
  while (i < lines.size()) {
    if (is_blank(s, lines[i])) {
      ++i;
      continue;
    }
    if (int lv = atx_level(view(i))) {
      doc.blocks.push_back(make_block(lines, i, i, lv));
      ++i;
      continue;
    }
    if (std::string_view f = fence(view(i)); !f.empty()) {
      size_t j = i + 1;
      while (j < lines.size()) {
        std::string_view g = fence(view(j));
        if (!g.empty() && g[0] == f[0] && g.size() >= f.size()) break;
        ++j;
      }
      if (j >= lines.size()) j = lines.size() - 1;  // unclosed: runs to the end
      doc.blocks.push_back(make_block(lines, i, j));
      i = j + 1;
      continue;
    }
    // A paragraph: up to a blank line, a heading or a fence. A setext underline turns the
    // paragraph's lines into a heading.
    size_t j = i;
    int setext = 0;
    while (j + 1 < lines.size()) {
      std::string_view next = view(j + 1);
      if (is_blank(s, lines[j + 1]) || atx_level(next) || !fence(next).empty()) break;
      if (int lv = setext_level(next)) {
        setext = lv;
        ++j;
        break;
      }
      ++j;
    }
    doc.blocks.push_back(make_block(lines, i, j, setext));
    i = j + 1;
  }
  return doc;
}

}  // namespace etna::rag
