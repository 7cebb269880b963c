// Prompt-lookup decoding: the drafter's n-gram matching, and generation with lookup giving
// exactly the tokens of plain decoding (greedy and seeded sampling, real and quantised models).
#include "etna/engine/lookup.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/engine/generator.h"
#include "support/test_support.h"

namespace etna::engine {
namespace {

TEST(LookupDraft, LongestNgramMostRecentMatch) {
  const std::vector<Token> h = {1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3};
  // The 3-gram 1 2 3 occurs at 0: the tokens after it are drafted.
  EXPECT_EQ(lookup_draft(h, 3), (std::vector<Token>{4, 5, 9}));
  EXPECT_EQ(lookup_draft(h, 1), (std::vector<Token>{4}));
  // Only bigrams: 2 3 occurs at 1 and 6; the most recent (6) wins.
  const std::vector<Token> h2 = {1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 0, 2, 3};
  EXPECT_EQ(lookup_draft(h2, 2), (std::vector<Token>{7, 8}));
  // Only the last token matches (at 5).
  const std::vector<Token> h3 = {1, 2, 3, 4, 5, 9, 6, 9};
  EXPECT_EQ(lookup_draft(h3, 4), (std::vector<Token>{6, 9}));
  // max_ngram = 1 ignores longer context.
  EXPECT_EQ(lookup_draft(h, 2, 1), (std::vector<Token>{7, 8}));  // the 3 at index 7
}

TEST(LookupDraft, NothingToDraft) {
  EXPECT_TRUE(lookup_draft(std::vector<Token>{}, 4).empty());
  EXPECT_TRUE(lookup_draft(std::vector<Token>{5}, 4).empty());
  EXPECT_TRUE(lookup_draft(std::vector<Token>{1, 2, 3, 4}, 4).empty());  // no repeat
  EXPECT_TRUE(lookup_draft(std::vector<Token>{1, 2, 1}, 0).empty());
  EXPECT_EQ(lookup_draft(std::vector<Token>{7, 7}, 4), (std::vector<Token>{7}));
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  return p;
}

std::vector<Token> encode(const tokenizer::Tokenizer& tok, const std::string& text) {
  tokenizer::EncodeOptions enc;
  enc.add_special = true;
  return tok.encode(text, enc);
}

// Generates with and without lookup from fresh generators; returns the plain result.
GenerationResult expect_same(const model::Model& m, const tokenizer::Tokenizer& tok, const std::string& prompt,
                             const SamplingParams& params, int n_draft, GenerationResult* with_lookup = nullptr) {
  const auto ids = encode(tok, prompt);
  Generator plain(m, tok, 512);
  Generator fast(m, tok, 512);
  fast.set_lookup(n_draft);
  GenerationResult a = plain.generate(ids, params);
  GenerationResult b = fast.generate(ids, params);
  EXPECT_EQ(a.tokens, b.tokens) << "prompt: " << prompt;
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.finish, b.finish);
  EXPECT_LE(b.timings.accepted_tokens, b.timings.drafted_tokens);
  // The cache holds the prompt and accepted text only: exactly what plain decoding holds.
  EXPECT_EQ(plain.cached_tokens(), fast.cached_tokens());
  if (with_lookup) *with_lookup = b;
  return a;
}

const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball.";

TEST(LookupGeneration, SameTokensAsGreedyOnStories260K) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(m->file());
  const std::string copy_heavy = std::string(kStory) + "\n" + kStory + "\n" + kStory + "\n";
  for (const std::string& prompt : {std::string("Once upon a time"), std::string("Tom and his dog"),
                                    std::string(kStory), copy_heavy}) {
    for (int n_draft : {1, 4, 10}) {
      GenerationResult fast;
      expect_same(*m, *tok, prompt, greedy(96), n_draft, &fast);
      if (prompt == copy_heavy && n_draft == 10) {
        EXPECT_GT(fast.timings.drafted_tokens, 0);
        EXPECT_GT(fast.timings.accepted_tokens, 0);
      }
    }
  }
}

TEST(LookupGeneration, SameTokensWithSeededSampling) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(m->file());
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.repeat_penalty = 1.1f;
  p.seed = 7;
  p.max_tokens = 80;
  expect_same(*m, *tok, std::string(kStory) + " " + kStory, p, 6);
}

TEST(LookupGeneration, SameTokensOnQuantisedModels) {
  for (const char* name : {"models/tiny-llama-spm-q4_0.gguf", "models/tiny-llama-kq-q4_k_m.gguf"}) {
    ETNA_REQUIRE_SHARED(path, name);
    auto m = model::Model::load(path.string());
    auto tok = tokenizer::Tokenizer::from_gguf(m->file());
    for (const std::string& prompt : {std::string("Hello world"), std::string(kStory),
                                      std::string("one two three one two three one two three")})
      expect_same(*m, *tok, prompt, greedy(48), 5);
  }
}

TEST(LookupGeneration, CacheReusedAcrossTurns) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(m->file());
  Generator fast(*m, *tok, 512);
  fast.set_lookup(8);
  const auto first = encode(*tok, std::string(kStory) + " " + kStory);
  const GenerationResult r1 = fast.generate(first, greedy(40));
  std::vector<Token> second = first;
  second.insert(second.end(), r1.tokens.begin(), r1.tokens.end());
  tokenizer::EncodeOptions no_bos;
  no_bos.add_special = false;
  const auto more = tok->encode(" Then Lily", no_bos);
  second.insert(second.end(), more.begin(), more.end());
  const GenerationResult r2 = fast.generate(second, greedy(40));
  EXPECT_GT(r2.timings.cached_tokens, 0);
  Generator fresh(*m, *tok, 512);
  EXPECT_EQ(fresh.generate(second, greedy(40)).tokens, r2.tokens);
}

TEST(LookupGeneration, NegativeDraftLengthIsAnError) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(m->file());
  Generator g(*m, *tok, 64);
  EXPECT_THROW(g.set_lookup(-1), Error);
}

}  // namespace
}  // namespace etna::engine
