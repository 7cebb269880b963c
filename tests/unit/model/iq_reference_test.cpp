// The IQ-quantised files (IQ4_NL, IQ4_XS, IQ3_M = IQ3_S + IQ4_XS + Q4_K/Q6_K) against what
// llama.cpp computes on them (../shared/next/reference, same format and bars as
// ../shared/reference/README.md), in-process and through `etna logits` / `etna run --json`.
// CTest runs this suite again under each forced kernel set (ETNA_KERNELS, inherited by the
// child processes), so every SIMD path meets the reference, not only the scalar one.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/ggml_type.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Bars for quantised weights (../shared/reference/README.md).
constexpr double kTop20Bar = 3e-2;
constexpr double kTop10MeanBar = 5e-3;
constexpr size_t kGreedyPrefix = 8;  // as reference_test.cpp: near-ties may flip late

const std::vector<std::string> kIqFiles = {"tiny-llama-kq-iq4_nl", "tiny-llama-kq-iq4_xs", "tiny-llama-kq-iq3_m"};

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

std::vector<float> read_f32(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  in.seekg(0, std::ios::end);
  std::vector<float> v(static_cast<size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

int argmax(const float* row, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  return best;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Errors of one position's logits against its reference "top" list, relative to the scale.
struct PositionErrors {
  double top20 = 0, mean10 = 0;
};
PositionErrors position_errors(const json& top, const std::function<double(int)>& logit_of) {
  PositionErrors e;
  const double scale = std::max(1.0, std::fabs(top[0][1].get<double>()));
  for (size_t i = 0; i < 20 && i < top.size(); ++i) {
    const double err = std::fabs(logit_of(top[i][0].get<int>()) - top[i][1].get<double>()) / scale;
    e.top20 = std::max(e.top20, err);
    if (i < 10) e.mean10 += err / 10;
  }
  return e;
}

class IqReferenceTest : public ::testing::TestWithParam<std::string> {};

// The file holds the IQ type it is named after (so this suite cannot pass on a mislabelled file).
void expect_holds(const gguf::GgufFile& f, gguf::GgmlType type) {
  size_t count = 0;
  for (const auto& t : f.tensors()) count += t.type == type;
  EXPECT_GT(count, 0u) << "no " << gguf::ggml_type_name(type) << " tensor in " << f.path();
}

TEST_P(IqReferenceTest, ForwardPassMatchesLlamaCpp) {
  const std::string name = GetParam();
  ETNA_REQUIRE_SHARED(model_path, "next/models/" + name + ".gguf");
  ETNA_REQUIRE_SHARED(json_path, "next/reference/" + name + ".json");
  ETNA_REQUIRE_SHARED(last_path, "next/reference/" + name + ".last-logits.f32");
  const json ref = read_json(json_path);
  auto model = Model::load(model_path.string());
  expect_holds(model->file(), name.ends_with("iq4_nl")   ? gguf::GgmlType::IQ4_NL
                              : name.ends_with("iq4_xs") ? gguf::GgmlType::IQ4_XS
                                                         : gguf::GgmlType::IQ3_S);
  const int V = model->config().n_vocab;
  ASSERT_EQ(V, ref["n_vocab"].get<int>());
  const std::vector<float> last_rows = read_f32(last_path);

  double max_top20 = 0, max_mean10 = 0, max_lse = 0, max_last = 0;
  size_t greedy_total = 0, greedy_matched = 0;
  for (size_t ci = 0; ci < ref["cases"].size(); ++ci) {
    const json& rc = ref["cases"][ci];
    SCOPED_TRACE(name + " case " + std::to_string(ci));
    const auto tokens = rc["tokens"].get<std::vector<int32_t>>();
    const auto greedy = rc["greedy"].get<std::vector<int32_t>>();
    auto cache = model->make_cache(1, 512);
    Batch b;
    for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
    std::vector<float> logits;
    model->forward(b, *cache, logits);
    ASSERT_EQ(logits.size(), tokens.size() * V);

    for (size_t p = 0; p < tokens.size(); ++p) {
      const float* row = &logits[p * V];
      const json& top = rc["positions"][p]["top"];
      const PositionErrors e = position_errors(top, [row](int id) { return row[id]; });
      max_top20 = std::max(max_top20, e.top20);
      max_mean10 = std::max(max_mean10, e.mean10);
      const double scale = std::max(1.0, std::fabs(top[0][1].get<double>()));
      const float mx = *std::max_element(row, row + V);
      double s = 0;
      for (int i = 0; i < V; ++i) s += std::exp(static_cast<double>(row[i]) - mx);
      max_lse = std::max(max_lse, std::fabs(mx + std::log(s) - rc["positions"][p]["lse"].get<double>()) / scale);
      if (top[0][1].get<double>() - top[1][1].get<double>() > 0.1) {
        EXPECT_EQ(argmax(row, V), top[0][0].get<int>()) << "top-1 differs at position " << p;
      }
    }

    const size_t r = rc["last_logits_row"].get<size_t>();
    ASSERT_LE((r + 1) * V, last_rows.size());
    const float* want = &last_rows[r * V];
    const float* got = &logits[(tokens.size() - 1) * V];
    const double scale = std::max(1.0, std::fabs(double(*std::max_element(want, want + V))));
    for (int i = 0; i < V; ++i) max_last = std::max(max_last, std::fabs(got[i] - want[i]) / scale);

    std::vector<int32_t> out;
    int32_t next = argmax(got, V);
    std::vector<float> step;
    for (size_t i = 0; i < greedy.size(); ++i) {
      out.push_back(next);
      if (i + 1 == greedy.size()) break;
      Batch one;
      one.add(next, static_cast<int32_t>(tokens.size() + i), 0, true);
      model->forward(one, *cache, step);
      next = argmax(step.data(), V);
    }
    size_t matched = 0;
    while (matched < out.size() && out[matched] == greedy[matched]) ++matched;
    greedy_total += greedy.size();
    greedy_matched += matched;
    EXPECT_GE(matched, std::min(kGreedyPrefix, greedy.size())) << "greedy continuation diverged at " << matched;
  }
  std::printf("[  ERRORS  ] %-22s kernels %-11s top20 %.3g  mean10 %.3g  lse %.3g  last-row %.3g  greedy %zu/%zu\n",
              name.c_str(), tensor::active_kernels_name().c_str(), max_top20, max_mean10, max_lse, max_last,
              greedy_matched, greedy_total);
  RecordProperty("max_top20_rel_error", std::to_string(max_top20));
  RecordProperty("max_last_row_rel_error", std::to_string(max_last));
  EXPECT_LE(max_top20, kTop20Bar);
  EXPECT_LE(max_lse, kTop20Bar);
  EXPECT_LE(max_last, kTop20Bar);
  EXPECT_LE(max_mean10, kTop10MeanBar);
}

// `etna logits` tokenises the prompt itself and prints the top logits of every position;
// `etna run --json --temp 0` continues greedily. Both go through the CLI binary.
TEST_P(IqReferenceTest, CliLogitsAndGreedyRunMatchLlamaCpp) {
  const std::string name = GetParam();
  ETNA_REQUIRE_SHARED(model_path, "next/models/" + name + ".gguf");
  ETNA_REQUIRE_SHARED(json_path, "next/reference/" + name + ".json");
  const json ref = read_json(json_path);
  const std::string bin = test::etna_binary().string();
  if (!fs::exists(bin)) GTEST_SKIP() << "skipped: " << bin << " not built";
  double max_top20 = 0;
  for (size_t ci = 0; ci < ref["cases"].size(); ++ci) {
    const json& rc = ref["cases"][ci];
    SCOPED_TRACE(name + " case " + std::to_string(ci));
    std::string out;
    ASSERT_EQ(test::run_command(bin + " logits -m " + quote(model_path.string()) + " -p " +
                                    quote(rc["prompt"].get<std::string>()) + " --top 40",
                                &out),
              0)
        << out;
    const json got = json::parse(out);
    ASSERT_EQ(got["tokens"], rc["tokens"]);
    ASSERT_EQ(got["positions"].size(), rc["positions"].size());
    for (size_t p = 0; p < rc["positions"].size(); ++p) {
      // Etna's own top 40 must contain the reference's top 20 ids with close logits.
      std::map<int, double> mine;
      for (const auto& e : got["positions"][p]["top"]) mine[e[0].get<int>()] = e[1].get<double>();
      const json& top = rc["positions"][p]["top"];
      const PositionErrors e = position_errors(top, [&mine](int id) {
        auto it = mine.find(id);
        return it == mine.end() ? -1e30 : it->second;  // missing from the top 40: fails the bar
      });
      max_top20 = std::max(max_top20, e.top20);
      EXPECT_LE(e.mean10, kTop10MeanBar) << "position " << p;
    }

    const auto greedy = rc["greedy"].get<std::vector<int32_t>>();
    ASSERT_EQ(test::run_command(bin + " run --json --temp 0 -n " + std::to_string(greedy.size()) + " -m " +
                                    quote(model_path.string()) + " -p " + quote(rc["prompt"].get<std::string>()),
                                &out),
              0)
        << out;
    const json run = json::parse(out);
    EXPECT_EQ(run["prompt_tokens"], rc["tokens"]);
    const auto tokens = run["tokens"].get<std::vector<int32_t>>();
    size_t matched = 0;
    while (matched < tokens.size() && matched < greedy.size() && tokens[matched] == greedy[matched]) ++matched;
    EXPECT_GE(matched, std::min(kGreedyPrefix, greedy.size())) << "etna run diverged at token " << matched;
  }
  std::printf("[  ERRORS  ] %-22s etna logits top20 %.3g\n", name.c_str(), max_top20);
  EXPECT_LE(max_top20, kTop20Bar);
}

// A file holding a format Etna does not compute is refused at load, naming the tensor and the
// type (one F32 weight of the kq source file retyped; F32 is larger than any of these).
TEST(IqUnsupportedTypes, LoadNamesTensorAndType) {
  ETNA_REQUIRE_SHARED(path, "next/models/tiny-llama-kq-f32.gguf");
  auto src = gguf::GgufFile::open(path.string());
  test::TempDir dir;
  for (gguf::GgmlType type : {gguf::GgmlType::IQ2_XXS, gguf::GgmlType::IQ2_XS, gguf::GgmlType::IQ2_S,
                              gguf::GgmlType::IQ3_XXS, gguf::GgmlType::IQ1_S, gguf::GgmlType::IQ1_M,
                              gguf::GgmlType::TQ1_0, gguf::GgmlType::TQ2_0, gguf::GgmlType::MXFP4}) {
    gguf::GgufWriter w;
    for (const auto& [k, v] : src->metadata()) w.set(k, v);
    for (const auto& t : src->tensors())
      w.add_tensor(t.name, t.dims, t.name == "blk.0.ffn_up.weight" ? type : t.type, t.data);
    const std::string out = (dir / "m.gguf").string();
    w.write(out);
    const std::string name = gguf::ggml_type_name(type);
    try {
      Model::load(out);
      ADD_FAILURE() << name << ": loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::unsupported);
      EXPECT_EQ(std::string(e.what()),
                out + ": tensor blk.0.ffn_up.weight has type " + name + ", which this build of Etna cannot compute");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Next, IqReferenceTest, ::testing::ValuesIn(kIqFiles),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace etna::model
