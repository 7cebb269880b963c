// Token-aware chunking of a loaded Document. Chunks never cross a heading (a heading starts a
// new chunk) or a PDF page; within a section they are packed up to max_tokens, broken
// preferably at a paragraph end, else at a sentence end, else between words, and consecutive
// chunks of one section overlap by up to overlap_tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "etna/rag/loader.h"

namespace etna::tokenizer {
class Tokenizer;
}

namespace etna::rag {

// Counts tokens of a word. Whitespace approximation: one token per word plus one per further
// 6 bytes (long words split into several sub-word tokens); with a model tokenizer: exact
// per-word counts (cached). Not thread-safe (the cache is unsynchronised).
class TokenCounter {
 public:
  TokenCounter() = default;
  explicit TokenCounter(const tokenizer::Tokenizer* tok) : tok_(tok) {}
  int count(std::string_view word) const;

 private:
  const tokenizer::Tokenizer* tok_ = nullptr;
  mutable std::unordered_map<std::string, int> cache_;
};

struct ChunkOptions {
  int max_tokens = 256;
  int overlap_tokens = 32;  // must be < max_tokens / 2
};

struct Chunk {
  std::string text;
  std::string heading;  // the section's heading text ("" before the first heading)
  int page = 0;
  int line_start = 1, line_end = 1;
  uint64_t byte_start = 0, byte_end = 0;
  int tokens = 0;
};

// Throws invalid_argument when the options are out of range.
std::vector<Chunk> chunk_document(const Document& doc, const ChunkOptions& options, const TokenCounter& counter);

}  // namespace etna::rag
