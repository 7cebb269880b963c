// Perplexity of a model on a text, computed the way llama.cpp's llama-perplexity does, so that
// the figures are comparable with the ones people publish; and the KL divergence of a model's
// next-token distributions from a base model's (what a quantisation costs).
//
// The method: the text is tokenised once (with BOS when the vocabulary adds one) and cut into
// chunks of n_ctx tokens; each chunk is evaluated from an empty cache with its first token
// replaced by BOS, and only the second half of its positions is scored (each of them has at
// least n_ctx/2 tokens of context). PPL = exp(mean NLL); its ± is the standard error of the mean
// NLL, carried through exp (PPL * stderr).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "etna/model/kv_type.h"

namespace etna::model { class Model; }
namespace etna::tokenizer { class Tokenizer; }

namespace etna::eval {

struct PerplexityOptions {
  int n_ctx = 512;      // tokens per chunk (the peer's -c)
  int n_batch = 2048;   // tokens per forward pass, capped at n_ctx (the peer's -b)
  int max_chunks = 0;   // 0 = every whole chunk of the text
  model::KvType cache_type = model::KvType::f32;
};

struct ChunkScore {
  int index = 0;       // chunk number, from 0
  double nll = 0;      // summed negative log-likelihood of the chunk's scored tokens
  int count = 0;       // scored tokens in the chunk
  double running_ppl = 0;  // PPL over chunks 0..index
};

// Running sums of the per-token NLL (the peer keeps the same two sums).
struct NllStats {
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  void add(double nll) { sum += nll; sum_sq += nll * nll; ++count; }
  double mean() const { return count ? sum / static_cast<double>(count) : 0; }
  // Standard error of the mean (0 with fewer than two values).
  double stderr_of_mean() const;
};

struct PerplexityResult {
  int n_tokens = 0;   // tokens of the whole text
  int n_chunks = 0;
  NllStats nll;
  double ppl() const;
  double ppl_stderr() const;  // PPL * stderr(NLL)
};

// Called after each chunk (from the calling thread); may be empty.
using ChunkCallback = std::function<void(const ChunkScore&, int n_chunks)>;

// Receives, for every scored position, the model's log-probabilities over the vocabulary
// (n_vocab floats) and the token that followed; used to save a KL base or compare with one.
using LogprobSink = std::function<void(const float* logprobs, int n_vocab, int32_t next_token)>;

// The text as the peer tokenises it for perplexity: once, with BOS when the vocabulary adds one.
std::vector<int32_t> perplexity_tokens(const tokenizer::Tokenizer& tokenizer, const std::string& text);

// The whole of a text file, byte for byte. Throws etna::Error (not_found, io) naming the file.
std::string read_text_file(const std::string& path);

// Scores `tokens` as described above; `bos` replaces each chunk's first token (kNoBos: none).
// Throws etna::Error (invalid_argument) when there are fewer than 2 * n_ctx tokens or an option
// is out of range, naming both.
inline constexpr int32_t kNoBos = -1;
PerplexityResult perplexity(const model::Model& model, const std::vector<int32_t>& tokens, int32_t bos,
                            const PerplexityOptions& options, const ChunkCallback& on_chunk = {},
                            const LogprobSink& sink = {});

// log-softmax of row[0..n) into out (float max, double sum of expf, as the peer computes it).
void log_softmax(const float* row, int n, float* out);

// ---- KL divergence against a saved base ---------------------------------------------------------

// The file `etna eval perplexity --kl-base FILE` writes: a header (magic, version, n_vocab,
// n_ctx, the text's token count, a hash of its token ids) then one record per scored position:
// the next token and the base model's n_vocab log-probabilities as float32.
class KlBaseWriter {
 public:
  // Creates `path` (replacing it). Throws etna::Error(io) when it cannot.
  KlBaseWriter(const std::string& path, int n_vocab, int n_ctx, const std::vector<int32_t>& tokens);
  ~KlBaseWriter();
  KlBaseWriter(const KlBaseWriter&) = delete;
  KlBaseWriter& operator=(const KlBaseWriter&) = delete;
  void add(const float* logprobs, int32_t next_token);
  // Flushes and closes; throws etna::Error(io) on a write error.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct KlResult {
  int64_t positions = 0;
  double mean_kl = 0, kl_stderr = 0;  // mean KL(base || model) in nats per position, and its stderr
  double max_kl = 0;
  double top1_agreement = 0;          // share of positions whose most likely token is the same
  double base_ppl = 0, ppl = 0;       // over the same scored positions
  double delta_ppl() const { return ppl - base_ppl; }
};

// Compares a model's log-probabilities with a base file, position by position.
class KlComparer {
 public:
  // Opens `path`; throws etna::Error (corrupt / invalid_argument) when it is not a KL base file,
  // or was made with another vocabulary size, context size or text, naming what differs.
  KlComparer(const std::string& path, int n_vocab, int n_ctx, const std::vector<int32_t>& tokens);
  ~KlComparer();
  KlComparer(const KlComparer&) = delete;
  KlComparer& operator=(const KlComparer&) = delete;
  // REQUIRES: called with the positions in the order the base was written. Throws
  // etna::Error(invalid_argument) at a position the base does not have or whose next token differs.
  void add(const float* logprobs, int32_t next_token);
  KlResult result() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace etna::eval
