// Internal to the tokenizer layer: one Encoder per algorithm. Tokenizer::encode splits the text
// around special tokens (when asked) and hands each plain-text fragment to the encoder.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::tokenizer {

class Encoder {
 public:
  virtual ~Encoder() = default;
  // Appends the ids of one plain-text fragment (no special-token parsing, no BOS/EOS).
  // `first_fragment` is true for the fragment at the very start of the text and for one that
  // follows a special token (SentencePiece's leading-space rule applies there, as in llama.cpp).
  virtual void encode(std::string_view text, bool first_fragment, std::vector<Token>& out) const = 0;
  // The bytes a normal/byte/user-defined token stands for.
  virtual std::string token_to_piece(Token t) const = 0;
};

std::unique_ptr<Encoder> make_spm_encoder(const Vocab& vocab);  // spm.cpp
std::unique_ptr<Encoder> make_bpe_encoder(const Vocab& vocab);  // bpe.cpp (byte-level BPE, pre-tokenisers)
std::unique_ptr<Encoder> make_wpm_encoder(const Vocab& vocab);  // wpm.cpp (WordPiece)

}  // namespace etna::tokenizer
