// Turning a row of logits into the next token. The chain follows llama.cpp's default order:
// repetition penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> seeded draw.
// Temperature <= 0 means greedy (argmax after penalties, lowest id wins ties).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::engine {

using tokenizer::Token;

// Seed value meaning "pick a fresh random seed" (Sampler::seed() reports the one chosen).
constexpr uint64_t kRandomSeed = UINT64_MAX;

struct SamplingParams {
  float temperature = 0.8f;       // <= 0: greedy
  float top_p = 0.95f;            // (0, 1]; 1 disables
  float min_p = 0.05f;            // [0, 1]; 0 disables
  int top_k = 40;                 // <= 0 disables (whole vocabulary)
  float repeat_penalty = 1.0f;    // > 0; 1 disables. Applied to tokens of the last repeat_last_n
  int repeat_last_n = 64;         // >= 0 (0 disables every penalty)
  float frequency_penalty = 0.0f; // [-2, 2]: subtracted once per occurrence in the window
  float presence_penalty = 0.0f;  // [-2, 2]: subtracted once if the token occurs in the window
  uint64_t seed = kRandomSeed;
  std::vector<std::string> stop;  // generation stops before any of these strings (non-empty)
  int max_tokens = -1;            // < 0: until the context is full
  int n_logprobs = 0;             // [0, 20]: alternatives reported with each chosen token

  // Throws etna::Error (invalid_argument) naming the first parameter out of range.
  void validate() const;
};

struct TokenLogprob {
  Token token = tokenizer::kNoToken;
  float logprob = 0.0f;
};

// A sampled token with its log-probability under the model's own distribution (softmax of the
// raw logits, before penalties and truncation) and the n most likely alternatives, best first.
struct SampledToken {
  Token token = tokenizer::kNoToken;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

class Sampler {
 public:
  // Validates `params` (throws etna::Error) and seeds the generator.
  explicit Sampler(SamplingParams params);

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }  // the resolved seed (never kRandomSeed)

  // Picks a token from one row of logits (n_vocab floats). Does not record it: call accept().
  Token sample(std::span<const float> logits);
  // As sample(), also reporting log-probabilities (params().n_logprobs alternatives).
  SampledToken sample_with_logprobs(std::span<const float> logits);

  // Adds a token (prompt or generated) to the history the penalties look at.
  void accept(Token t);
  // Forgets the history and restarts the random sequence from the seed.
  void reset();

 private:
  struct Candidate {
    Token id;
    float logit;
    float p;
  };
  void apply_penalties(std::vector<Candidate>& c) const;
  Token draw(std::vector<Candidate>& c);
  double uniform();  // [0, 1) with 53 random bits, identical on every platform

  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<Token> history_;  // most recent last; at most repeat_last_n kept
  std::vector<Candidate> scratch_;
};

// log-softmax of `logits` at `token`, and the n best alternatives (ties: lower id first).
SampledToken logprobs_of(std::span<const float> logits, Token token, int n_top);

}  // namespace etna::engine
