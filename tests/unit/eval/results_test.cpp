// The leaderboard database: runs keep their rows together, newest first, filtered by task.
#include "etna/eval/results.h"

#include <fstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"

#include "support/test_support.h"

namespace etna::eval {
namespace {

ResultRow row(const std::string& task, const std::string& metric, double value) {
  ResultRow r;
  r.model = "m";
  r.quantisation = "Q4_0";
  r.file_bytes = 1234;
  r.task = task;
  r.dataset = "d.txt";
  r.settings = R"({"ctx":128})";
  r.metric = metric;
  r.value = value;
  return r;
}

TEST(ResultStore, RunsAreStoredTogetherAndListedNewestFirst) {
  test::TempDir dir;
  const auto path = results_path(dir.path());
  {
    auto s = ResultStore::open(path);
    EXPECT_EQ(s->add_run({row("perplexity", "ppl", 10.5)}), 1);
    EXPECT_EQ(s->add_run({row("hellaswag", "acc", 0.25), row("hellaswag", "acc_norm", 0.5)}), 2);
  }
  auto s = ResultStore::open(path);  // reopened: the rows are durable
  auto all = s->list();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].run, 2);
  EXPECT_EQ(all[0].metric, "acc");
  EXPECT_EQ(all[1].metric, "acc_norm");
  EXPECT_EQ(all[2].run, 1);
  EXPECT_DOUBLE_EQ(all[2].value, 10.5);
  EXPECT_EQ(all[2].file_bytes, 1234u);
  EXPECT_EQ(all[2].date.size(), 20u);  // 2026-12-01T23:00:00Z
  auto ppl = s->list("perplexity");
  ASSERT_EQ(ppl.size(), 1u);
  EXPECT_EQ(ppl[0].settings, R"({"ctx":128})");
}

TEST(ResultStore, AFileThatIsNotADatabaseIsAClearError) {
  test::TempDir dir;
  const auto path = dir / "results.sqlite";
  std::ofstream(path) << "this is not an SQLite database, just some text that is long enough to have a header";
  EXPECT_THROW(ResultStore::open(path), Error);
}

}  // namespace
}  // namespace etna::eval
