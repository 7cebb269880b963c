// The tiled attention path against the per-token one (blocks::attention with AttentionPath
// per_token / tiled) on random queries and caches: F32, F16 and Q8_0 rows, GQA groups 1, 4 and
// 8, a sliding window whose ring wraps, soft-capping, two sequences interleaved in one batch,
// token counts that are no multiple of the tile's block. Only the q.k summation order differs
// between the paths, so they must agree to float rounding.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/model/blocks.h"
#include "etna/model/model.h"

namespace etna::model {
namespace {

struct Case {
  KvType type;
  int group;
  int window;
  float softcap;
};

std::string name(const Case& c) {
  return std::string(kv_type_name(c.type)) + " group " + std::to_string(c.group) + " window " +
         std::to_string(c.window) + " softcap " + std::to_string(c.softcap);
}

// Largest |tiled - per_token| over a batch of two sequences: sequence 0 continues `prior` cached
// cells with n0 tokens, sequence 1 starts with n1, their tokens interleaved.
float max_difference(const Case& k, int prior, int n0, int n1) {
  ModelConfig c;
  c.n_layer = 1;
  c.n_head_kv = 2;
  c.n_head = 2 * k.group;
  c.head_dim = 64;
  c.sliding_window = k.window;
  const int KV = c.n_embd_kv(), Q = c.n_head * c.head_dim;
  KvCache cache(c, 2, 512, k.type, 64);
  std::mt19937 rng(static_cast<unsigned>(k.group * 131 + k.window * 7 + static_cast<int>(k.type)));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> row(KV);
  auto store = [&](int seq, int pos) {
    for (float& v : row) v = nd(rng);
    cache.store_k(seq, 0, pos, row.data());
    for (float& v : row) v = nd(rng);
    cache.store_v(seq, 0, pos, row.data());
  };
  for (int p = 0; p < prior; ++p) store(0, p);
  if (prior > 0) cache.mark_filled(0, prior - 1);
  Batch batch;
  for (int i = 0, a = 0, b = 0; a < n0 || b < n1; ++i) {
    if (a < n0 && (i % 3 != 2 || b >= n1)) {
      batch.add(0, prior + a, 0, false);
      ++a;
    } else {
      batch.add(0, b, 1, false);
      ++b;
    }
  }
  // The batch's keys and values go into the cache first, as rope_and_store does.
  for (size_t t = 0; t < batch.size(); ++t) store(batch.seq[t], batch.pos[t]);
  std::vector<float> q(batch.size() * Q);
  for (float& v : q) v = 1.5f * nd(rng);
  const blocks::Attention a{1.0f / 8.0f, k.softcap, k.window};
  std::vector<float> want, got;
  blocks::attention(c, a, batch, cache, 0, q, want, blocks::AttentionPath::per_token);
  blocks::attention(c, a, batch, cache, 0, q, got, blocks::AttentionPath::tiled);
  EXPECT_EQ(want.size(), got.size());
  float worst = 0.0f;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    EXPECT_TRUE(std::isfinite(got[i])) << name(k) << " i=" << i;
    worst = std::max(worst, std::fabs(want[i] - got[i]));
  }
  return worst;
}

TEST(AttentionTiled, MatchesPerTokenPath) {
  for (KvType type : {KvType::f32, KvType::f16, KvType::q8_0})
    for (int group : {1, 4, 8})
      for (int window : {0, 37})
        for (float softcap : {0.0f, 3.0f}) {
          const Case k{type, group, window, softcap};
          // F16 rounds the softmax weights: a weight near a rounding midpoint may round the
          // other way when its score differs in the last bit, moving it by one F16 ulp (at most
          // 2^-11 below 1) times a value row (|v| < 5 here).
          const float tol = type == KvType::f16 ? 2.5e-3f : 2e-6f;
          // Prior 150 + 45 new cells wrap the window layers' ring of 37 + 64 cells.
          EXPECT_LE(max_difference(k, 150, 45, 23), tol) << name(k);
          EXPECT_LE(max_difference(k, 0, 70, 1), tol) << name(k);
          EXPECT_LE(max_difference(k, 3, 5, 17), tol) << name(k);
        }
}

// Decode-sized batches keep the per-token path unless forced: both paths are exercised above
// and `automatic` must agree with them.
TEST(AttentionTiled, AutomaticAgreesWithBothPaths) {
  ModelConfig c;
  c.n_layer = 1;
  c.n_head_kv = 4;
  c.n_head = 32;
  c.head_dim = 64;
  KvCache cache(c, 1, 256, KvType::f32, 256);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> row(c.n_embd_kv());
  Batch batch;
  for (int p = 0; p < 100; ++p) {
    for (float& v : row) v = nd(rng);
    cache.store_k(0, 0, p, row.data());
    for (float& v : row) v = nd(rng);
    cache.store_v(0, 0, p, row.data());
    batch.add(0, p, 0, false);
  }
  std::vector<float> q(batch.size() * c.n_head * c.head_dim);
  for (float& v : q) v = nd(rng);
  std::vector<float> tiled, per_token, automatic;
  blocks::attention(c, {0.125f, 0.0f, 0}, batch, cache, 0, q, tiled, blocks::AttentionPath::tiled);
  blocks::attention(c, {0.125f, 0.0f, 0}, batch, cache, 0, q, per_token, blocks::AttentionPath::per_token);
  blocks::attention(c, {0.125f, 0.0f, 0}, batch, cache, 0, q, automatic);
  EXPECT_EQ(automatic, tiled);  // 100 tokens of one sequence: tiled
  float worst = 0.0f;
  for (size_t i = 0; i < tiled.size(); ++i) worst = std::max(worst, std::fabs(tiled[i] - per_token[i]));
  EXPECT_LE(worst, 2e-6f);
}

}  // namespace
}  // namespace etna::model
