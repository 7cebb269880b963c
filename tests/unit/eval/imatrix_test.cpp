// `etna imatrix`'s collection (eval/imatrix.cpp) against an independent computation: the input
// of layer 0's attention is the RMS-normed token embedding, which the test computes from the
// file itself; the other matrices are checked for the sharing and counts the method implies.
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/eval/imatrix.h"
#include "etna/eval/perplexity.h"
#include "etna/gguf/gguf_file.h"
#include "etna/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace etna::eval {
namespace {

namespace fs = std::filesystem;

std::vector<float> floats(const gguf::TensorInfo& t) {
  EXPECT_EQ(t.type, gguf::GgmlType::F32) << t.name;
  std::vector<float> v(t.n_elements);
  std::memcpy(v.data(), t.data, 4 * v.size());
  return v;
}

fs::path write_text(const fs::path& dir) {
  const fs::path p = dir / "calibration.txt";
  std::ofstream f(p);
  for (int i = 0; i < 40; ++i)
    f << "Once upon a time, there was a little girl named Lily. She loved to play outside in the park " << i << ". ";
  return p;
}

TEST(Imatrix, MatchesAnIndependentComputationOfTheFirstLayersInput) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-llama-kq-f32.gguf");
  test::TempDir dir;
  const fs::path text = write_text(dir.path());
  ImatrixOptions o;
  o.n_ctx = 64;
  o.max_chunks = 3;
  const auto s = compute_imatrix(model.string(), text.string(), (dir / "im.gguf").string(), o);
  EXPECT_EQ(s.chunks, 3);
  EXPECT_EQ(s.entries, 14u);  // 7 matrices in each of 2 layers; no embedding, no output matrix
  EXPECT_TRUE(std::isfinite(s.ppl) && s.ppl > 1);

  auto im = gguf::GgufFile::open((dir / "im.gguf").string());
  EXPECT_EQ(im->get_string("general.type"), "imatrix");
  EXPECT_EQ(im->get_uint("imatrix.chunk_count"), 3u);
  EXPECT_EQ(im->get_uint("imatrix.chunk_size"), 64u);
  EXPECT_EQ(im->get_string_array("imatrix.datasets"), std::vector<std::string>{text.string()});
  EXPECT_EQ(im->find_tensor("output.weight.in_sum2"), nullptr);
  for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"})
    for (int l = 0; l < 2; ++l) {
      const std::string n = "blk." + std::to_string(l) + "." + m + ".weight";
      const auto* c = im->find_tensor(n + ".counts");
      ASSERT_NE(c, nullptr) << n;
      EXPECT_EQ(c->dims, (std::vector<uint64_t>{1, 1})) << n;
      EXPECT_EQ(floats(*c)[0], 3.0f * 64) << n;
    }
  // q, k and v read the same normed input; so do gate and up.
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(floats(*im->find_tensor(p + "attn_q.weight.in_sum2")), floats(*im->find_tensor(p + "attn_v.weight.in_sum2")));
    EXPECT_EQ(floats(*im->find_tensor(p + "ffn_gate.weight.in_sum2")), floats(*im->find_tensor(p + "ffn_up.weight.in_sum2")));
  }

  // Layer 0's attention input, from the file: each chunk's tokens (first one BOS), embedding
  // rows RMS-normed and scaled by attn_norm.
  auto g = gguf::GgufFile::open(model.string());
  auto tok = tokenizer::Tokenizer::from_gguf(*g);
  std::ifstream in(text);
  const std::string body((std::istreambuf_iterator<char>(in)), {});
  const auto tokens = perplexity_tokens(*tok, body);
  const auto embd = floats(*g->find_tensor("token_embd.weight"));
  const auto norm = floats(*g->find_tensor("blk.0.attn_norm.weight"));
  const double eps = *g->get_float("llama.attention.layer_norm_rms_epsilon");
  const size_t E = norm.size();
  std::vector<double> want(E, 0.0);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 64; ++i) {
      const int32_t t = i == 0 ? tok->vocab().bos : tokens[c * 64 + i];
      const float* x = &embd[static_cast<size_t>(t) * E];
      double ss = 0;
      for (size_t j = 0; j < E; ++j) ss += static_cast<double>(x[j]) * x[j];
      const double scale = 1.0 / std::sqrt(ss / static_cast<double>(E) + eps);
      for (size_t j = 0; j < E; ++j) want[j] += std::pow(x[j] * scale * norm[j], 2);
    }
  const auto got = floats(*im->find_tensor("blk.0.attn_q.weight.in_sum2"));
  ASSERT_EQ(got.size(), E);
  double max_rel = 0;
  for (size_t j = 0; j < E; ++j) max_rel = std::max(max_rel, std::fabs(got[j] - want[j]) / want[j]);
  EXPECT_LT(max_rel, 1e-4);
  std::printf("imatrix: layer-0 attention input sums agree to %.2e (relative)\n", max_rel);
}

// Experts: each stacked matrix has one row of sums and one count per expert; the counts are
// the tokens routed to each expert (every token goes to expert_used_count of them).
TEST(Imatrix, CountsTheTokensRoutedToEachExpert) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-mixtral-moe-f32.gguf");
  test::TempDir dir;
  ImatrixOptions o;
  o.n_ctx = 32;
  o.max_chunks = 2;
  compute_imatrix(model.string(), write_text(dir.path()).string(), (dir / "im.gguf").string(), o);
  auto im = gguf::GgufFile::open((dir / "im.gguf").string());
  for (const char* m : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
    const std::string n = std::string("blk.1.") + m + ".weight";
    const auto* c = im->find_tensor(n + ".counts");
    ASSERT_NE(c, nullptr) << n;
    EXPECT_EQ(c->dims, (std::vector<uint64_t>{1, 4})) << n;
    float total = 0;
    for (float v : floats(*c)) total += v;
    EXPECT_EQ(total, 2.0f * 32 * 2) << n;  // 2 chunks of 32 tokens, 2 experts each
    EXPECT_EQ(im->find_tensor(n + ".in_sum2")->dims[1], 4u) << n;
  }
  EXPECT_EQ(floats(*im->find_tensor("blk.0.ffn_gate_inp.weight.counts"))[0], 64.0f);
}

TEST(Imatrix, RefusesATooShortText) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-llama-kq-f32.gguf");
  test::TempDir dir;
  ImatrixOptions o;
  o.n_ctx = 4096;
  EXPECT_THROW(compute_imatrix(model.string(), write_text(dir.path()).string(), (dir / "im.gguf").string(), o), Error);
  EXPECT_FALSE(fs::exists(dir / "im.gguf"));
}

}  // namespace
}  // namespace etna::eval
