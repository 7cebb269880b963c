// `etna logits` end to end: tokenises the prompt itself, so this also checks the tokenizer
// and the CLI plumbing against llama.cpp's reference for stories260K.
#include <cmath>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace {

using nlohmann::json;

std::string quote(const std::string& s) { return "'" + s + "'"; }

TEST(CliLogits, MatchesReferenceForStories) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(ref_path, "reference/stories260K.json");
  std::ifstream in(ref_path);
  const json ref = json::parse(in);
  const json& rc = ref["cases"][0];
  std::string out;
  const int rc_exit = etna::test::run_command(etna::test::etna_binary().string() + " logits -m " +
                                                   quote(model.string()) + " -p " + quote(rc["prompt"]) + " --top 5",
                                               &out);
  ASSERT_EQ(rc_exit, 0) << out;
  const json got = json::parse(out);
  EXPECT_EQ(got["tokens"], rc["tokens"]);
  ASSERT_EQ(got["positions"].size(), rc["positions"].size());
  for (size_t p = 0; p < rc["positions"].size(); ++p) {
    const json& top = got["positions"][p]["top"];
    const json& want = rc["positions"][p]["top"];
    ASSERT_EQ(top.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(top[i][0], want[i][0]) << "position " << p << " rank " << i;
      EXPECT_NEAR(top[i][1].get<double>(), want[i][1].get<double>(), 1e-3);
    }
  }
}

TEST(CliLogits, PromptPastContextFailsWithOneLine) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::string out;
  const int rc = etna::test::run_command(
      etna::test::etna_binary().string() + " logits -m " + quote(model.string()) + " -p 'Once upon a time' --ctx 3",
      &out, /*merge_stderr=*/true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(out,
            "etna: error: prompt is longer than the context (5 tokens > n_ctx 3); use a shorter prompt or a larger "
            "--ctx\n");
}

TEST(CliLogits, MissingModelFailsCleanly) {
  std::string out;
  const int rc = etna::test::run_command(
      etna::test::etna_binary().string() + " logits -m /nonexistent.gguf -p hi", &out, /*merge_stderr=*/true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(out.rfind("etna: error: ", 0), 0u) << out;
}

}  // namespace
