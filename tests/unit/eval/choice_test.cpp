// Multiple choice: the peer's HellaSwag figure on the shared task file, and ARC / MMLU /
// Winogrande JSON Lines scored exactly as an independent full-sequence computation here says.
#include "etna/eval/choice.h"

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include <nlohmann/json.hpp>

#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace etna::eval {
namespace {

using nlohmann::json;

// ../shared/next/eval/README.md: llama-perplexity --hellaswag -c 128 gives acc_norm 25.0 % (2 of 8).
TEST(HellaSwag, ReproducesThePeerOnTheSharedTaskFile) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(tasks, "next/eval/hellaswag-stories.txt");
  test::TempDir dir;
  std::string out;
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " eval hellaswag --json -c 128 -m " + model.string() +
                                  " -f " + tasks.string() + " --data " + dir.path().string(), &out), 0) << out;
  json j = json::parse(out);
  EXPECT_EQ(j["tasks"], 8);
  EXPECT_EQ(j["acc_norm"]["correct"], 2) << out;
  EXPECT_DOUBLE_EQ(j["acc_norm"]["value"].get<double>(), 0.25);
}

// log p(continuation tokens) computed the slow way: the whole sequence from an empty cache.
double full_sequence_logprob(const model::Model& m, const tokenizer::Tokenizer& tok, const Choice& c) {
  tokenizer::EncodeOptions enc;
  const std::vector<int32_t> all = tok.encode(c.context + c.continuation, enc);
  const std::vector<int32_t> ctx = tok.encode(c.context, enc);
  size_t from = 0;
  while (from < ctx.size() && from < all.size() && ctx[from] == all[from]) ++from;
  auto cache = m.make_cache(1, static_cast<int>(all.size()));
  model::Batch b;
  for (size_t i = 0; i < all.size(); ++i) b.add(all[i], static_cast<int>(i), 0, true);
  std::vector<float> logits;
  m.forward(b, *cache, logits);
  const int n_vocab = m.config().n_vocab;
  double lp = 0;
  for (size_t i = std::max<size_t>(from, 1); i < all.size(); ++i) {
    const float* row = &logits[(i - 1) * n_vocab];
    double mx = row[0], sum = 0;
    for (int v = 0; v < n_vocab; ++v) mx = std::max<double>(mx, row[v]);
    for (int v = 0; v < n_vocab; ++v) sum += std::exp(row[v] - mx);
    lp += row[all[i]] - mx - std::log(sum);
  }
  return lp;
}

TEST(MultipleChoice, JsonlFormatsScoreAsAnIndependentComputation) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto model = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  test::TempDir dir;
  const auto file = dir / "mixed.jsonl";
  {
    std::ofstream out(file);
    out << R"({"question": "Lily went to the park. What did she play with?", "choices": {"text": ["a ball", "a moon", "the sky"], "label": ["A", "B", "C"]}, "answerKey": "A"})" "\n";
    out << R"({"question": "Tom was hungry. What did he eat?", "choices": ["a cookie", "a cloud", "a car", "a song"], "answer": 0, "subject": "stories"})" "\n";
    out << "\n";
    out << R"({"sentence": "The cat chased the dog because _ was angry.", "option1": "the cat", "option2": "the dog", "answer": "1"})" "\n";
    out << R"({"context": "Once upon a time there was a", "endings": ["little girl", "blue number"], "gold": 1})" "\n";
  }
  std::vector<ChoiceTask> tasks = read_choice_jsonl(file.string());
  ASSERT_EQ(tasks.size(), 4u);
  EXPECT_EQ(tasks[0].choices.size(), 3u);
  EXPECT_EQ(tasks[0].choices[0].context, "Question: Lily went to the park. What did she play with?\nAnswer:");
  EXPECT_EQ(tasks[0].choices[1].continuation, " a moon");
  EXPECT_EQ(tasks[2].choices[1].context, "The cat chased the dog because the dog");
  EXPECT_EQ(tasks[2].choices[1].continuation, " was angry.");
  EXPECT_EQ(tasks[3].gold, 1);

  ChoiceOptions opt;
  opt.n_ctx = 256;
  const ChoiceResult r = evaluate_choices(*model, *tok, tasks, opt);
  ASSERT_EQ(r.tasks.size(), 4u);
  int correct = 0, correct_norm = 0;
  for (size_t t = 0; t < tasks.size(); ++t) {
    int best = 0, best_norm = 0;
    std::vector<double> lp;
    for (const Choice& c : tasks[t].choices) lp.push_back(full_sequence_logprob(*model, *tok, c));
    for (size_t s = 0; s < lp.size(); ++s) {
      EXPECT_NEAR(r.tasks[t].logprob[s], lp[s], 1e-3) << "task " << t << " choice " << s;
      if (lp[s] > lp[best]) best = static_cast<int>(s);
      const double ns = lp[s] / tasks[t].choices[s].continuation.size();
      if (ns > lp[best_norm] / tasks[t].choices[best_norm].continuation.size()) best_norm = static_cast<int>(s);
    }
    EXPECT_EQ(r.tasks[t].pick, best) << "task " << t;
    EXPECT_EQ(r.tasks[t].pick_norm, best_norm) << "task " << t;
    correct += best == tasks[t].gold;
    correct_norm += best_norm == tasks[t].gold;
  }
  EXPECT_EQ(r.acc.correct, correct);
  EXPECT_EQ(r.acc_norm.correct, correct_norm);
  EXPECT_EQ(r.acc.total, 4);
  EXPECT_LE(r.acc.low(), r.acc.value());
  EXPECT_GE(r.acc.high(), r.acc.value());
}

TEST(MultipleChoice, LimitDrawsTheSameTasksForTheSameSeed) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(tasks_file, "next/eval/hellaswag-stories.txt");
  auto model = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  const auto tasks = read_hellaswag(tasks_file.string());
  ChoiceOptions opt;
  opt.n_ctx = 128;
  opt.limit = 3;
  opt.seed = 7;
  const ChoiceResult a = evaluate_choices(*model, *tok, tasks, opt), b = evaluate_choices(*model, *tok, tasks, opt);
  ASSERT_EQ(a.tasks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a.tasks[i].logprob, b.tasks[i].logprob);
}

TEST(MultipleChoice, MalformedFilesNameTheLine) {
  test::TempDir dir;
  auto expect_error = [&](const std::string& text, const std::string& needle, bool hellaswag) {
    const auto f = dir / "t.txt";
    std::ofstream(f) << text;
    try {
      hellaswag ? read_hellaswag(f.string()) : read_choice_jsonl(f.string());
      ADD_FAILURE() << "no error for: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\nnot json\n", "t.txt:2: not valid JSON", false);
  expect_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n", "names no choice", false);
  expect_error("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n", "at least two choices", false);
  expect_error("ctx\n1\na\nb\nc\n", "whole number of HellaSwag tasks", true);
  expect_error("ctx\n7\na\nb\nc\nd\n", "t.txt:2: the gold ending must be", true);
  EXPECT_THROW(read_hellaswag((dir / "missing.txt").string()), Error);
}

}  // namespace
}  // namespace etna::eval
