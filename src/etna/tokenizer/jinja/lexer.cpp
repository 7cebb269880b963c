#include "etna/tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "etna/base/error.h"

namespace etna::tokenizer::jinja {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Lexer {
 public:
  Lexer(std::string src, const LexOptions& options) : src_(std::move(src)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    const size_t n = src_.size();
    bool strip_next = false;  // the previous tag ended with '-': drop leading whitespace of the next text
    while (pos < n) {
      size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, tag - pos);
      size_t text_start = pos;
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
        text_start += k;
        strip_next = false;
      }
      if (tag == n) {
        emit_text(std::move(text), text_start);
        break;
      }
      char kind = src_[tag + 1];
      char marker = tag + 2 < n ? src_[tag + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if ((kind == '%' || kind == '#') && marker != '+' && options_.lstrip_blocks) {
        lstrip_line(text, text_start);
      }
      emit_text(std::move(text), text_start);

      size_t body = tag + 2;
      if (marker == '-' || (marker == '+' && kind != '{')) ++body;

      if (kind == '#') {
        size_t end = src_.find("#}", body);
        if (end == std::string::npos) error(tag, "unterminated comment (missing '#}')");
        bool minus = end > body && src_[end - 1] == '-';
        bool plus = end > body && src_[end - 1] == '+';
        pos = after_tag(end + 2, minus, plus, true, strip_next);
        continue;
      }
      if (kind == '%' && try_raw(tag, body, pos, strip_next)) continue;

      tokens_.push_back(make(kind == '{' ? TokenKind::var_begin : TokenKind::block_begin, "", tag));
      pos = lex_expression(body, kind, strip_next);
    }
    tokens_.push_back(make(TokenKind::eof, "", n));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t offset, const std::string& what) const {
    auto [line, col] = position(offset);
    fail(ErrorKind::invalid_argument, "chat template syntax error at line {}, column {}: {}", line, col, what);
  }

  std::pair<int, int> position(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    size_t col = offset - line_starts_[line - 1] + 1;
    return {static_cast<int>(line), static_cast<int>(col)};
  }

  Token make(TokenKind kind, std::string text, size_t offset) const {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    auto [line, col] = position(offset);
    t.line = line;
    t.column = col;
    return t;
  }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_text(std::string text, size_t offset) {
    if (text.empty()) return;
    tokens_.push_back(make(TokenKind::text, std::move(text), offset));
  }

  // lstrip_blocks: spaces and tabs between the start of a line and a block tag are removed.
  void lstrip_line(std::string& text, size_t text_start) const {
    size_t nl = text.rfind('\n');
    size_t from = nl == std::string::npos ? 0 : nl + 1;
    if (nl == std::string::npos && !(text_start == 0 || src_[text_start - 1] == '\n')) return;
    for (size_t i = from; i < text.size(); ++i)
      if (text[i] != ' ' && text[i] != '\t') return;
    text.erase(from);
  }

  // Handles what follows a closing delimiter ending at `pos`; returns where text resumes.
  size_t after_tag(size_t pos, bool minus, bool plus, bool is_block, bool& strip_next) const {
    if (minus) {
      strip_next = true;
    } else if (is_block && !plus && options_.trim_blocks && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  // {% raw %}...{% endraw %}: the content is literal text.
  bool try_raw(size_t tag, size_t body, size_t& pos, bool& strip_next) {
    size_t i = body;
    while (i < src_.size() && is_space(src_[i])) ++i;
    if (src_.compare(i, 3, "raw") != 0 || (i + 3 < src_.size() && is_name_char(src_[i + 3]))) return false;
    i += 3;
    while (i < src_.size() && is_space(src_[i])) ++i;
    bool minus = false, plus = false;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) {
      minus = src_[i] == '-';
      plus = src_[i] == '+';
      ++i;
    }
    if (src_.compare(i, 2, "%}") != 0) error(i, "expected '%}' after 'raw'");
    bool strip_content = false;
    size_t content = after_tag(i + 2, minus, plus, true, strip_content);
    // Find {%[-+]? endraw [-+]?%}
    for (size_t j = content; (j = src_.find("{%", j)) != std::string::npos; j += 2) {
      size_t k = j + 2;
      bool end_minus = false;
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) end_minus = src_[k++] == '-';
      while (k < src_.size() && is_space(src_[k])) ++k;
      if (src_.compare(k, 6, "endraw") != 0) continue;
      k += 6;
      while (k < src_.size() && is_space(src_[k])) ++k;
      bool close_minus = false, close_plus = false;
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) {
        close_minus = src_[k] == '-';
        close_plus = src_[k] == '+';
        ++k;
      }
      if (src_.compare(k, 2, "%}") != 0) continue;
      std::string text = src_.substr(content, j - content);
      if (strip_content) {
        size_t s = 0;
        while (s < text.size() && is_space(text[s])) ++s;
        text.erase(0, s);
      }
      if (end_minus) {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (options_.lstrip_blocks) {
        lstrip_line(text, content);
      }
      tokens_.push_back(make(TokenKind::text, std::move(text), content));
      pos = after_tag(k + 2, close_minus, close_plus, true, strip_next);
      return true;
    }
    error(tag, "unterminated raw block (missing '{% endraw %}')");
  }

  // Lexes expression tokens until the closing '}}' or '%}' (at bracket depth 0).
  size_t lex_expression(size_t pos, char kind, bool& strip_next) {
    const size_t n = src_.size();
    const char close = kind == '{' ? '}' : '%';
    const size_t open = pos;
    int depth = 0;
    while (true) {
      while (pos < n && is_space(src_[pos])) ++pos;
      if (pos >= n) error(open - 2, kind == '{' ? "unterminated '{{' (missing '}}')" : "unterminated '{%' (missing '%}')");
      char c = src_[pos];
      if (depth == 0) {
        bool minus = c == '-' && pos + 2 < n && src_[pos + 1] == close && src_[pos + 2] == '}';
        bool plus = c == '+' && kind == '%' && pos + 2 < n && src_[pos + 1] == close && src_[pos + 2] == '}';
        if (minus || plus || (c == close && pos + 1 < n && src_[pos + 1] == '}')) {
          size_t end = pos + ((minus || plus) ? 3 : 2);
          tokens_.push_back(make(kind == '{' ? TokenKind::var_end : TokenKind::block_end, "", pos));
          return after_tag(end, minus, plus, kind == '%', strip_next);
        }
      }
      if (is_name_start(c)) {
        size_t s = pos;
        while (pos < n && is_name_char(src_[pos])) ++pos;
        tokens_.push_back(make(TokenKind::name, src_.substr(s, pos - s), s));
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        pos = lex_number(pos);
      } else if (c == '\'' || c == '"') {
        pos = lex_string(pos);
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                     "=",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|"};
        std::string op;
        for (const char* o : kOps) {
          if (src_.compare(pos, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        }
        if (op.empty()) error(pos, std::string("unexpected character '") + c + "'");
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") {
          if (depth == 0) error(pos, "unbalanced '" + op + "'");
          --depth;
        }
        tokens_.push_back(make(TokenKind::op, op, pos));
        pos += op.size();
      }
    }
  }

  size_t lex_number(size_t pos) {
    const size_t n = src_.size();
    size_t s = pos;
    std::string digits;
    bool is_float = false;
    auto take_digits = [&] {
      while (pos < n && (std::isdigit(static_cast<unsigned char>(src_[pos])) || src_[pos] == '_')) {
        if (src_[pos] != '_') digits += src_[pos];
        ++pos;
      }
    };
    take_digits();
    if (pos + 1 < n && src_[pos] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos + 1]))) {
      is_float = true;
      digits += '.';
      ++pos;
      take_digits();
    }
    if (pos < n && (src_[pos] == 'e' || src_[pos] == 'E')) {
      size_t k = pos + 1;
      if (k < n && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < n && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        is_float = true;
        digits += 'e';
        digits.append(src_, pos + 1, k - pos - 1);
        pos = k;
        take_digits();
      }
    }
    Token t = make(is_float ? TokenKind::floating : TokenKind::integer, digits, s);
    if (is_float) {
      t.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      errno = 0;
      t.int_value = std::strtoll(digits.c_str(), nullptr, 10);
      if (errno == ERANGE) error(s, "integer literal too large");
    }
    tokens_.push_back(std::move(t));
    return pos;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  size_t lex_string(size_t pos) {
    const size_t n = src_.size();
    const size_t start = pos;
    const char quote = src_[pos++];
    std::string out;
    while (true) {
      if (pos >= n) error(start, "unterminated string literal");
      char c = src_[pos++];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos >= n) error(start, "unterminated string literal");
      char e = src_[pos++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos + len > n) error(pos, "truncated escape in string literal");
          uint32_t cp = 0;
          for (size_t k = 0; k < len; ++k) {
            char h = src_[pos + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) error(pos + k, "invalid escape in string literal");
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                                                                                         : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10FFFF) error(pos, "invalid code point in string literal");
          append_utf8(out, cp);
          pos += len;
          break;
        }
        default:  // Python keeps unknown escapes verbatim
          out += '\\';
          out += e;
      }
    }
    tokens_.push_back(make(TokenKind::string, std::move(out), start));
    return pos;
  }

  std::string src_;
  LexOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& options) {
  // Jinja2 normalises line endings to "\n" and drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!options.keep_trailing_newline && !src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src), options).run();
}

}  // namespace etna::tokenizer::jinja
