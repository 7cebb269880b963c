// KV caches stored as F16 and Q8_0: bookkeeping, encoding, and forward passes that stay close
// to the F32 cache (which the reference tests pin to llama.cpp).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

ModelConfig small_config(int n_head_kv, int head_dim) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = n_head_kv;
  c.n_head_kv = n_head_kv;
  c.head_dim = head_dim;
  return c;
}

TEST(KvType, NamesParseAndSizes) {
  EXPECT_EQ(parse_kv_type("f32"), KvType::f32);
  EXPECT_EQ(parse_kv_type("F16"), KvType::f16);
  EXPECT_EQ(parse_kv_type("q8_0"), KvType::q8_0);
  EXPECT_THROW(parse_kv_type("q4_0"), Error);
  EXPECT_THROW(parse_kv_type(""), Error);
  const ModelConfig c = small_config(2, 32);  // rows of 64 values
  EXPECT_EQ(kv_bytes_per_token(c, KvType::f32), 2u * 2 * 64 * 4);
  EXPECT_EQ(kv_bytes_per_token(c, KvType::f16), 2u * 2 * 64 * 2);
  EXPECT_EQ(kv_bytes_per_token(c, KvType::q8_0), 2u * 2 * 2 * 34);  // two 34-byte blocks per row
  EXPECT_THROW(kv_bytes_per_token(small_config(3, 16), KvType::q8_0), Error);  // 48 values: not whole blocks
  EXPECT_NO_THROW(kv_bytes_per_token(small_config(3, 16), KvType::f16));
}

TEST(KvCache, EncodedRowsRoundTrip) {
  const ModelConfig c = small_config(2, 32);
  std::vector<float> row(64);
  for (int i = 0; i < 64; ++i) row[i] = std::sin(0.37f * i) * 3.0f;
  for (KvType type : {KvType::f32, KvType::f16, KvType::q8_0}) {
    KvCache cache(c, 2, 4, type);
    EXPECT_EQ(cache.type(), type);
    EXPECT_EQ(cache.bytes(), 2 * 2 * 2 * 4 * cache.row_bytes());
    cache.store_k(0, 1, 3, row.data());
    cache.store_v(0, 1, 3, row.data());
    cache.mark_filled(0, 3);
    cache.copy(0, 1);
    std::vector<float> back(64);
    tensor::dequantize_row(kv_ggml_type(type), cache.k_row(1, 1, 3), back.data(), 64);
    const float tol = type == KvType::f32 ? 0.0f : type == KvType::f16 ? 2e-3f : 3.0f / 127;
    for (int i = 0; i < 64; ++i) EXPECT_NEAR(back[i], row[i], tol) << kv_type_name(type) << " value " << i;
    tensor::dequantize_row(kv_ggml_type(type), cache.v_row(1, 1, 3), back.data(), 64);
    EXPECT_NEAR(back[5], row[5], tol);
    if (type == KvType::f32)
      EXPECT_EQ(cache.k(1, 1, 3)[7], row[7]);
    else
      EXPECT_THROW(cache.k(0, 0, 0), Error);  // float views exist only for F32 rows
  }
  EXPECT_THROW(KvCache(small_config(3, 16), 1, 4, KvType::q8_0), Error);
}

// Logits of every prompt position with a cache of `type`.
std::vector<float> prompt_logits(const Model& m, KvType type, const std::vector<int32_t>& tokens) {
  auto cache = m.make_cache(1, 128, type);
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
  std::vector<float> logits;
  m.forward(b, *cache, logits);
  return logits;
}

// Greedy tokens after `tokens`, decoded one at a time with a cache of `type`.
std::vector<int32_t> greedy(const Model& m, KvType type, std::vector<int32_t> tokens, int n) {
  auto cache = m.make_cache(1, 256, type);
  Batch b;
  std::vector<float> logits;
  std::vector<int32_t> out;
  int pos = 0;
  for (int i = 0; i < n; ++i) {
    b.clear();
    for (int32_t t : tokens) b.add(t, pos++, 0, false);
    m.forward(b, *cache, logits);
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    tokens = {next};
  }
  return out;
}

struct Drift {
  double max_abs = 0;     // largest |logit - F32 logit|
  double logit_range = 0; // spread of the F32 logits, for scale
  int top1_changes = 0;   // positions whose argmax differs from F32's
};

Drift drift(const std::vector<float>& ref, const std::vector<float>& got, int n_vocab) {
  Drift d;
  const auto [lo, hi] = std::minmax_element(ref.begin(), ref.end());
  d.logit_range = *hi - *lo;
  for (size_t i = 0; i < ref.size(); ++i) d.max_abs = std::max(d.max_abs, static_cast<double>(std::fabs(ref[i] - got[i])));
  for (size_t p = 0; p < ref.size() / n_vocab; ++p) {
    auto a = ref.begin() + static_cast<std::ptrdiff_t>(p * n_vocab), b = got.begin() + static_cast<std::ptrdiff_t>(p * n_vocab);
    if (std::max_element(a, a + n_vocab) - a != std::max_element(b, b + n_vocab) - b) ++d.top1_changes;
  }
  return d;
}

class KvCacheTypes : public ::testing::TestWithParam<std::string> {};

TEST_P(KvCacheTypes, StayCloseToF32) {
  ETNA_REQUIRE_SHARED(path, "models/" + GetParam() + ".gguf");
  auto m = Model::load(path.string());
  const int n_vocab = m->config().n_vocab;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 48; ++i) tokens.push_back(1 + (i * 37 + 11) % std::min(n_vocab - 1, 500));
  const auto ref = prompt_logits(*m, KvType::f32, tokens);
  // Relative to the spread of the logits: F16 rounding is ~5e-4 relative, Q8_0 ~4e-3.
  for (auto [type, rel] : {std::pair{KvType::f16, 0.01}, std::pair{KvType::q8_0, 0.05}}) {
    const Drift d = drift(ref, prompt_logits(*m, type, tokens), n_vocab);
    std::printf("%s %s: max |dlogit| %.5f (logit range %.2f), top-1 changes %d/48\n", GetParam().c_str(),
                kv_type_name(type), d.max_abs, d.logit_range, d.top1_changes);
    EXPECT_GT(d.max_abs, 0.0) << "a lossy cache that changes nothing is not being used";
    EXPECT_LT(d.max_abs, rel * d.logit_range) << kv_type_name(type);
    EXPECT_LE(d.top1_changes, type == KvType::f16 ? 1 : 4) << kv_type_name(type);
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, KvCacheTypes,
                         ::testing::Values("stories260K", "tiny-llama-spm-q8_0", "tiny-llama-kq-q4_k_m"));

TEST(KvCacheTypesStory, GreedyStoryUnchangedByF16) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = Model::load(path.string());
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};  // BOS "Once upon a time"
  const auto ref = greedy(*m, KvType::f32, prompt, 40);
  EXPECT_EQ(greedy(*m, KvType::f16, prompt, 40), ref);
  // Q8_0 may drift late in the story; its first tokens must agree.
  const auto q8 = greedy(*m, KvType::q8_0, prompt, 40);
  EXPECT_TRUE(std::equal(ref.begin(), ref.begin() + 10, q8.begin()));
}

}  // namespace
}  // namespace etna::model
