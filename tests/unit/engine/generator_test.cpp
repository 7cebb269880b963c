// Generator tests on the real stories260K model against llama.cpp's greedy continuations.
#include "etna/engine/generator.h"

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "support/test_support.h"

namespace etna::engine {
namespace {

struct Case {
  std::string prompt;
  std::vector<Token> tokens;  // prompt ids, BOS included
  std::vector<Token> greedy;
  std::string greedy_text;
  float first_logprob;        // log-probability of greedy[0] after the prompt
};

std::vector<Case> load_cases(const std::filesystem::path& path) {
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in);
  std::vector<Case> out;
  for (const auto& c : j["cases"]) {
    const auto& last = c["positions"].back();
    out.push_back({c["prompt"], c["tokens"].get<std::vector<Token>>(), c["greedy"].get<std::vector<Token>>(),
                   c["greedy_text"], last["top"][0][1].get<float>() - last["lse"].get<float>()});
  }
  return out;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = max_tokens;
  return p;
}

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ETNA_REQUIRE_SHARED(model_path, "models/stories260K.gguf");
    ETNA_REQUIRE_SHARED(ref_path, "reference/stories260K.json");
    model_ = model::Model::load(model_path.string());
    tokenizer_ = tokenizer::Tokenizer::from_gguf(model_->file());
    cases_ = load_cases(ref_path);
  }
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::vector<Case> cases_;
};

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

TEST_F(GeneratorTest, GreedyContinuationsMatchTheReference) {
  for (const auto& c : cases_) {
    ASSERT_EQ(tokenizer_->encode(c.prompt), c.tokens) << c.prompt;
    Generator gen(*model_, *tokenizer_, 512);
    std::string streamed;
    int pieces = 0;
    auto r = gen.generate(c.tokens, greedy(static_cast<int>(c.greedy.size())), [&](std::string_view piece) {
      EXPECT_FALSE(piece.empty());
      EXPECT_TRUE(valid_utf8(std::string(piece)));
      streamed += piece;
      ++pieces;
      return true;
    });
    EXPECT_EQ(r.tokens, c.greedy) << c.prompt;
    EXPECT_EQ(r.text, c.greedy_text) << c.prompt;
    EXPECT_EQ(streamed, r.text);
    EXPECT_GT(pieces, 1);
    EXPECT_EQ(r.finish, FinishReason::length);
    EXPECT_EQ(r.timings.prompt_tokens, static_cast<int>(c.tokens.size()));
    EXPECT_EQ(r.timings.cached_tokens, 0);
    EXPECT_EQ(r.timings.generated_tokens, static_cast<int>(c.greedy.size()));
  }
}

TEST_F(GeneratorTest, SmallBatchesGiveTheSameResult) {
  const auto& c = cases_[1];
  Generator gen(*model_, *tokenizer_, 512, /*n_batch=*/3);  // the prompt is evaluated in chunks
  auto r = gen.generate(c.tokens, greedy(32));
  EXPECT_EQ(r.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 32));
}

TEST_F(GeneratorTest, FollowUpPromptReusesTheCache) {
  const auto& c = cases_[0];
  Generator gen(*model_, *tokenizer_, 512);
  auto first = gen.generate(c.tokens, greedy(10));
  ASSERT_EQ(first.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 10));
  // The 10th token was sampled but never evaluated.
  EXPECT_EQ(gen.cached_tokens().size(), c.tokens.size() + 9);

  std::vector<Token> extended = c.tokens;
  extended.insert(extended.end(), first.tokens.begin(), first.tokens.end());
  auto second = gen.generate(extended, greedy(10));
  EXPECT_EQ(second.timings.cached_tokens, static_cast<int>(c.tokens.size() + 9));
  EXPECT_EQ(second.tokens, std::vector<Token>(c.greedy.begin() + 10, c.greedy.begin() + 20));

  // The same prompt again reuses all but its last token.
  auto again = gen.generate(extended, greedy(10));
  EXPECT_EQ(again.timings.cached_tokens, static_cast<int>(extended.size() - 1));
  EXPECT_EQ(again.tokens, second.tokens);

  // A different prompt shares only BOS; the stale cells must not leak into it.
  const auto& other = cases_[1];
  auto diverged = gen.generate(other.tokens, greedy(static_cast<int>(other.greedy.size())));
  EXPECT_EQ(diverged.timings.cached_tokens, 1);
  EXPECT_EQ(diverged.tokens, other.greedy);

  gen.reset();
  EXPECT_TRUE(gen.cached_tokens().empty());
  auto fresh = gen.generate(c.tokens, greedy(5));
  EXPECT_EQ(fresh.timings.cached_tokens, 0);
  EXPECT_EQ(fresh.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 5));
}

TEST_F(GeneratorTest, PromptLongerThanTheContextIsAClearError) {
  const auto& c = cases_[0];  // 5 tokens
  Generator gen(*model_, *tokenizer_, 4);
  try {
    gen.generate(c.tokens, greedy(4));
    FAIL() << "no error";
  } catch (const etna::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::limit);
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gen.generate(std::vector<Token>{}, greedy(4)), etna::Error);
  EXPECT_THROW(gen.generate(std::vector<Token>{1, 100000}, greedy(4)), etna::Error);
}

TEST_F(GeneratorTest, AFullContextEndsWithLength) {
  const auto& c = cases_[0];
  Generator gen(*model_, *tokenizer_, 8);  // 5 prompt tokens + 3 generated fill it
  auto r = gen.generate(c.tokens, greedy(100));
  EXPECT_EQ(r.finish, FinishReason::length);
  EXPECT_EQ(r.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 4));

  Generator exact(*model_, *tokenizer_, 5);  // the prompt fills it: one token can still be sampled
  auto one = exact.generate(c.tokens, greedy(100));
  EXPECT_EQ(one.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 1));
  EXPECT_EQ(one.finish, FinishReason::length);
}

TEST_F(GeneratorTest, StopStringEndsGenerationAndIsNotEmitted) {
  const auto& c = cases_[0];
  Generator gen(*model_, *tokenizer_, 512);
  auto p = greedy(64);
  p.stop = {"girl", "never appears"};
  std::string streamed;
  auto r = gen.generate(c.tokens, p, [&](std::string_view s) {
    streamed += s;
    return true;
  });
  EXPECT_EQ(r.text, ", there was a little ");
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.finish, FinishReason::stop);
  EXPECT_EQ(r.stop_string, "girl");

  // A stop string that is only completed by the last token's text still counts.
  // Stop exactly at the token that completes "Lily." (the run would end there anyway).
  p.stop = {"Lily."};
  int n = 0;
  for (std::string text; text.find("Lily.") == std::string::npos; ++n)
    text += tokenizer_->token_to_piece(c.greedy.at(static_cast<size_t>(n)));
  p.max_tokens = n;
  auto tail = gen.generate(c.tokens, p);
  EXPECT_EQ(tail.text, ", there was a little girl named ");
  EXPECT_EQ(tail.finish, FinishReason::stop);
}

TEST_F(GeneratorTest, EndOfGenerationTokenStops) {
  // Pretend the 4th greedy token is the end-of-sequence token of this vocabulary.
  const auto& c = cases_[0];
  tokenizer::Vocab vocab = tokenizer_->vocab();
  vocab.eos = c.greedy[3];
  tokenizer::Tokenizer tok(vocab);
  Generator gen(*model_, tok, 512);
  auto r = gen.generate(c.tokens, greedy(64));
  EXPECT_EQ(r.finish, FinishReason::stop);
  EXPECT_EQ(r.tokens, std::vector<Token>(c.greedy.begin(), c.greedy.begin() + 3));
  EXPECT_EQ(r.timings.generated_tokens, 4);
  EXPECT_EQ(r.text, ", there was");
}

TEST_F(GeneratorTest, CallbackCanCancelAndZeroTokensIsAllowed) {
  const auto& c = cases_[0];
  Generator gen(*model_, *tokenizer_, 512);
  auto r = gen.generate(c.tokens, greedy(64), [](std::string_view) { return false; });
  EXPECT_EQ(r.finish, FinishReason::cancelled);
  EXPECT_EQ(r.tokens.size(), 1u);

  auto none = gen.generate(c.tokens, greedy(0));
  EXPECT_TRUE(none.tokens.empty());
  EXPECT_EQ(none.finish, FinishReason::length);
}

TEST_F(GeneratorTest, LogprobsMatchTheReference) {
  const auto& c = cases_[0];
  Generator gen(*model_, *tokenizer_, 512);
  auto p = greedy(8);
  p.n_logprobs = 5;
  auto r = gen.generate(c.tokens, p);
  ASSERT_EQ(r.logprobs.size(), r.tokens.size());
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    EXPECT_EQ(r.logprobs[i].token, r.tokens[i]);
    ASSERT_EQ(r.logprobs[i].top.size(), 5u);
    EXPECT_EQ(r.logprobs[i].top[0].token, r.tokens[i]);  // greedy picks the most likely
    EXPECT_LE(r.logprobs[i].logprob, 0.0f);
  }
  EXPECT_NEAR(r.logprobs[0].logprob, c.first_logprob, 1e-3);
}

TEST_F(GeneratorTest, SameSeedSameTextDifferentSeedDifferentText) {
  const auto& c = cases_[0];
  auto sampled = [&](uint64_t seed) {
    Generator gen(*model_, *tokenizer_, 512);
    SamplingParams p;
    p.temperature = 0.8f;
    p.seed = seed;
    p.max_tokens = 64;
    auto r = gen.generate(c.tokens, p);
    EXPECT_EQ(r.seed, seed);
    return r.text;
  };
  const std::string a = sampled(42);
  EXPECT_EQ(sampled(42), a);
  EXPECT_NE(sampled(43), a);
}

}  // namespace
}  // namespace etna::engine
