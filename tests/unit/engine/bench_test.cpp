// etna bench and the memory estimates: the JSON shape on stories260K (no timing asserts: only
// that the figures exist, are positive and are consistent with each other), bytes per token,
// bad options, and etna info --memory.
#include "etna/engine/bench.h"

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "support/test_support.h"

namespace etna::engine {
namespace {

using nlohmann::json;

void expect_rate(const json& j, const char* key) {
  ASSERT_TRUE(j.contains(key)) << key;
  const json& r = j[key];
  for (const char* f : {"min", "median", "max"}) ASSERT_TRUE(r[f].is_number()) << key << "." << f;
  EXPECT_GT(r["min"].get<double>(), 0.0) << key;
  EXPECT_LE(r["min"].get<double>(), r["median"].get<double>()) << key;
  EXPECT_LE(r["median"].get<double>(), r["max"].get<double>()) << key;
}

TEST(BenchCli, JsonShapeOnStories260K) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  std::string out;
  const int rc = test::run_command(
      test::etna_binary().string() + " bench -m " + path.string() + " -p 16 -n 8 -r 1 -t 1 --json", &out);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out);
  expect_rate(j, "pp_tps");
  expect_rate(j, "tg_tps");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["type"], "F32");
  EXPECT_FALSE(j["kernels"].get<std::string>().empty());
  EXPECT_EQ(j["cache_type"], "f32");
  EXPECT_GT(j["bandwidth_gbps"].get<double>(), 0.0);
  // stories260K has its own output.weight: everything but token_embd is read per token.
  auto m = model::Model::load(path.string());
  uint64_t all = 0, per_token = 0;
  for (const auto& t : m->file().tensors()) {
    all += t.n_bytes;
    if (t.name != "token_embd.weight") per_token += t.n_bytes;
  }
  EXPECT_EQ(j["bytes_per_token"].get<uint64_t>(), per_token);
  // One run: the roofline is that run's rate over the bandwidth measured right after it.
  const double roofline = j["tg_tps"]["median"].get<double>() * per_token / (j["bandwidth_gbps"].get<double>() * 1e9);
  EXPECT_NEAR(j["roofline"].get<double>(), roofline, 1e-9 + 1e-6 * roofline);
  ASSERT_EQ(j["roofline_runs"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["roofline_runs"][0]["roofline"].get<double>(), j["roofline"].get<double>());
  EXPECT_DOUBLE_EQ(j["roofline_runs"][0]["tg_tps"].get<double>(), j["tg_tps"]["median"].get<double>());
  const json& mem = j["memory"];
  EXPECT_EQ(mem["weights"].get<uint64_t>(), all);
  EXPECT_EQ(mem["kv_cache"].get<uint64_t>(), 16u * model::kv_bytes_per_token(m->config(), model::KvType::f32));
  EXPECT_GT(mem["rss"].get<uint64_t>(), 0u);
  EXPECT_GE(mem["rss_peak"].get<uint64_t>(), mem["rss"].get<uint64_t>());
  EXPECT_LE(mem["rss_added"].get<uint64_t>(), mem["rss"].get<uint64_t>());
}

// Three runs: each run's roofline is its own rate over the bandwidth measured beside it, and
// the figures are the medians over the runs.
TEST(BenchCli, RooflinePairsEachRunWithItsBandwidth) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  std::string out;
  const int rc = test::run_command(
      test::etna_binary().string() + " bench -m " + path.string() + " -p 8 -n 8 -r 3 -t 1 --json", &out);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out);
  const json& runs = j["roofline_runs"];
  ASSERT_EQ(runs.size(), 3u);
  const double per_token = j["bytes_per_token"].get<double>();
  std::vector<double> tg, bw, roof;
  for (const json& run : runs) {
    tg.push_back(run["tg_tps"].get<double>());
    bw.push_back(run["bandwidth_gbps"].get<double>());
    roof.push_back(run["roofline"].get<double>());
    ASSERT_GT(bw.back(), 0.0);
    EXPECT_NEAR(roof.back(), tg.back() * per_token / (bw.back() * 1e9), 1e-9 * roof.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[1];
  };
  EXPECT_DOUBLE_EQ(j["tg_tps"]["median"].get<double>(), median(tg));
  EXPECT_DOUBLE_EQ(j["bandwidth_gbps"].get<double>(), median(bw));
  EXPECT_DOUBLE_EQ(j["roofline"].get<double>(), median(roof));
  if (!j["int8_peak_gops"].empty()) EXPECT_GT(j["prompt_peak_fraction"].get<double>(), 0.0);
}

TEST(BenchCli, CacheTypeAndBadOptions) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  const std::string bench = test::etna_binary().string() + " bench -m " + path.string();
  std::string out;
  ASSERT_EQ(test::run_command(bench + " -p 8 -n 4 -r 1 -t 1 --cache-type q8_0 --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["cache_type"], "q8_0");
  EXPECT_NE(test::run_command(bench + " -p 0 -n 0", &out, true), 0);
  EXPECT_NE(out.find("both tests are skipped"), std::string::npos) << out;
  EXPECT_NE(test::run_command(bench + " -r 0", &out, true), 0);
  EXPECT_NE(test::run_command(bench + " --cache-type q4_0", &out, true), 0);
  EXPECT_NE(out.find("unknown KV cache type"), std::string::npos) << out;
}

TEST(BenchApi, BytesPerTokenSkipsUntiedEmbedding) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-spm-q8_0.gguf");  // separate output matrix
  auto m = model::Model::load(path.string());
  ASSERT_FALSE(m->config().tied_output);
  uint64_t all = 0, embd = 0;
  for (const auto& t : m->file().tensors()) {
    all += t.n_bytes;
    if (t.name == "token_embd.weight") embd = t.n_bytes;
  }
  ASSERT_GT(embd, 0u);
  EXPECT_EQ(weight_bytes_per_token(*m), all - embd);
  const MemoryEstimate e = estimate_memory(*m, 100, model::KvType::f16, 32);
  EXPECT_EQ(e.weights, all);
  EXPECT_EQ(e.kv_total, 100 * e.kv_per_token);
  EXPECT_EQ(e.kv_per_token, 2u * m->config().n_layer * m->config().n_embd_kv() * 2);
  EXPECT_GT(e.scratch, 0u);
  EXPECT_EQ(e.total(), e.weights + e.kv_total + e.scratch);
  EXPECT_THROW(estimate_memory(*m, 0, model::KvType::f32), Error);
  BenchOptions o;
  o.n_prompt = o.n_gen = 0;
  EXPECT_THROW(run_bench(*m, o), Error);
}

TEST(BenchApi, BytesPerTokenCountsTiedEmbedding) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-kq-q4_k_m.gguf");  // output tied to token_embd
  auto m = model::Model::load(path.string());
  ASSERT_TRUE(m->config().tied_output);
  uint64_t all = 0;
  for (const auto& t : m->file().tensors()) all += t.n_bytes;
  EXPECT_EQ(weight_bytes_per_token(*m), all);
}

TEST(InfoMemory, ReportsWeightsKvAndTotal) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  std::string out;
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " info --memory " + path.string() +
                                  " --ctx 256 --cache-type f16 --json",
                              &out),
            0)
      << out;
  const json j = json::parse(out);
  auto m = model::Model::load(path.string());
  EXPECT_EQ(j["n_ctx"], 256);
  EXPECT_EQ(j["cache_type"], "f16");
  EXPECT_EQ(j["kv_bytes_per_token"].get<uint64_t>(), model::kv_bytes_per_token(m->config(), model::KvType::f16));
  EXPECT_EQ(j["kv_bytes"].get<uint64_t>(), 256 * j["kv_bytes_per_token"].get<uint64_t>());
  EXPECT_EQ(j["total_bytes"].get<uint64_t>(),
            j["weights_bytes"].get<uint64_t>() + j["kv_bytes"].get<uint64_t>() + j["scratch_bytes"].get<uint64_t>());
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " info --memory " + path.string(), &out), 0) << out;
  EXPECT_NE(out.find("KV per token"), std::string::npos) << out;
  EXPECT_NE(test::run_command(test::etna_binary().string() + " info --memory " + path.string() + " --ctx -5", &out, true), 0);
}

// Decode of a mixture-of-experts model reads expert_used_count of expert_count experts: the
// roofline counts those slices only, and a decode step reads exactly that much (the counter).
TEST(BenchApi, BytesPerTokenCountsOnlyTheUsedExperts) {
  test::TempDir dir;
  const std::string path = (dir / "moe.gguf").string();
  std::string out;
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " synth --shape test-qwen3moe --type q4_0 -o " + path, &out), 0)
      << out;
  auto m = model::Model::load(path);
  const model::ModelConfig& c = m->config();
  ASSERT_EQ(c.n_expert, 8);
  ASSERT_EQ(c.n_expert_used, 2);
  uint64_t dense = 0, experts = 0;
  for (const auto& t : m->file().tensors())
    (t.name.find("_exps.weight") != std::string::npos ? experts : dense) += t.n_bytes;
  ASSERT_GT(experts, 0u);
  EXPECT_EQ(weight_bytes_per_token(*m), dense + experts / 8 * 2);
  auto cache = m->make_cache(1, 16);
  model::Batch b;
  b.add(5, 0, 0, true);
  std::vector<float> logits;
  const uint64_t before = m->expert_bytes_read();
  m->forward(b, *cache, logits);
  EXPECT_EQ(m->expert_bytes_read() - before, experts / 8 * 2);
}

// Sliding-window layers keep a ring of window + batch cells: the estimate is what the cache
// allocates, not n_ctx cells on every layer.
TEST(BenchApi, KvEstimateCountsWindowRings) {
  ETNA_REQUIRE_SHARED(path, "next/models/tiny-gemma2-f32.gguf");  // window 8 on even layers
  auto m = model::Model::load(path.string());
  ASSERT_GT(m->config().sliding_window, 0);
  for (int n_ctx : {4, 64, 300}) {
    const MemoryEstimate e = estimate_memory(*m, n_ctx, model::KvType::f16, 16);
    auto cache = m->make_cache(1, n_ctx, model::KvType::f16, std::min(16, n_ctx));
    EXPECT_EQ(e.kv_total, cache->bytes()) << n_ctx;
    if (n_ctx > 8 + 16) {
      EXPECT_LT(e.kv_total, e.kv_per_token * n_ctx) << n_ctx;
    }
  }
}

}  // namespace
}  // namespace etna::engine
