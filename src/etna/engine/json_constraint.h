// Constrained decoding for JSON output: an incremental validator that accepts bytes only while the
// text so far is a prefix of some valid JSON document (RFC 8259), can tell which candidate token
// texts keep it that way, and can write the shortest text that closes what is open.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::engine {

class JsonPrefixValidator {
 public:
  // object_only: the document must be an object (OpenAI's response_format json_object).
  explicit JsonPrefixValidator(bool object_only = true) : object_only_(object_only) {}

  // Appends one byte; returns false (and leaves the state unchanged) when the text would stop
  // being a valid JSON prefix, nesting would exceed kMaxDepth or a whitespace run kMaxWhitespace.
  bool feed(char c);
  // Appends every byte of `text`; false (state unspecified) when one is rejected.
  bool feed(std::string_view text);
  // Whether `text` could be appended (the state is not changed).
  bool accepts(std::string_view text) const;

  // The document is complete: a whole top-level value has been read.
  bool complete() const;
  // The shortest text that makes the document complete ("" when it already is).
  std::string closing_text() const;

  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxWhitespace = 16;

 private:
  enum class Mode : uint8_t {
    value, value_or_close, key_or_close, key, colon, after_value, string, escape, hex, number, literal, done
  };
  void end_value();
  bool close(char closer);

  bool object_only_;
  Mode mode_ = Mode::value;
  bool in_key_ = false;
  uint8_t hex_left_ = 0;
  uint8_t num_ = 0;        // number sub-state (see feed)
  const char* literal_ = nullptr;
  uint8_t literal_pos_ = 0;
  uint8_t whitespace_ = 0;  // current run of whitespace
  int depth_ = 0;
  std::array<char, kMaxDepth> stack_{};
};

// Masks a row of logits for JSON mode: every token whose text cannot follow `state` gets -inf.
// `pieces` holds each token's text (empty for control tokens, which are always masked).
// Returns the number of tokens left allowed.
size_t mask_json_logits(const JsonPrefixValidator& state, std::span<const std::string> pieces,
                        std::span<float> logits);

}  // namespace etna::engine
