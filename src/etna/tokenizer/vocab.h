// A tokenizer vocabulary as GGUF stores it (`tokenizer.ggml.*`): token texts, scores, types,
// merges and the special-token ids. Shared by the SentencePiece, BPE and WordPiece encoders.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "etna/gguf/gguf_file.h"

namespace etna::tokenizer {

using Token = int32_t;
constexpr Token kNoToken = -1;

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

enum class VocabKind { spm, bpe, wpm, none };

struct Vocab {
  VocabKind kind = VocabKind::none;
  std::string model;       // tokenizer.ggml.model: "llama", "gpt2", "bert", ...
  std::string pre;         // tokenizer.ggml.pre: "default", "llama-bpe", "qwen2", ...
  std::vector<std::string> tokens;
  std::vector<float> scores;          // empty when the file has none
  std::vector<TokenType> types;       // same length as tokens (normal when absent)
  std::vector<std::string> merges;    // BPE only: "left right", by rank
  std::unordered_map<std::string, Token> token_to_id;

  Token bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken, unk = kNoToken;
  Token pad = kNoToken, sep = kNoToken, cls = kNoToken, mask = kNoToken, nl = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;      // SentencePiece: prepend a space to the text
  bool remove_extra_whitespaces = false;

  // Reads the tokenizer.ggml.* keys. Throws etna::Error naming the file and key when they are
  // missing or inconsistent (e.g. scores shorter than tokens, special id out of range).
  static Vocab from_gguf(const gguf::GgufFile& file);

  size_t size() const { return tokens.size(); }
  std::optional<Token> find(const std::string& text) const;
  bool is_control(Token t) const;       // control tokens (BOS, EOS, <|im_start|>, ...)
  bool is_end_of_generation(Token t) const;  // eos, eot, eom, and other end-of-turn markers
};

}  // namespace etna::tokenizer
