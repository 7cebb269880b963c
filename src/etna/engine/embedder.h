// Text embeddings: tokenise, run an encoder (bert) or a decoder model (llama family, mean-pooled
// hidden states for users without a dedicated embedder), pool as the model says
// (`<arch>.pooling_type`: mean, CLS, last) and L2-normalise.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "etna/tokenizer/tokenizer.h"

namespace etna::engine {

class Embedder {
 public:
  // Loads an embedding-capable GGUF model. Throws etna::Error naming the file when it cannot.
  static std::unique_ptr<Embedder> load(const std::string& path);
  virtual ~Embedder() = default;

  virtual int dim() const = 0;            // length of every vector
  virtual int max_tokens() const = 0;     // longest input (tokens, specials included)
  virtual const tokenizer::Tokenizer& tokenizer() const = 0;
  virtual std::string model_name() const = 0;

  // One L2-normalised vector per text, in order. Texts are evaluated without padding waste
  // (each at its own length). A text longer than max_tokens() throws etna::Error (limit)
  // unless `truncate` is set, in which case it is cut to max_tokens().
  virtual std::vector<std::vector<float>> embed(const std::vector<std::string>& texts, bool truncate = false) const = 0;

  // One L2-normalised vector per token sequence, used exactly as given (no special tokens
  // added). Throws etna::Error (invalid_argument) for an empty sequence or an id outside the
  // vocabulary, (limit) for one longer than max_tokens().
  virtual std::vector<std::vector<float>> embed_tokens(const std::vector<std::vector<tokenizer::Token>>& inputs) const = 0;

  // Token counts of the texts as embed() would see them (for usage reporting).
  virtual std::vector<int> count_tokens(const std::vector<std::string>& texts) const = 0;
};

}  // namespace etna::engine
