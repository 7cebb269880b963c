// Continuous-batching scheduler on the real stories260K model: batched greedy output equals the
// output of each request alone (and llama.cpp's reference), prefix reuse skips evaluation,
// cancellation frees the slot, the queue bound holds.
#include "etna/engine/scheduler.h"

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/engine/json_constraint.h"
#include "support/test_support.h"

namespace etna::engine {
namespace {

using namespace std::chrono_literals;

struct Collected {
  std::string text;
  std::vector<Token> tokens;
  GenerationEvent last;
  std::vector<SampledToken> logprobs;
};

Collected collect(RequestStream& s) {
  Collected c;
  GenerationEvent e;
  for (;;) {
    while (!s.next(e, 1000ms)) {
    }
    c.text += e.text;
    c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
    for (auto& l : e.logprobs) c.logprobs.push_back(l);
    if (e.done) break;
  }
  c.last = e;
  return c;
}

GenerationRequest greedy_request(std::vector<Token> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0.0f;
  r.params.max_tokens = max_tokens;
  return r;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ETNA_REQUIRE_SHARED(model_path, "models/stories260K.gguf");
    ETNA_REQUIRE_SHARED(ref_path, "reference/stories260K.json");
    model_ = model::Model::load(model_path.string());
    tokenizer_ = tokenizer::Tokenizer::from_gguf(model_->file());
    std::ifstream in(ref_path);
    ref_ = nlohmann::json::parse(in);
  }
  std::unique_ptr<Scheduler> make(int parallel, int queue = 16, int step_tokens = 256) {
    SchedulerOptions o;
    o.n_parallel = parallel;
    o.n_ctx = 256;
    o.queue_capacity = queue;
    o.step_tokens = step_tokens;
    return std::make_unique<Scheduler>(*model_, *tokenizer_, o);
  }
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  nlohmann::json ref_;
};

TEST_F(SchedulerTest, BatchedGreedyEqualsAloneAndReference) {
  // Alone: one slot, one request at a time.
  std::vector<Collected> alone;
  {
    auto s = make(1);
    for (const auto& c : ref_["cases"]) alone.push_back(collect(*s->submit(greedy_request(c["tokens"], 40))));
  }
  // Batched: every case at once (twice over), a small step budget so prompts are chunked and
  // interleaved with running decodes.
  auto s = make(4, 16, 7);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int round = 0; round < 2; ++round)
    for (const auto& c : ref_["cases"]) streams.push_back(s->submit(greedy_request(c["tokens"], 40)));
  const size_t n = ref_["cases"].size();
  for (size_t i = 0; i < streams.size(); ++i) {
    const auto got = collect(*streams[i]);
    const auto& want = alone[i % n];
    EXPECT_EQ(got.tokens, want.tokens) << "request " << i;
    EXPECT_EQ(got.text, want.text) << "request " << i;
    const auto ref = ref_["cases"][i % n]["greedy"].get<std::vector<Token>>();
    ASSERT_GE(ref.size(), got.tokens.size());
    EXPECT_TRUE(std::equal(got.tokens.begin(), got.tokens.end(), ref.begin())) << "request " << i << " vs llama.cpp";
    EXPECT_EQ(got.last.finish, FinishReason::length);
    EXPECT_EQ(got.last.completion_tokens, 40);
  }
  EXPECT_EQ(s->stats().active, 0);
}

TEST_F(SchedulerTest, PrefixReuseEvaluatesOnlyTheRest) {
  auto s = make(2);
  const auto base = ref_["cases"][1]["tokens"].get<std::vector<Token>>();  // 20 tokens
  const auto first = collect(*s->submit(greedy_request(base, 8)));
  const uint64_t before = s->stats().evaluated_tokens;
  // The conversation grows: the old prompt, the reply, more text.
  std::vector<Token> longer = base;
  longer.insert(longer.end(), first.tokens.begin(), first.tokens.end());
  longer.push_back(base[3]);
  const auto second = collect(*s->submit(greedy_request(longer, 4)));
  const uint64_t evaluated = s->stats().evaluated_tokens - before;
  EXPECT_GE(second.last.cached_tokens, static_cast<int>(base.size()));
  // Only the uncached tail of the prompt plus the generated tokens (but the last) were evaluated.
  EXPECT_EQ(evaluated, longer.size() - static_cast<size_t>(second.last.cached_tokens) + 3);

  // The same result as a scheduler with a cold cache.
  auto cold = make(1);
  EXPECT_EQ(collect(*cold->submit(greedy_request(longer, 4))).tokens, second.tokens);
}

TEST_F(SchedulerTest, CopiesPrefixFromABusySlot) {
  auto s = make(2);
  const auto base = ref_["cases"][1]["tokens"].get<std::vector<Token>>();
  auto long_running = s->submit(greedy_request(base, 150));
  GenerationEvent e;
  while (!long_running->next(e, 1000ms)) {
  }
  // Slot 0 is busy with `base`; a request sharing its prefix lands in slot 1 by copying cells.
  std::vector<Token> variant = base;
  variant.back() = base[2];
  const auto got = collect(*s->submit(greedy_request(variant, 5)));
  EXPECT_EQ(got.last.cached_tokens, static_cast<int>(base.size()) - 1);
  long_running->cancel();
  collect(*long_running);
  auto cold = make(1);
  EXPECT_EQ(collect(*cold->submit(greedy_request(variant, 5))).tokens, got.tokens);
}

TEST_F(SchedulerTest, CancellationFreesTheSlot) {
  auto s = make(1, 4);
  const auto prompt = ref_["cases"][0]["tokens"].get<std::vector<Token>>();
  auto first = s->submit(greedy_request(prompt, 200));
  GenerationEvent e;
  while (!first->next(e, 1000ms)) {
  }
  first->cancel();
  const auto rest = collect(*first);
  EXPECT_EQ(rest.last.finish, FinishReason::cancelled);
  EXPECT_LT(rest.tokens.size() + e.tokens.size(), 200u);
  // The only slot is free again: a new request completes.
  const auto second = collect(*s->submit(greedy_request(prompt, 5)));
  EXPECT_EQ(second.last.finish, FinishReason::length);
  EXPECT_EQ(second.tokens.size(), 5u);
}

TEST_F(SchedulerTest, QueueBoundRefusesWithQueueFullError) {
  auto s = make(1, 1);
  const auto prompt = ref_["cases"][0]["tokens"].get<std::vector<Token>>();
  std::vector<std::shared_ptr<RequestStream>> ok;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    try {
      ok.push_back(s->submit(greedy_request(prompt, 200)));
    } catch (const QueueFullError&) {
      ++refused;
    }
  }
  // At most one running and one waiting (more only if the first ones finished meanwhile).
  EXPECT_GE(refused, 1);
  for (auto& r : ok) r->cancel();
  for (auto& r : ok) collect(*r);
}

// Issue 16 item 14: a cancelled request behind a waiting one gave its queue place back only
// once it reached the front, so clients that aborted and retried got 429s.
TEST_F(SchedulerTest, CancelledWaitingRequestReleasesItsPlaceAtOnce) {
  SchedulerOptions o;
  o.n_parallel = 1;
  o.n_ctx = 4096;
  o.queue_capacity = 2;
  Scheduler s(*model_, *tokenizer_, o);
  const auto prompt = ref_["cases"][0]["tokens"].get<std::vector<Token>>();
  auto running = s.submit(greedy_request(prompt, 4000));  // holds the only slot for a while
  auto waiting = s.submit(greedy_request(prompt, 5));
  auto left = s.submit(greedy_request(prompt, 5));
  left->cancel();
  // The running request is far from done, so the queue still holds `waiting` and `left`.
  std::shared_ptr<RequestStream> retry;
  EXPECT_NO_THROW(retry = s.submit(greedy_request(prompt, 5)));
  EXPECT_EQ(collect(*left).last.finish, FinishReason::cancelled);
  running->cancel();
  collect(*running);
  EXPECT_EQ(collect(*waiting).last.finish, FinishReason::length);
  if (retry) {
    EXPECT_EQ(collect(*retry).last.finish, FinishReason::length);
  }
}

TEST_F(SchedulerTest, StopsAtStopStringsAndReportsLogprobs) {
  auto s = make(2);
  const auto& c = ref_["cases"][0];  // ", there was a little girl named Lily. ..."
  auto r = greedy_request(c["tokens"], 60);
  r.params.stop = {"girl"};
  r.logprobs = true;
  r.params.n_logprobs = 3;
  const auto got = collect(*s->submit(r));
  EXPECT_EQ(got.text, ", there was a little ");
  EXPECT_EQ(got.last.finish, FinishReason::stop);
  ASSERT_EQ(got.logprobs.size(), got.tokens.size());
  for (const auto& l : got.logprobs) {
    EXPECT_EQ(l.top.size(), 3u);
    EXPECT_LE(l.logprob, 0.0f);
    EXPECT_EQ(l.top[0].token, l.token);  // greedy picks the most likely token
  }
}

TEST_F(SchedulerTest, RejectsBadRequests) {
  auto s = make(1);
  EXPECT_THROW(s->submit(greedy_request({}, 4)), Error);
  EXPECT_THROW(s->submit(greedy_request({1, 100000}, 4)), Error);
  std::vector<Token> huge(300, 1);
  try {
    s->submit(greedy_request(huge, 4));
    FAIL() << "a prompt longer than the context was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::limit);
  }
}

TEST_F(SchedulerTest, JsonObjectModeProducesJson) {
  auto s = make(2);
  for (float temperature : {0.0f, 1.0f}) {
    for (int max_tokens : {3, 12, 80}) {
      auto r = greedy_request(ref_["cases"][0]["tokens"], max_tokens);
      r.json_object = true;
      r.params.temperature = temperature;
      r.params.seed = 42;
      const auto got = collect(*s->submit(r));
      nlohmann::json parsed;
      EXPECT_NO_THROW(parsed = nlohmann::json::parse(got.text)) << got.text;
      EXPECT_TRUE(parsed.is_object()) << got.text;
    }
  }
}

TEST_F(SchedulerTest, GrammarConstrainsSamplingAndClosesTruncatedOutput) {
  auto s = make(2);
  auto grammar = Grammar::parse(R"(root ::= "{\"n\": " [0-9]{1,3} ", \"w\": \"" [a-z ]{0,30} "\"}")");
  for (int max_tokens : {2, 6, 200}) {
    for (uint64_t seed : {1, 2, 3}) {
      auto r = greedy_request(ref_["cases"][0]["tokens"], max_tokens);
      r.grammar = grammar;
      r.params.temperature = 1.0f;
      r.params.seed = seed;
      const auto got = collect(*s->submit(r));
      GrammarState check(grammar);
      EXPECT_TRUE(check.feed(got.text) && check.accepting()) << got.text;
    }
  }
  // logit_bias: a +100 bias on one token makes it the only choice (until the grammar says no).
  auto r = greedy_request(ref_["cases"][0]["tokens"], 5);
  const Token forced = ref_["cases"][0]["greedy"][3].get<Token>();
  r.logit_bias = {{forced, 100.0f}};
  r.params.temperature = 1.0f;
  const auto got = collect(*s->submit(r));
  EXPECT_EQ(got.tokens, std::vector<Token>(5, forced));
}

}  // namespace
}  // namespace etna::engine
