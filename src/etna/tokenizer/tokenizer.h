// Text <-> token ids for every vocabulary kind Etna reads from GGUF files.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::tokenizer {

struct EncodeOptions {
  bool add_special = true;     // add BOS/EOS ([CLS]/[SEP]) as the vocabulary asks
  bool parse_special = false;  // turn control-token text such as "<|im_start|>" into its id
};

class Tokenizer {
 public:
  // Builds the tokenizer described by the file's metadata (the file may hold no tensors).
  // Throws etna::Error (unsupported) for unknown tokenizer.ggml.model / pre values.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::GgufFile& file);
  explicit Tokenizer(Vocab vocab);

  const Vocab& vocab() const { return vocab_; }

  // Encodes `text` (any bytes; invalid UTF-8 never crashes). Linear-ish in the text length.
  std::vector<Token> encode(std::string_view text, const EncodeOptions& options = {}) const;

  // The bytes token `t` stands for when it follows other text (SentencePiece's "▁" becomes a
  // space, byte tokens <0xNN> become that byte, BPE's byte-to-unicode mapping is undone).
  // Control tokens give "" unless render_special is set.
  std::string token_to_piece(Token t, bool render_special = false) const;

  // Decodes a whole sequence; drops the leading space SentencePiece adds after BOS when
  // remove_leading_space is set (as llama.cpp's detokeniser does).
  std::string decode(const std::vector<Token>& tokens, bool remove_leading_space = true) const;

 private:
  Vocab vocab_;
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// Streaming detokeniser: push tokens one at a time and receive only complete UTF-8 text;
// bytes of a character split across tokens are held back until it completes.
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Text ready to show after token t (possibly empty).
  std::string push(Token t);
  // Whatever is held back (incomplete UTF-8 comes out as U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
  bool first_ = true;
  bool strip_space_ = false;  // the stream began with BOS: the next piece loses its leading space
};

}  // namespace etna::tokenizer
