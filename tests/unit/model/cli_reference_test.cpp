// Every case of every reference (../shared/reference and ../shared/next/reference) through the
// real binary, as a user would run it: `etna logits` (top-20 logits of every position at the
// file's bar) and `etna run --json` greedy (the continuation the peer produced). The kernel
// set is whatever ETNA_KERNELS selects; CTest runs this suite once per set (tests/CMakeLists.txt).
#include <cmath>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/model/model.h"
#include "unit/model/reference_util.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

using nlohmann::json;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

class CliReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CliReferenceTest, LogitsAndGreedyRunMatchLlamaCpp) {
  const std::string id = GetParam();
  if (id.empty()) GTEST_SKIP() << "skipped: ../shared not found (reference/)";
  const ref::RefModel files = ref::resolve(id);
  if (files.model.empty() || files.json.empty()) GTEST_SKIP() << "skipped: ../shared not found (" << id << ")";
  try {
    Model::load(files.model.string());
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unsupported) GTEST_SKIP() << "skipped (not implemented yet): " << e.what();
    throw;
  }
  const json ref = ref::read_json(files.json);
  const auto file = gguf::GgufFile::open(files.model.string());
  const ref::Precision prec = ref::precision_of(*file);
  const KvType kv = ref::kv_cache_of(ref);
  const double bar = ref::top20_bar(prec, kv, file->architecture());
  const std::string common = " -m " + quote(files.model.string()) + " --cache-type " + kv_type_name(kv);
  test::TempDir tmp;

  double max_top20 = 0;
  for (size_t ci = 0; ci < ref["cases"].size(); ++ci) {
    const json& rc = ref["cases"][ci];
    const std::string prompt = rc["prompt"].get<std::string>();
    SCOPED_TRACE(id + " case " + std::to_string(ci) + ": " + prompt);

    // Logits: the reference's top 20 of every position must be in Etna's top 40 at the bar.
    std::string out;
    ASSERT_EQ(test::run_command(test::etna_binary().string() + " logits" + common + " --top 40 -p " + quote(prompt), &out,
                                /*merge_stderr=*/true),
              0)
        << out;
    const json got = json::parse(out);
    ASSERT_EQ(got["tokens"], rc["tokens"]);
    ASSERT_EQ(got["positions"].size(), rc["positions"].size());
    for (size_t p = 0; p < rc["positions"].size(); ++p) {
      std::map<int, double> mine;
      for (const auto& e : got["positions"][p]["top"]) mine[e[0].get<int>()] = e[1].get<double>();
      const json& top = rc["positions"][p]["top"];
      const double scale = std::max(1.0, std::fabs(top[0][1].get<double>()));
      for (size_t i = 0; i < 20 && i < top.size(); ++i) {
        auto it = mine.find(top[i][0].get<int>());
        ASSERT_NE(it, mine.end()) << "reference top-" << i << " token " << top[i][0] << " not in Etna's top 40 at position "
                                  << p;
        max_top20 = std::max(max_top20, std::fabs(it->second - top[i][1].get<double>()) / scale);
      }
    }

    // Greedy continuation through `etna run --json` (prompt from a file: any bytes survive).
    const auto greedy = rc["greedy"].get<std::vector<int32_t>>();
    const auto prompt_file = tmp / ("prompt" + std::to_string(ci) + ".txt");
    std::ofstream(prompt_file, std::ios::binary) << prompt;
    ASSERT_EQ(test::run_command(test::etna_binary().string() + " run --json --temp 0 --ctx 512" + common + " -n " +
                                    std::to_string(greedy.size()) + " -f " + quote(prompt_file.string()),
                                &out, /*merge_stderr=*/false),
              0)
        << out;
    const json run = json::parse(out);
    EXPECT_EQ(run["prompt_tokens"], rc["tokens"]);
    const auto tokens = run["tokens"].get<std::vector<int32_t>>();
    size_t matched = 0;
    while (matched < tokens.size() && matched < greedy.size() && tokens[matched] == greedy[matched]) ++matched;
    if (prec == ref::Precision::f32) {
      EXPECT_EQ(tokens, greedy) << "F32 greedy continuation must be identical";
    } else {
      // As in reference_test.cpp: quantised near-ties may flip late; the first 8 must agree.
      EXPECT_GE(matched, std::min<size_t>(8, greedy.size())) << "greedy continuation diverged at token " << matched;
    }
  }
  std::printf("[  ERRORS  ] etna logits %-30s top20 %.3g (bar %.0e, %s cache)\n", id.c_str(), max_top20, bar,
              kv_type_name(kv));
  EXPECT_LE(max_top20, bar);
}

INSTANTIATE_TEST_SUITE_P(Shared, CliReferenceTest, ::testing::ValuesIn(ref::reference_models()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return ref::test_name(info.param); });

}  // namespace
}  // namespace etna::model
