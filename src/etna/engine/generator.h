// Text generation for one sequence: evaluates a prompt, then samples and evaluates one token at a
// time, streaming UTF-8-complete text pieces. The KV cache persists between generate() calls, so
// a follow-up prompt that extends an earlier one (a chat's next turn) only evaluates new tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "etna/engine/sampler.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::engine {

enum class FinishReason {
  stop,       // an end-of-generation token or a stop string
  length,     // max_tokens reached or the context is full
  cancelled,  // the piece callback asked to stop
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled"

struct Timings {
  int prompt_tokens = 0;     // tokens in the prompt
  int cached_tokens = 0;     // of those, reused from the cache (not evaluated again)
  int generated_tokens = 0;  // tokens sampled (the end-of-generation token included)
  double prompt_ms = 0.0;    // evaluating the prompt tokens that were not cached
  double gen_ms = 0.0;       // sampling and evaluating the generated tokens
  int drafted_tokens = 0;    // prompt-lookup guesses checked by the model (set_lookup)
  int accepted_tokens = 0;   // of those, guesses the model agreed with
  double prompt_tps() const;  // evaluated prompt tokens per second (0 when none)
  double gen_tps() const;     // generated tokens per second (0 when none)
};

struct GenerationResult {
  std::vector<Token> tokens;            // generated ids (no end-of-generation token)
  std::string text;                     // their text, up to (not including) any stop string
  FinishReason finish = FinishReason::length;
  std::string stop_string;              // the stop string that ended generation, if any
  std::vector<SampledToken> logprobs;   // one per token in `tokens` when params.n_logprobs > 0
  Timings timings;
  uint64_t seed = 0;                    // the sampler's resolved seed
};

// Receives each piece of text as soon as it is final. Return false to stop generating.
using PieceCallback = std::function<bool(std::string_view piece)>;

class Generator {
 public:
  // A generator with its own cache of n_ctx positions (n_ctx <= 0: the model's training
  // context). Prompts are evaluated in chunks of at most n_batch tokens; the cache stores its
  // rows as `cache_type`. The model and the tokenizer must outlive the generator.
  Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, int n_ctx, int n_batch = 512,
            model::KvType cache_type = model::KvType::f32);

  // Continues `prompt` (token ids, BOS included if wanted). Cached tokens matching a prefix of
  // the prompt are reused. Throws etna::Error (limit) when the prompt does not fit the context,
  // (invalid_argument) for an empty prompt, bad ids or bad sampling parameters.
  GenerationResult generate(std::span<const Token> prompt, const SamplingParams& params,
                            const PieceCallback& on_piece = {});

  // Forgets the cached tokens.
  void reset();

  // Called after each batch of prompt tokens is evaluated with (evaluated, to evaluate) counts of
  // the uncached part; empty: none. For progress displays of long prompts on slow models.
  void set_prompt_progress(std::function<void(int done, int total)> f) { prompt_progress_ = std::move(f); }

  // Prompt-lookup decoding: from now on, each step guesses up to n_draft next tokens from an
  // earlier occurrence of the latest n-gram (engine/lookup.h) and evaluates them in the same
  // batch as the sampled token; guesses the sampler agrees with cost no extra forward pass.
  // The generated tokens are exactly those of plain decoding. 0 (the default) turns it off.
  void set_lookup(int n_draft);

  int n_ctx() const { return n_ctx_; }
  // Tokens whose keys/values are in the cache, in order (the last sampled token is not
  // evaluated, so it is not here).
  const std::vector<Token>& cached_tokens() const { return cached_; }

 private:
  // Evaluates tokens[0..n) at positions cached_.size()...; logits_ gets the last token's row,
  // or (all_logits, one batch only) one row per token.
  void evaluate(std::span<const Token> tokens, bool all_logits = false);
  // Forgets the last n cached tokens.
  void drop_cached(size_t n);

  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  int n_ctx_;
  int n_batch_;
  std::function<void(int, int)> prompt_progress_;
  int n_lookup_ = 0;
  std::unique_ptr<model::KvCache> cache_;
  std::vector<Token> cached_;
  model::Batch batch_;
  std::vector<float> logits_;
};

}  // namespace etna::engine
