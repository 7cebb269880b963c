// The decoder families beyond the reference logits: mixture-of-experts decode reads only the
// chosen experts (counted, not timed), qwen3moe as the composition of verified qwen3 attention
// and the verified expert block, sliding-window caches that keep only their window, and one
// clear refusal for each thing a graph does not understand (point 3 of issue 11).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/model.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<float> prompt_logits(const Model& m, const std::vector<int32_t>& tokens, KvType kv = KvType::f32) {
  auto cache = m.make_cache(1, 64, kv);
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
  std::vector<float> logits;
  m.forward(b, *cache, logits);
  return logits;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 1, d = 0;
  for (float x : b) scale = std::max(scale, double(std::fabs(x)));
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
  return d / scale;
}

// A copy of `src` with metadata `set` added or replaced and `extra` tensors added.
struct Rewrite {
  std::vector<std::pair<std::string, gguf::Value>> set;
  std::vector<std::string> drop_keys, drop_tensors;
  struct Extra {
    std::string name;
    std::vector<uint64_t> dims;
    std::vector<float> data;
  };
  std::vector<Extra> extra;

  std::string write(const gguf::GgufFile& src, const test::TempDir& dir, const std::string& name = "m.gguf") const {
    gguf::GgufWriter w;
    for (const auto& [k, v] : src.metadata())
      if (std::find(drop_keys.begin(), drop_keys.end(), k) == drop_keys.end()) w.set(k, v);
    for (const auto& [k, v] : set) w.set(k, v);
    for (const auto& t : src.tensors())
      if (std::find(drop_tensors.begin(), drop_tensors.end(), t.name) == drop_tensors.end())
        w.add_tensor(t.name, t.dims, t.type, t.data);
    for (const auto& e : extra) w.add_tensor(e.name, e.dims, gguf::GgmlType::F32, e.data.data());
    const std::string out = (dir / name).string();
    w.write(out);
    return out;
  }
};

gguf::Value u32(uint32_t v) { return gguf::Value::unsigned_int(gguf::ValueType::UINT32, v); }
gguf::Value f32(float v) { return gguf::Value::floating(gguf::ValueType::FLOAT32, v); }
gguf::Value str(const std::string& s) { return gguf::Value::string(s); }

// ---- mixture of experts -----------------------------------------------------------------------

TEST(Moe, DecodeReadsOnlyTheChosenExperts) {
  ETNA_REQUIRE_SHARED(path, "next/models/tiny-mixtral-moe-f32.gguf");
  auto m = Model::load(path.string());
  const ModelConfig& c = m->config();
  ASSERT_EQ(c.n_expert, 4);
  ASSERT_EQ(c.n_expert_used, 2);
  // One expert's three matrices (gate, up, down), F32.
  const uint64_t per_expert = 3ull * c.n_embd * c.n_ff_exp * sizeof(float);
  auto cache = m->make_cache(1, 64);
  std::vector<float> logits;
  const std::vector<int32_t> prompt = {1, 300, 42, 77, 5, 260, 411, 99};
  for (size_t i = 0; i < prompt.size(); ++i) {
    const uint64_t before = m->expert_bytes_read();
    Batch b;
    b.add(prompt[i], static_cast<int32_t>(i), 0, true);
    m->forward(b, *cache, logits);
    // One token: exactly expert_used_count experts per layer, of expert_count.
    EXPECT_EQ(m->expert_bytes_read() - before, per_expert * c.n_expert_used * c.n_layer) << "token " << i;
  }
  // A batch reads each chosen expert once, never more than all of them.
  auto cache2 = m->make_cache(1, 64);
  const uint64_t before = m->expert_bytes_read();
  Batch b;
  for (size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i], static_cast<int32_t>(i), 0, true);
  m->forward(b, *cache2, logits);
  const uint64_t batch_bytes = m->expert_bytes_read() - before;
  EXPECT_GE(batch_bytes, per_expert * c.n_expert_used * c.n_layer);
  EXPECT_LE(batch_bytes, per_expert * c.n_expert * c.n_layer);
}

// qwen3moe has no peer reference: build one from the verified qwen3 file whose every expert is
// that layer's dense feed-forward. With renormalised top-k weights (they sum to 1) the routed
// block must give the dense logits whatever the router picks; unnormalised weights, a wrong
// expert slice or a wrong attention would not.
TEST(Moe, Qwen3MoeOfIdenticalExpertsEqualsDenseQwen3) {
  ETNA_REQUIRE_SHARED(path, "next/models/tiny-qwen3-f32.gguf");
  auto dense = Model::load(path.string());
  const ModelConfig& c = dense->config();
  test::TempDir dir;
  const int X = 4;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<std::vector<float>> stacked;  // keeps tensor data alive until write()
  gguf::GgufWriter w;
  for (const auto& [k, v] : dense->file().metadata()) {
    std::string key = k;
    if (key.rfind("qwen3.", 0) == 0) key = "qwen3moe." + key.substr(6);
    w.set(key, key == "general.architecture" ? str("qwen3moe") : v);
  }
  w.set("qwen3moe.expert_count", u32(X));
  w.set("qwen3moe.expert_used_count", u32(2));
  w.set("qwen3moe.expert_feed_forward_length", u32(c.n_ff));
  for (const auto& t : dense->file().tensors()) {
    const std::string& n = t.name;
    const size_t dot = n.find('.', 4);
    const std::string kind = dot == std::string::npos ? "" : n.substr(dot + 1);
    if (kind != "ffn_gate.weight" && kind != "ffn_up.weight" && kind != "ffn_down.weight") {
      w.add_tensor(n, t.dims, t.type, t.data);
      continue;
    }
    ASSERT_EQ(t.type, gguf::GgmlType::F32);
    const size_t count = t.dims[0] * t.dims[1];
    std::vector<float>& s = stacked.emplace_back(count * X);
    for (int e = 0; e < X; ++e) std::memcpy(&s[count * e], t.data, count * sizeof(float));
    const std::string base = n.substr(0, dot + 1) + kind.substr(0, kind.size() - 7) + "_exps.weight";
    w.add_tensor(base, {t.dims[0], t.dims[1], static_cast<uint64_t>(X)}, t.type, s.data());
    if (kind == "ffn_gate.weight") {
      std::vector<float>& r = stacked.emplace_back(static_cast<size_t>(c.n_embd) * X);
      for (float& v : r) v = nd(rng);
      w.add_tensor(n.substr(0, dot + 1) + "ffn_gate_inp.weight", {static_cast<uint64_t>(c.n_embd), uint64_t(X)},
                   gguf::GgmlType::F32, r.data());
    }
  }
  const std::string moe_path = (dir / "qwen3moe.gguf").string();
  w.write(moe_path);
  auto moe = Model::load(moe_path);
  EXPECT_EQ(moe->config().arch, "qwen3moe");
  EXPECT_EQ(moe->config().n_expert, X);
  const std::vector<int32_t> prompt = {50256, 464, 2068, 7586, 21831, 18045, 625, 262};
  const uint64_t before = moe->expert_bytes_read();
  const std::vector<float> a = prompt_logits(*moe, prompt), b = prompt_logits(*dense, prompt);
  EXPECT_LE(max_rel_diff(a, b), 1e-5);
  EXPECT_GT(moe->expert_bytes_read(), before);
}

// ---- sliding-window caches --------------------------------------------------------------------

// A window layer's ring holds window + max_batch cells, not the context; decoding far past it
// token by token gives the logits of the full-context cache, and truncating past what the ring
// holds is refused rather than read wrongly.
TEST(SlidingWindow, RingCacheEqualsFullCacheAndIsBounded) {
  ETNA_REQUIRE_SHARED(path, "next/models/tiny-gemma3-f32.gguf");
  auto m = Model::load(path.string());
  const ModelConfig& c = m->config();
  ASSERT_EQ(c.sliding_window, 8);
  auto ring = m->make_cache(1, 64, KvType::f32, /*max_batch=*/1);
  auto full = m->make_cache(1, 64, KvType::f32, /*max_batch=*/64);
  EXPECT_EQ(ring->layer_cells(0), 9);   // window layer: 8 + 1
  EXPECT_EQ(ring->layer_cells(5), 64);  // global layer (one in six)
  EXPECT_LT(ring->bytes(), full->bytes());
  std::vector<float> a, b;
  for (int i = 0; i < 40; ++i) {
    Batch batch;
    batch.add((i * 37 + 11) % c.n_vocab, i, 0, true);
    m->forward(batch, *ring, a);
    m->forward(batch, *full, b);
    ASSERT_LE(max_rel_diff(a, b), 1e-6) << "position " << i;
  }
  EXPECT_EQ(ring->reusable(0, 39), 39);  // one step back is still in the ring
  EXPECT_EQ(ring->reusable(0, 20), 0);   // position 20 needs cells 12..19, long overwritten
  EXPECT_THROW(ring->truncate(0, 20), Error);
  Batch two;
  two.add(1, 40, 0, true);
  two.add(2, 41, 0, true);
  EXPECT_THROW(m->forward(two, *ring, a), Error);  // more than max_batch new cells
}

// ---- refusals ---------------------------------------------------------------------------------

class Refusals : public ::testing::Test {
 protected:
  void SetUp() override {
    llama3_ = test::shared_file("next/models/tiny-llama3-bpe-f32.gguf");
    mixtral_ = test::shared_file("next/models/tiny-mixtral-moe-f32.gguf");
    if (llama3_.empty() || mixtral_.empty()) GTEST_SKIP() << "skipped: ../shared not found (next/models)";
  }
  std::filesystem::path llama3_, mixtral_;
  test::TempDir dir_;
};

TEST_F(Refusals, UnknownTensorIsNamed) {
  auto f = gguf::GgufFile::open(llama3_.string());
  Rewrite r;
  r.extra.push_back({"blk.1.attn_sinks.weight", {4}, std::vector<float>(4, 0.0f)});
  EXPECT_EQ(load_error(r.write(*f, dir_)),
            (dir_ / "m.gguf").string() +
                ": tensor blk.1.attn_sinks.weight is not understood by Etna's llama graph; refusing to run the model");
}

TEST_F(Refusals, RopeFreqsOfTheWrongLengthIsRefused) {
  auto f = gguf::GgufFile::open(llama3_.string());
  Rewrite r;
  r.drop_tensors = {"rope_freqs.weight"};
  r.extra.push_back({"rope_freqs.weight", {4}, std::vector<float>(4, 1.0f)});
  EXPECT_NE(load_error(r.write(*f, dir_)).find("tensor rope_freqs.weight has shape [4], expected [8]"), std::string::npos);
}

TEST_F(Refusals, UnknownRopeScalingTypeIsNamed) {
  auto f = gguf::GgufFile::open(llama3_.string());
  Rewrite r;
  r.set = {{"llama.rope.scaling.type", str("longrope2")}, {"llama.rope.scaling.factor", f32(4.0f)}};
  EXPECT_EQ(load_error(r.write(*f, dir_)), (dir_ / "m.gguf").string() +
                                               ": rope scaling type 'longrope2' is not supported (supported: none, "
                                               "linear, yarn)");
}

TEST_F(Refusals, UnhandledExpertLayoutsAreNamed) {
  auto f = gguf::GgufFile::open(mixtral_.string());
  {
    Rewrite r;  // shared experts (Qwen2-MoE / DeepSeek style)
    r.set = {{"llama.expert_shared_count", u32(1)}};
    EXPECT_NE(load_error(r.write(*f, dir_, "a.gguf")).find("an expert layout Etna does not handle"), std::string::npos);
  }
  {
    Rewrite r;  // a router without an expert count
    r.drop_keys = {"llama.expert_count", "llama.expert_used_count"};
    EXPECT_NE(load_error(r.write(*f, dir_, "b.gguf")).find("blk.0.ffn_gate_inp.weight (an expert router) without"),
              std::string::npos);
  }
  {
    Rewrite r;  // more experts used than there are
    r.set = {{"llama.expert_used_count", u32(5)}};
    EXPECT_NE(load_error(r.write(*f, dir_, "c.gguf")).find("expert_used_count 5 exceeds expert_count 4"),
              std::string::npos);
  }
  {
    auto q = gguf::GgufFile::open(llama3_.string());
    Rewrite r;  // an expert count on a dense file
    r.set = {{"llama.expert_count", u32(4)}, {"llama.expert_used_count", u32(2)}};
    EXPECT_NE(load_error(r.write(*q, dir_, "d.gguf")).find("does not hold stacked experts"), std::string::npos);
  }
}

TEST_F(Refusals, LayerNormIsANormKindTheGraphRefuses) {
  auto f = gguf::GgufFile::open(llama3_.string());
  {
    Rewrite r;
    r.extra.push_back({"blk.0.attn_norm.bias", {64}, std::vector<float>(64, 0.0f)});
    EXPECT_EQ(load_error(r.write(*f, dir_, "a.gguf")),
              (dir_ / "a.gguf").string() +
                  ": tensor blk.0.attn_norm.bias makes that norm a LayerNorm with bias, a norm kind the llama graph "
                  "does not compute (it uses RMS norm)");
  }
  {
    Rewrite r;
    r.set = {{"llama.attention.layer_norm_epsilon", f32(1e-5f)}};
    EXPECT_NE(load_error(r.write(*f, dir_, "b.gguf")).find("declares LayerNorm"), std::string::npos);
  }
}

}  // namespace
}  // namespace etna::model
