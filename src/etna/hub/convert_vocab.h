// The tokenizer half of `etna convert`: Hugging Face tokenizer files to the GGUF tokenizer.*
// keys, as llama.cpp's converter (gguf-py's SpecialVocab and the model classes' set_vocab)
// writes them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/gguf/gguf_writer.h"

namespace etna::hub {

// GGUF token types (llama.cpp's LLAMA_TOKEN_TYPE_*).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct Vocab {
  std::string model;  // tokenizer.ggml.model: "llama", "gpt2" or "bert"
  std::string pre;    // tokenizer.ggml.pre
  std::vector<std::string> tokens;
  std::vector<float> scores;  // SentencePiece only
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // BPE only, "a b"
  std::map<std::string, uint32_t> special_ids;  // "bos", "eos", "unk", "sep", "pad", "cls", "mask"
  std::optional<bool> add_bos, add_eos;
  std::optional<bool> add_space_prefix;  // SentencePiece: written when set (gemma: false)
  std::optional<uint32_t> token_type_count;  // bert
  std::vector<std::pair<std::string, std::string>> chat_templates;  // ("", default), (name, template)
};

// Parses a JSON file; a missing file gives null (or an error when `required`).
nlohmann::json read_json_file(const std::filesystem::path& path, bool required);

// The decoder families: SentencePiece tokenizer.model when present (as the peer tries it
// first), else tokenizer.json's byte-level BPE (Qwen2/3, Llama 3). `arch` is the GGUF
// architecture (phi3 pads its vocabulary its own way). Throws etna::Error when none fits.
Vocab load_decoder_vocab(const std::filesystem::path& dir, const nlohmann::json& config, const std::string& arch);
// bert: tokenizer.json's WordPiece model (or vocab.txt), in the peer's "phantom space" form.
Vocab load_wordpiece_vocab(const std::filesystem::path& dir, const nlohmann::json& config);

// sentence-transformers pooling (modules.json -> Pooling/config.json): 1 mean, 2 cls, 3 last.
std::optional<uint32_t> sentence_transformers_pooling(const std::filesystem::path& dir);

// Adds the tokenizer.* keys.
void write_vocab(gguf::GgufWriter& w, const Vocab& v);

// SentencePiece ModelProto (tokenizer.model) pieces: (text, score, type). Throws etna::Error
// (corrupt) for a malformed protobuf.
struct SpPiece {
  std::string piece;
  float score = 0;
  int32_t type = 1;
};
std::vector<SpPiece> parse_sentencepiece_model(const std::string& bytes, const std::string& name);

}  // namespace etna::hub
