#include "etna/rag/answer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <unordered_set>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/rag/loader.h"
#include "etna/tokenizer/chat_template.h"

namespace etna::rag {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Cuts `s` to at most `max` bytes, at the last whitespace before the limit when there is one
// (never inside a UTF-8 sequence).
std::string cut_at_word(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  size_t space = cut;
  while (space > 0 && !is_space(s[space])) --space;
  if (space > max / 2) cut = space;
  while (cut > 0 && is_space(s[cut - 1])) --cut;
  return std::string(s.substr(0, cut));
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Parses the inside of a bracket group ("1", "1, 2", "2-4") into numbers; false when it is not
// a citation group.
bool parse_group(std::string_view in, std::vector<int>& out) {
  out.clear();
  size_t i = 0;
  auto skip_space = [&] {
    while (i < in.size() && in[i] == ' ') ++i;
  };
  auto number = [&](int& v) {
    const size_t start = i;
    while (i < in.size() && is_digit(in[i])) ++i;
    const size_t len = i - start;
    if (len == 0 || len > 3) return false;
    v = std::stoi(std::string(in.substr(start, len)));
    return true;
  };
  skip_space();
  // "[Source 1]", "[sources 1, 2]" and footnote-style "[^1]" are read as "[1]" / "[1, 2]".
  for (std::string_view word : {"sources", "source"}) {
    if (in.size() > i + word.size() && std::equal(word.begin(), word.end(), in.begin() + static_cast<std::ptrdiff_t>(i),
                                                   [](char x, char y) { return x == std::tolower(static_cast<unsigned char>(y)); })) {
      i += word.size();
      if (in[i] != ' ') return false;
      skip_space();
      break;
    }
  }
  if (i < in.size() && in[i] == '^') ++i;
  for (;;) {
    int a = 0;
    if (!number(a)) return false;
    skip_space();
    int b = a;
    bool range = false;
    if (i < in.size() && in[i] == '-') {
      ++i;
      range = true;
    } else if (in.substr(i, 3) == "\xE2\x80\x93") {  // en dash
      i += 3;
      range = true;
    }
    if (range) {
      skip_space();
      if (!number(b) || b < a || b - a >= 20) return false;
      skip_space();
    }
    for (int v = a; v <= b; ++v) out.push_back(v);
    if (i == in.size()) return true;
    if (in[i] != ',' && in[i] != ';') return false;
    ++i;
    skip_space();
    if (i == in.size()) return false;  // "[1,]"
  }
}

// The byte length of a citation group starting at s[pos] == '[' (0 when there is none).
size_t group_at(std::string_view s, size_t pos, std::vector<int>* numbers = nullptr) {
  if (pos >= s.size() || s[pos] != '[') return 0;
  const size_t close = s.find(']', pos + 1);
  if (close == std::string_view::npos || close - pos > 64) return 0;
  const std::string_view inside = s.substr(pos + 1, close - pos - 1);
  if (inside.find_first_of("[\n") != std::string_view::npos) return 0;
  if (close + 1 < s.size() && s[close + 1] == '(') return 0;  // a Markdown link
  std::vector<int> tmp;
  if (!parse_group(inside, numbers ? *numbers : tmp)) return 0;
  return close + 1 - pos;
}

// Sentences of `s` as [begin, end) byte ranges: a sentence ends after . ! or ? followed by
// whitespace (closing quotes and brackets kept with it), at a blank line, or, when
// `lines_end_sentences`, at every line end. With `keep_markers`, citation groups right after the
// end punctuation stay with the sentence they follow.
std::vector<std::pair<size_t, size_t>> sentences(std::string_view s, bool lines_end_sentences, bool keep_markers) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t start = 0;
  auto emit = [&](size_t end) {
    size_t b = start, e = end;
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    if (e > b) out.emplace_back(b, e);
    start = end;
  };
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\n') {
      size_t j = i + 1;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r')) ++j;
      if (lines_end_sentences || (j < s.size() && s[j] == '\n')) {
        emit(i);
        i = j;
        continue;
      }
      ++i;
      continue;
    }
    if (c == '.' || c == '!' || c == '?') {
      size_t j = i + 1;
      while (j < s.size() && (s[j] == '.' || s[j] == '!' || s[j] == '?' || s[j] == '"' || s[j] == '\'' || s[j] == ')'))
        ++j;
      size_t end = j;
      if (keep_markers) {
        size_t k = j;
        for (;;) {
          while (k < s.size() && (s[k] == ' ' || s[k] == '\t')) ++k;
          const size_t g = group_at(s, k);
          if (g == 0) break;
          k += g;
          end = k;
        }
      }
      if (end == s.size() || is_space(s[end])) {
        emit(end);
        i = end;
        continue;
      }
      i = j;
      continue;
    }
    ++i;
  }
  emit(s.size());
  return out;
}

const std::unordered_set<std::string>& stopwords() {
  static const std::unordered_set<std::string> words = {
      "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was", "one", "our",
      "out", "has", "him", "his", "how", "its", "may", "who", "did", "yes", "she", "use", "with", "that",
      "this", "from", "they", "have", "were", "been", "their", "there", "which", "what", "when", "where", "will",
      "would", "could", "should", "about", "into", "than", "then", "them", "these", "those", "also", "such",
      "some", "only", "other", "over", "more", "most", "very", "each", "does", "your", "just", "source", "sources"};
  return words;
}

// Distinct content words of `s`: lowercased runs of letters, digits and non-ASCII bytes, at least
// three bytes long (or any number), stopwords left out; citation groups ignored.
std::set<std::string> words_of(std::string_view s) {
  std::set<std::string> out;
  std::string w;
  auto flush = [&] {
    const bool numeric = !w.empty() && std::all_of(w.begin(), w.end(), is_digit);
    if ((w.size() >= 3 || numeric) && !stopwords().count(w)) out.insert(w);
    w.clear();
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      if (const size_t g = group_at(s, i)) {
        flush();
        i += g - 1;
        continue;
      }
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isalnum(c) || c >= 0x80)
      w += static_cast<char>(std::tolower(c));
    else
      flush();
  }
  flush();
  return out;
}

std::string render(const std::string& user, const AnswerPromptOptions& options) {
  if (options.chat_template)
    return options.chat_template->render({{"user", user}}, /*add_generation_prompt=*/true);
  return user + "\n\nAnswer:";
}

}  // namespace

std::string source_location(const std::string& file, int page, int line_start, int line_end) {
  std::string s = file;
  if (page > 0) s += fmt::format(", page {}", page);
  if (line_start > 0)
    s += line_start == line_end || line_end <= 0 ? fmt::format(", line {}", line_start)
                                                 : fmt::format(", lines {}-{}", line_start, line_end);
  return s;
}

std::string answer_user_message(const std::vector<SearchHit>& sources, const std::string& question) {
  std::string s =
      "Answer the question using only the numbered sources below. After each statement, cite the sources "
      "that support it by their numbers in square brackets, like [1] or [1][2]. If the sources do not "
      "contain the answer, say that you do not know.\n\nSources:\n";
  if (sources.empty()) s += "\n(no sources were found)\n";
  for (size_t i = 0; i < sources.size(); ++i) {
    const ChunkRow& c = sources[i].chunk;
    const std::string name = std::filesystem::path(c.file).filename().string();
    s += fmt::format("\n[{}] {}\n{}\n", i + 1, source_location(name, c.page, c.line_start, c.line_end), trim(c.text));
  }
  s += "\nQuestion: " + trim(question);
  return s;
}

AnswerPrompt build_answer_prompt(const std::string& question, std::vector<SearchHit> hits,
                                 const AnswerPromptOptions& options, const PromptTokenCount& count_tokens) {
  if (trim(question).empty()) fail(ErrorKind::invalid_argument, "the question is empty");
  AnswerPrompt p;
  if (options.max_source_bytes > 0)
    for (auto& h : hits)
      if (h.chunk.text.size() > options.max_source_bytes) {
        h.chunk.text = cut_at_word(h.chunk.text, options.max_source_bytes);
        p.truncated = true;
      }
  const size_t limit = options.max_prompt_tokens;
  auto attempt = [&](const std::vector<SearchHit>& sources, std::string& text) {
    text = render(answer_user_message(sources, question), options);
    const size_t n = count_tokens(text);
    return std::make_pair(limit == 0 || n <= limit, n);
  };
  std::string text;
  auto [fits, n_tokens] = attempt(hits, text);
  if (fits) {
    p.text = std::move(text);
    p.tokens = n_tokens;
    p.sources = std::move(hits);
    return p;
  }
  // Keep the most sources that fit: the largest m in [1, n) whose prompt fits (binary search;
  // more sources never make the prompt shorter).
  size_t lo = 0, hi = hits.size();  // fits(lo) unknown for lo=0 only conceptually; hi does not fit
  std::string best_text;
  size_t best_tokens = 0;
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    std::vector<SearchHit> sub(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(mid));
    std::string t;
    auto [ok, n] = attempt(sub, t);
    if (ok) {
      lo = mid;
      best_text = std::move(t);
      best_tokens = n;
    } else {
      hi = mid;
    }
  }
  if (lo > 0) {
    p.dropped = hits.size() - lo;
    hits.resize(lo);
    p.sources = std::move(hits);
    p.text = std::move(best_text);
    p.tokens = best_tokens;
    return p;
  }
  // Not even the best source fits whole: shorten its text (largest prefix that fits).
  if (!hits.empty()) {
    SearchHit first = hits.front();
    const std::string full = first.chunk.text;
    size_t a = 0, b = full.size();  // a: known to fit (0 = try), b: does not fit
    std::string fit_text;
    size_t fit_tokens = 0, fit_len = 0;
    bool any = false;
    while (b - a > 16) {
      const size_t mid = (a + b) / 2;
      first.chunk.text = cut_at_word(full, mid);
      std::string t;
      auto [ok, n] = attempt({first}, t);
      if (ok) {
        a = mid;
        fit_text = std::move(t);
        fit_tokens = n;
        fit_len = mid;
        any = true;
      } else {
        b = mid;
      }
    }
    if (any && fit_len > 0) {
      first.chunk.text = cut_at_word(full, fit_len);
      p.dropped = hits.size() - 1;
      p.truncated = true;
      p.sources = {first};
      p.text = std::move(fit_text);
      p.tokens = fit_tokens;
      return p;
    }
  }
  auto [ok, n] = attempt({}, text);
  if (!ok)
    fail(ErrorKind::limit, "the question is too long for the model's context ({} tokens with the instructions, limit {})",
         n, limit);
  p.dropped = hits.size();
  p.text = std::move(text);
  p.tokens = n;
  return p;
}

std::vector<CitationMarker> parse_citation_markers(std::string_view answer) {
  std::vector<CitationMarker> out;
  std::vector<int> numbers;
  for (size_t i = 0; i < answer.size(); ++i) {
    if (answer[i] != '[') continue;
    const size_t g = group_at(answer, i, &numbers);
    if (g == 0) continue;
    for (int n : numbers) out.push_back({n, i, g});
    i += g - 1;
  }
  return out;
}

std::vector<std::string> answer_sentences(std::string_view answer) {
  std::vector<std::string> out;
  for (const auto& [b, e] : sentences(answer, /*lines_end_sentences=*/true, /*keep_markers=*/true))
    out.emplace_back(answer.substr(b, e - b));
  return out;
}

std::set<std::string> content_words(std::string_view s) { return words_of(s); }

std::vector<std::string> citing_sentences(std::string_view answer, int n) {
  std::vector<std::string> out;
  const auto spans = sentences(answer, /*lines_end_sentences=*/true, /*keep_markers=*/true);
  for (size_t i = 0; i < spans.size(); ++i) {
    const std::string_view sent = answer.substr(spans[i].first, spans[i].second - spans[i].first);
    bool cites = false;
    for (const auto& m : parse_citation_markers(sent)) cites = cites || m.n == n;
    if (!cites) continue;
    std::string s(sent);
    // A sentence of markers only ("[1]" on its own line) cites the sentence before it.
    if (words_of(s).empty() && i > 0) s = std::string(answer.substr(spans[i - 1].first, spans[i].second - spans[i - 1].first));
    out.push_back(std::move(s));
  }
  return out;
}

std::string select_span(std::string_view source_text, const std::vector<std::string>& citing, size_t max_bytes,
                        size_t* byte_begin, size_t* byte_end) {
  const auto spans = sentences(source_text, /*lines_end_sentences=*/false, /*keep_markers=*/false);
  std::vector<std::set<std::string>> sent_words;
  sent_words.reserve(spans.size());
  for (const auto& [b, e] : spans) sent_words.push_back(words_of(source_text.substr(b, e - b)));
  std::set<size_t> chosen;
  for (const auto& c : citing) {
    const auto want = words_of(c);
    size_t best = spans.size();
    size_t best_score = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      size_t score = 0;
      for (const auto& w : want) score += sent_words[i].count(w);
      if (score > best_score) {
        best_score = score;
        best = i;
      }
    }
    if (best < spans.size()) chosen.insert(best);
  }
  if (chosen.empty()) {
    const std::string t = trim(source_text);
    const size_t lead = source_text.find_first_not_of(" \t\r\n\f\v");
    std::string cut = cut_at_word(t, max_bytes);
    if (byte_begin) *byte_begin = lead == std::string_view::npos ? 0 : lead;
    if (byte_end) *byte_end = (lead == std::string_view::npos ? 0 : lead) + cut.size();
    if (cut.size() < t.size()) cut += " ...";
    return cut;
  }
  std::string out;
  size_t prev = 0;
  bool first = true;
  for (size_t i : chosen) {
    const auto [b, e] = spans[i];
    std::string s(source_text.substr(b, e - b));
    if (s.size() > max_bytes * 2) s = cut_at_word(s, max_bytes * 2) + " ...";
    if (!first) {
      if (i == prev + 1) out += std::string(source_text.substr(spans[prev].second, b - spans[prev].second));
      else out += " ... ";
    }
    out += s;
    prev = i;
    first = false;
  }
  if (byte_begin) *byte_begin = spans[*chosen.begin()].first;
  if (byte_end) *byte_end = spans[*chosen.rbegin()].second;
  return out;
}

ResolvedCitations resolve_citations(std::string_view answer, const std::vector<SearchHit>& sources) {
  ResolvedCitations r;
  std::set<int> seen;
  for (const auto& m : parse_citation_markers(answer)) {
    if (!seen.insert(m.n).second) continue;
    if (m.n < 1 || static_cast<size_t>(m.n) > sources.size()) {
      r.unmatched.push_back(m.n);
      continue;
    }
    Citation c;
    c.n = m.n;
    c.chunk = sources[static_cast<size_t>(m.n - 1)].chunk;
    c.text = select_span(c.chunk.text, citing_sentences(answer, m.n), 400, &c.span_begin, &c.span_end);
    c.line_start = c.chunk.line_start;
    c.line_end = c.chunk.line_end;
    // Narrow the lines to the quote when the chunk text keeps the source's line breaks.
    const std::string& t = c.chunk.text;
    const auto newlines = [&](size_t end) { return static_cast<int>(std::count(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(end), '\n')); };
    if (c.chunk.line_start > 0 && newlines(t.size()) == c.chunk.line_end - c.chunk.line_start && c.span_end > c.span_begin &&
        c.span_end <= t.size()) {
      c.line_start = c.chunk.line_start + newlines(c.span_begin);
      c.line_end = c.chunk.line_start + newlines(c.span_end - 1);
    }
    r.citations.push_back(std::move(c));
  }
  return r;
}

nlohmann::json source_json(const SearchHit& hit, int n) {
  const ChunkRow& c = hit.chunk;
  nlohmann::json j;
  if (n > 0) j["n"] = n;
  j["id"] = c.id;
  j["file"] = sanitize_utf8(c.file);
  j["name"] = sanitize_utf8(std::filesystem::path(c.file).filename().string());
  j["page"] = c.page;
  j["lines"] = {c.line_start, c.line_end};
  j["bytes"] = {c.byte_start, c.byte_end};
  j["heading"] = sanitize_utf8(c.heading);
  j["text"] = sanitize_utf8(c.text);
  j["score"] = hit.score;
  return j;
}

nlohmann::json citation_json(const Citation& c) {
  return {{"n", c.n},
          {"file", sanitize_utf8(c.chunk.file)},
          {"name", sanitize_utf8(std::filesystem::path(c.chunk.file).filename().string())},
          {"page", c.chunk.page},
          {"lines", {c.line_start, c.line_end}},
          {"text", sanitize_utf8(c.text)},
          {"span", {c.span_begin, c.span_end}}};
}

}  // namespace etna::rag
