#include "etna/engine/sampler.h"

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"

namespace etna::engine {
namespace {

SamplingParams plain(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  return p;
}

// Logits whose softmax is exactly the given probabilities.
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<Token, int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
  std::map<Token, int> h;
  for (int i = 0; i < n; ++i) ++h[s.sample(logits)];
  return h;
}

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  Sampler s(plain(0.0f));
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-5.0f, -5.0f}), 0);
  EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.0f, 7.5f}), 2);
  Sampler negative(plain(-1.0f));  // any temperature <= 0 is greedy
  EXPECT_EQ(negative.sample(std::vector<float>{0.1f, 0.2f, 0.15f}), 1);
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  auto p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  s.accept(0);
  s.accept(1);
  // Positive logits are divided (2.0 -> 1.0), negative ones multiplied (-0.4 -> -0.8).
  EXPECT_EQ(s.sample(std::vector<float>{2.0f, -0.4f, 1.9f}), 2);
  EXPECT_EQ(s.sample(std::vector<float>{-3.0f, -0.4f, -0.6f}), 2);  // -0.8 < -0.6
  EXPECT_EQ(s.sample(std::vector<float>{-3.0f, -0.4f, -0.9f}), 1);  // -0.8 > -0.9
  EXPECT_EQ(s.sample(std::vector<float>{2.0f, -0.4f, 0.9f}), 0);   // 1.0 > 0.9
}

TEST(Sampler, FrequencyPenaltyCountsOccurrencesPresenceDoesNot) {
  const std::vector<float> logits{1.0f, 0.9f};
  auto with = [&](float freq, float presence) {
    auto p = plain(0.0f);
    p.frequency_penalty = freq;
    p.presence_penalty = presence;
    Sampler s(p);
    for (int i = 0; i < 3; ++i) s.accept(0);
    return s.sample(logits);
  };
  EXPECT_EQ(with(0.03f, 0.0f), 0);  // 1.0 - 3 * 0.03 = 0.91
  EXPECT_EQ(with(0.04f, 0.0f), 1);  // 1.0 - 3 * 0.04 = 0.88
  EXPECT_EQ(with(0.0f, 0.08f), 0);  // 1.0 - 0.08 = 0.92 (once, not per occurrence)
  EXPECT_EQ(with(0.0f, 0.12f), 1);  // 0.88
  EXPECT_EQ(with(0.02f, 0.03f), 0);  // 1.0 - 0.06 - 0.03 = 0.91
  EXPECT_EQ(with(0.02f, 0.05f), 1);  // 1.0 - 0.06 - 0.05 = 0.89
}

TEST(Sampler, PenaltiesOnlyLookAtTheLastNTokens) {
  auto p = plain(0.0f);
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  s.accept(0);
  s.accept(1);
  s.accept(1);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 2.0f}), 0);  // token 1 penalised, token 0 out of the window
  s.accept(0);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 0.5f, 0.2f}), 2);  // both 0 and 1 penalised
  s.reset();
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 2.0f}), 1);  // history forgotten
}

TEST(Sampler, TopKKeepsOnlyTheKBestWithTiesByLowestId) {
  auto p = plain(1.0f);
  p.top_k = 2;
  Sampler s(p);
  auto h = histogram(s, {5.0f, 5.0f, 5.0f, 5.0f, 4.0f}, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[0], 800);
  EXPECT_GT(h[1], 800);

  p.top_k = 1;
  Sampler one(p);
  auto h1 = histogram(one, {0.0f, 3.0f, 2.9f, -1.0f}, 500);
  EXPECT_EQ(h1.size(), 1u);
  EXPECT_EQ(h1[1], 500);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  const auto logits = logits_for({0.5, 0.3, 0.2});
  auto run = [&](float top_p) {
    auto p = plain(1.0f);
    p.top_p = top_p;
    Sampler s(p);
    std::set<Token> seen;
    for (auto& [t, n] : histogram(s, logits, 3000)) seen.insert(t);
    return seen;
  };
  EXPECT_EQ(run(0.49f), (std::set<Token>{0}));
  EXPECT_EQ(run(0.51f), (std::set<Token>{0, 1}));
  EXPECT_EQ(run(0.79f), (std::set<Token>{0, 1}));
  EXPECT_EQ(run(0.81f), (std::set<Token>{0, 1, 2}));
  EXPECT_EQ(run(1.0f), (std::set<Token>{0, 1, 2}));
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
  const auto logits = logits_for({0.5, 0.3, 0.2});
  auto run = [&](float min_p) {
    auto p = plain(1.0f);
    p.min_p = min_p;
    Sampler s(p);
    std::set<Token> seen;
    for (auto& [t, n] : histogram(s, logits, 3000)) seen.insert(t);
    return seen;
  };
  EXPECT_EQ(run(0.39f), (std::set<Token>{0, 1, 2}));  // 0.2 / 0.5 = 0.4
  EXPECT_EQ(run(0.41f), (std::set<Token>{0, 1}));
  EXPECT_EQ(run(0.59f), (std::set<Token>{0, 1}));     // 0.3 / 0.5 = 0.6
  EXPECT_EQ(run(0.61f), (std::set<Token>{0}));
}

TEST(Sampler, DrawsFollowTheTemperedDistribution) {
  const auto logits = logits_for({0.5, 0.3, 0.2});
  const int n = 40000;
  {
    Sampler s(plain(1.0f));
    auto h = histogram(s, logits, n);
    EXPECT_NEAR(h[0] / double(n), 0.5, 0.015);
    EXPECT_NEAR(h[1] / double(n), 0.3, 0.015);
    EXPECT_NEAR(h[2] / double(n), 0.2, 0.015);
  }
  {
    // Temperature 0.5 squares the probabilities: 0.25, 0.09, 0.04 normalised.
    Sampler s(plain(0.5f));
    auto h = histogram(s, logits, n);
    EXPECT_NEAR(h[0] / double(n), 0.25 / 0.38, 0.015);
    EXPECT_NEAR(h[1] / double(n), 0.09 / 0.38, 0.015);
    EXPECT_NEAR(h[2] / double(n), 0.04 / 0.38, 0.015);
  }
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedsDiffer) {
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(double(i)));
  auto draws = [&](uint64_t seed) {
    auto p = SamplingParams{};
    p.seed = seed;
    p.top_k = 0;
    p.min_p = 0.0f;
    p.temperature = 1.5f;
    Sampler s(p);
    std::vector<Token> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(logits));
    return out;
  };
  EXPECT_EQ(draws(42), draws(42));
  EXPECT_NE(draws(42), draws(43));
  EXPECT_NE(draws(1), draws(2));

  auto p = SamplingParams{};
  p.seed = 7;
  Sampler s(p);
  auto first = histogram(s, logits, 50);
  s.reset();  // restarts the random sequence
  EXPECT_EQ(histogram(s, logits, 50), first);
}

TEST(Sampler, RandomSeedIsResolved) {
  Sampler s(SamplingParams{});
  EXPECT_NE(s.seed(), kRandomSeed);
}

TEST(Sampler, LogprobsAreLogSoftmaxOfTheRawLogits) {
  const std::vector<float> logits{1.0f, 3.0f, 3.0f, 0.0f};
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + 1.0);
  auto r = logprobs_of(logits, 0, 3);
  EXPECT_EQ(r.token, 0);
  EXPECT_NEAR(r.logprob, 1.0 - lse, 1e-6);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, 1);  // tie: lower id first
  EXPECT_EQ(r.top[1].token, 2);
  EXPECT_EQ(r.top[2].token, 0);
  EXPECT_NEAR(r.top[0].logprob, 3.0 - lse, 1e-6);

  auto p = plain(0.0f);
  p.n_logprobs = 2;
  Sampler s(p);
  auto chosen = s.sample_with_logprobs(logits);
  EXPECT_EQ(chosen.token, 1);
  EXPECT_NEAR(chosen.logprob, 3.0 - lse, 1e-6);
  EXPECT_EQ(chosen.top.size(), 2u);
}

TEST(Sampler, InvalidParametersAreRejectedWithTheirName) {
  auto expect_error = [](auto mutate, const std::string& name) {
    SamplingParams p;
    mutate(p);
    try {
      Sampler s(p);
      ADD_FAILURE() << "no error for " << name;
    } catch (const etna::Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  expect_error([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  expect_error([](SamplingParams& p) { p.top_p = 1.5f; }, "top_p");
  expect_error([](SamplingParams& p) { p.min_p = -0.1f; }, "min_p");
  expect_error([](SamplingParams& p) { p.min_p = 1.1f; }, "min_p");
  expect_error([](SamplingParams& p) { p.top_k = -1; }, "top_k");
  expect_error([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  expect_error([](SamplingParams& p) { p.repeat_penalty = 0.0f; }, "repeat_penalty");
  expect_error([](SamplingParams& p) { p.repeat_last_n = -2; }, "repeat_last_n");
  expect_error([](SamplingParams& p) { p.frequency_penalty = 2.5f; }, "frequency_penalty");
  expect_error([](SamplingParams& p) { p.presence_penalty = -3.0f; }, "presence_penalty");
  expect_error([](SamplingParams& p) { p.stop = {"ok", ""}; }, "stop");
  expect_error([](SamplingParams& p) { p.n_logprobs = 21; }, "logprobs");
}

TEST(Sampler, NanLogitsAreAnError) {
  Sampler s(plain(0.0f));
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, NAN}), etna::Error);
  EXPECT_THROW(s.sample(std::vector<float>{}), etna::Error);
}

}  // namespace
}  // namespace etna::engine
