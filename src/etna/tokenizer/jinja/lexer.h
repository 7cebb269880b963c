// Splits Jinja template text into tokens: literal text between tags, and the expression tokens
// inside {{ }} and {% %}. Applies whitespace control ({%- -%} {{- -}}, {%+ +%}) and the
// trim_blocks / lstrip_blocks behaviour Hugging Face enables; comments {# #} and {% raw %} are
// resolved here. Like Jinja2 (keep_trailing_newline=False) one trailing newline is dropped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace etna::tokenizer::jinja {

enum class TokenKind { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };

struct Token {
  TokenKind kind;
  std::string text;    // text, name, string (unescaped) or operator spelling
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1, column = 1;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws etna::Error (invalid_argument) "chat template syntax error at line L, column C: ..."
// for unterminated tags, strings or comments and unknown characters. The last token is eof.
std::vector<Token> lex(std::string_view source, const LexOptions& options = {});

}  // namespace etna::tokenizer::jinja
