#include "etna/engine/json_constraint.h"

#include <limits>

namespace etna::engine {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Number sub-states: which part of -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? was read last.
enum Num : uint8_t { minus, zero, int_digits, dot, frac_digits, exp_mark, exp_sign, exp_digits };
bool number_can_end(uint8_t s) { return s == zero || s == int_digits || s == frac_digits || s == exp_digits; }

}  // namespace

void JsonPrefixValidator::end_value() { mode_ = depth_ == 0 ? Mode::done : Mode::after_value; }

bool JsonPrefixValidator::close(char closer) {
  if (depth_ == 0) return false;
  const char open = stack_[static_cast<size_t>(depth_ - 1)];
  if ((open == '{' && closer != '}') || (open == '[' && closer != ']')) return false;
  --depth_;
  end_value();
  return true;
}

bool JsonPrefixValidator::feed(std::string_view text) {
  for (char c : text)
    if (!feed(c)) return false;
  return true;
}

bool JsonPrefixValidator::accepts(std::string_view text) const {
  JsonPrefixValidator copy = *this;
  return copy.feed(text);
}

bool JsonPrefixValidator::feed(char c) {
  const JsonPrefixValidator saved = *this;
  auto reject = [&] {
    *this = saved;
    return false;
  };
  const bool ws = is_ws(c);
  if (ws && mode_ != Mode::string && mode_ != Mode::escape && mode_ != Mode::hex && mode_ != Mode::literal) {
    if (mode_ == Mode::number) {
      if (!number_can_end(num_)) return reject();
      end_value();
    }
    if (mode_ == Mode::done) return reject();  // the document ends with its last value
    if (++whitespace_ > kMaxWhitespace) return reject();
    return true;
  }
  whitespace_ = 0;

  auto open = [&](char o) {
    if (depth_ >= kMaxDepth) return false;
    stack_[static_cast<size_t>(depth_++)] = o;
    mode_ = o == '{' ? Mode::key_or_close : Mode::value_or_close;
    return true;
  };

  switch (mode_) {
    case Mode::value:
    case Mode::value_or_close:
      if (c == ']' && mode_ == Mode::value_or_close) return close(c) || reject();
      if (object_only_ && depth_ == 0) return c == '{' ? (open(c) || reject()) : reject();
      if (c == '{' || c == '[') return open(c) || reject();
      if (c == '"') {
        mode_ = Mode::string;
        in_key_ = false;
        return true;
      }
      if (c == '-' || is_digit(c)) {
        mode_ = Mode::number;
        num_ = c == '-' ? minus : c == '0' ? zero : int_digits;
        return true;
      }
      if (c == 't' || c == 'f' || c == 'n') {
        mode_ = Mode::literal;
        literal_ = c == 't' ? "true" : c == 'f' ? "false" : "null";
        literal_pos_ = 1;
        return true;
      }
      return reject();
    case Mode::key_or_close:
      if (c == '}') return close(c) || reject();
      [[fallthrough]];
    case Mode::key:
      if (c != '"') return reject();
      mode_ = Mode::string;
      in_key_ = true;
      return true;
    case Mode::colon:
      if (c != ':') return reject();
      mode_ = Mode::value;
      return true;
    case Mode::after_value:
      if (c == ',') {
        mode_ = stack_[static_cast<size_t>(depth_ - 1)] == '{' ? Mode::key : Mode::value;
        return true;
      }
      if (c == '}' || c == ']') return close(c) || reject();
      return reject();
    case Mode::string:
      if (c == '"') {
        if (in_key_)
          mode_ = Mode::colon;
        else
          end_value();
        return true;
      }
      if (c == '\\') {
        mode_ = Mode::escape;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return reject();
      return true;
    case Mode::escape:
      if (c == 'u') {
        mode_ = Mode::hex;
        hex_left_ = 4;
        return true;
      }
      if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
        mode_ = Mode::string;
        return true;
      }
      return reject();
    case Mode::hex:
      if (!is_hex(c)) return reject();
      if (--hex_left_ == 0) mode_ = Mode::string;
      return true;
    case Mode::number:
      switch (num_) {
        case minus:
          if (!is_digit(c)) return reject();
          num_ = c == '0' ? zero : int_digits;
          return true;
        case int_digits:
          if (is_digit(c)) return true;
          [[fallthrough]];
        case zero:
          if (c == '.') { num_ = dot; return true; }
          if (c == 'e' || c == 'E') { num_ = exp_mark; return true; }
          break;
        case dot:
          if (!is_digit(c)) return reject();
          num_ = frac_digits;
          return true;
        case frac_digits:
          if (is_digit(c)) return true;
          if (c == 'e' || c == 'E') { num_ = exp_mark; return true; }
          break;
        case exp_mark:
          if (c == '+' || c == '-') { num_ = exp_sign; return true; }
          if (!is_digit(c)) return reject();
          num_ = exp_digits;
          return true;
        case exp_sign:
          if (!is_digit(c)) return reject();
          num_ = exp_digits;
          return true;
        case exp_digits:
          if (is_digit(c)) return true;
          break;
      }
      // The number ended before c: c must continue what follows a value.
      if (!number_can_end(num_) || depth_ == 0) return reject();
      end_value();
      return feed(c) || reject();
    case Mode::literal:
      if (c != literal_[literal_pos_]) return reject();
      if (literal_[++literal_pos_] == '\0') end_value();
      return true;
    case Mode::done:
      return reject();
  }
  return reject();
}

bool JsonPrefixValidator::complete() const {
  return mode_ == Mode::done || (mode_ == Mode::number && depth_ == 0 && number_can_end(num_));
}

std::string JsonPrefixValidator::closing_text() const {
  JsonPrefixValidator v = *this;
  std::string out;
  // Each step takes the shortest way forward; the loop is bounded by the nesting depth.
  for (int guard = 0; !v.complete() && guard < 16 * (kMaxDepth + 4); ++guard) {
    char c = 0;
    switch (v.mode_) {
      case Mode::value: c = (v.object_only_ && v.depth_ == 0) ? '{' : 'n'; break;
      case Mode::value_or_close: c = ']'; break;
      case Mode::key_or_close: c = '}'; break;
      case Mode::key: c = '"'; break;
      case Mode::colon: c = ':'; break;
      case Mode::after_value: c = v.stack_[static_cast<size_t>(v.depth_ - 1)] == '{' ? '}' : ']'; break;
      case Mode::string: c = '"'; break;
      case Mode::escape: c = 'n'; break;
      case Mode::hex: c = '0'; break;
      case Mode::literal: c = v.literal_[v.literal_pos_]; break;
      case Mode::number:
        if (!number_can_end(v.num_)) {
          c = '0';
        } else {
          v.end_value();
          continue;
        }
        break;
      case Mode::done: break;
    }
    if (c == 0 || !v.feed(c)) break;
    out += c;
  }
  return out;
}

size_t mask_json_logits(const JsonPrefixValidator& state, std::span<const std::string> pieces, std::span<float> logits) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  size_t allowed = 0;
  const size_t n = std::min(pieces.size(), logits.size());
  for (size_t i = 0; i < n; ++i) {
    if (logits[i] == minus_inf) continue;
    if (pieces[i].empty() || !state.accepts(pieces[i]))
      logits[i] = minus_inf;
    else
      ++allowed;
  }
  for (size_t i = n; i < logits.size(); ++i) logits[i] = minus_inf;
  return allowed;
}

}  // namespace etna::engine
