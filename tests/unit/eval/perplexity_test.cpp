// Perplexity and KL divergence: the peer's figure on stories260K, KL of a model against itself,
// a quantisation against its F32 source, and the errors a user can meet.
#include "etna/eval/perplexity.h"

#include <cmath>
#include <cstdio>
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
const char* kGpl3 = "/usr/share/common-licenses/GPL-3";

// ../shared/next/eval/README.md: llama-perplexity -c 128 -b 128 on Debian's GPL-3 text gives
// 173 chunks and "PPL = 105.3193 +/- 3.53021". llama-perplexity keeps its K/V cache in F16 by
// default, so the comparison runs with --cache-type f16. With an F16 cache the last digits depend on
// the summation order of the matrix products before each F16 rounding (Etna's own kernel sets give
// 105.3186 with the scalar set, 105.3189 with AVX2 and AVX-512): the bar is 1.5e-5 relative, five
// times tighter than the gap between the F32 and F16 caches (105.3222 vs 105.318x), so the test does
// tell the two methods apart.
// Why not the printed digits: a scratch op-by-op emulation of GGML's x86 CPU arithmetic for this
// model (tinyBLAS one-vector-per-output sums where k is a multiple of the width, ggml_vec_dot_f32
// for ffn_down's k = 172, GGML's vectorised exp in soft_max and SiLU, the F16 rounding of q and of
// the softmax weights, at AVX2 and AVX-512 widths, with and without FMA contraction) gives
// 105.3182 to 105.3192 over 16 variants; the same emulation with an F32 cache does not reproduce
// ../shared/reference's stories260K logits bit for bit even at position 0 (1-3 ulp differences),
// so the peer's exact order of operations is not known and the last digit is rounding noise.
// (Leaving P in F32 gives 105.3202, leaving q in F32 105.3217: both roundings are the peer's.)
TEST(Perplexity, ReproducesThePeerOnStories260K) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  if (!std::filesystem::exists(kGpl3)) GTEST_SKIP() << "skipped: " << kGpl3 << " not found";
  test::TempDir dir;
  std::string out;
  const std::string cmd = test::etna_binary().string() + " eval perplexity -m " + model.string() + " -f " + kGpl3 +
                          " -c 128 -b 128 --cache-type f16 --data " + dir.path().string();
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  EXPECT_NE(out.find("173 chunks of 128 tokens, 10899 tokens scored"), std::string::npos) << out;
  double ppl = 0, err = 0;
  ASSERT_EQ(std::sscanf(out.c_str(), "PPL = %lf +/- %lf", &ppl, &err), 2) << out;
  std::printf("etna: PPL = %.4f +/- %.5f (peer: 105.3193 +/- 3.53021)\n", ppl, err);
  EXPECT_NEAR(ppl, 105.3193, 105.3193 * 1.5e-5) << out;
  EXPECT_NEAR(err, 3.53021, 3.53021 * 1.5e-5) << out;
  // The result went into the leaderboard.
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " eval list --json --data " + dir.path().string(), &out), 0);
  json rows = json::parse(out);
  ASSERT_EQ(rows.size(), 1u) << out;
  EXPECT_EQ(rows[0]["metric"], "ppl");
  EXPECT_NEAR(rows[0]["value"].get<double>(), ppl, 5e-5);
  EXPECT_EQ(rows[0]["model"], "stories260K");
  EXPECT_EQ(rows[0]["settings"]["ctx"], 128);
  EXPECT_EQ(rows[0]["settings"]["cache_type"], "f16");
}

// The library call agrees with an independent computation of the method on a short run.
TEST(Perplexity, ScoresTheSecondHalfOfEachChunkFromAFreshContext) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto model = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  const std::string text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                           "One day, she saw a big red ball under a tree. She ran to get it and laughed.";
  std::vector<int32_t> tokens = perplexity_tokens(*tok, text);
  ASSERT_GE(tokens.size(), 32u);
  PerplexityOptions opt;
  opt.n_ctx = 16;
  opt.n_batch = 5;  // several forward passes per chunk
  int chunks_seen = 0;
  const PerplexityResult r = perplexity(*model, tokens, tok->vocab().bos, opt,
                                        [&](const ChunkScore& c, int) { EXPECT_EQ(c.index, chunks_seen++); });
  const int n_chunks = static_cast<int>(tokens.size()) / 16;
  EXPECT_EQ(r.n_chunks, n_chunks);
  EXPECT_EQ(chunks_seen, n_chunks);
  EXPECT_EQ(r.nll.count, n_chunks * 7);  // positions 8..14 of each chunk predict tokens 9..15

  double nll = 0;
  int count = 0;
  const int n_vocab = model->config().n_vocab;
  for (int c = 0; c < n_chunks; ++c) {
    auto cache = model->make_cache(1, 16);
    model::Batch b;
    for (int i = 0; i < 16; ++i) b.add(i == 0 ? tok->vocab().bos : tokens[c * 16 + i], i, 0, true);
    std::vector<float> logits;
    model->forward(b, *cache, logits);
    for (int i = 8; i < 15; ++i) {
      const float* row = &logits[static_cast<size_t>(i) * n_vocab];
      double mx = row[0], sum = 0;
      for (int v = 0; v < n_vocab; ++v) mx = std::max<double>(mx, row[v]);
      for (int v = 0; v < n_vocab; ++v) sum += std::exp(row[v] - mx);
      nll += -(row[tokens[c * 16 + i + 1]] - mx - std::log(sum));
      ++count;
    }
  }
  EXPECT_NEAR(r.ppl(), std::exp(nll / count), 1e-4 * r.ppl());
  EXPECT_GT(r.ppl_stderr(), 0);
}

TEST(Perplexity, ATooShortTextIsAClearError) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto model = model::Model::load(path.string());
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  PerplexityOptions opt;
  opt.n_ctx = 128;
  try {
    perplexity(*model, perplexity_tokens(*tok, "Too short."), tok->vocab().bos, opt);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs at least 256"), std::string::npos) << e.what();
  }
}

// Runs `etna eval perplexity` with --json and returns the parsed result.
json run_json(const std::string& args, int* status = nullptr) {
  std::string out;
  const int rc = test::run_command(test::etna_binary().string() + " eval perplexity --json --no-save " + args, &out, status != nullptr);
  if (status) *status = rc;
  else EXPECT_EQ(rc, 0) << out;
  json j = json::parse(out, nullptr, false);
  if (status && j.is_discarded()) return json{{"output", out}};
  return j;
}

TEST(KlDivergence, AModelAgainstItselfIsZeroWithFullAgreement) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  if (!std::filesystem::exists(kGpl3)) GTEST_SKIP() << "skipped: " << kGpl3 << " not found";
  test::TempDir dir;
  const std::string base = (dir / "base.kl").string();
  const std::string args = "-m " + model.string() + " -f " + kGpl3 + " -c 128 --chunks 20 --kl-base " + base;
  json first = run_json(args);
  ASSERT_TRUE(std::filesystem::exists(base));
  EXPECT_FALSE(first.contains("kl"));
  json again = run_json(args);
  ASSERT_TRUE(again.contains("kl")) << again.dump();
  EXPECT_EQ(again["kl"]["positions"], 20 * 63);
  EXPECT_EQ(again["kl"]["mean_kl"].get<double>(), 0.0);
  EXPECT_EQ(again["kl"]["max_kl"].get<double>(), 0.0);
  EXPECT_EQ(again["kl"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_NEAR(again["kl"]["delta_ppl"].get<double>(), 0.0, 1e-9);
  EXPECT_NEAR(again["kl"]["base_ppl"].get<double>(), first["ppl"].get<double>(), 1e-3);
}

TEST(KlDivergence, Q4_0AgainstItsF32SourceIsSmallAndPositive) {
  ETNA_REQUIRE_SHARED(f32, "models/tiny-llama-spm-f32.gguf");
  ETNA_REQUIRE_SHARED(q4, "models/tiny-llama-spm-q4_0.gguf");
  if (!std::filesystem::exists(kGpl3)) GTEST_SKIP() << "skipped: " << kGpl3 << " not found";
  test::TempDir dir;
  const std::string base = (dir / "f32.kl").string();
  const std::string common = std::string(" -f ") + kGpl3 + " -c 64 --chunks 4 --kl-base " + base;
  run_json("-m " + f32.string() + common);
  json q = run_json("-m " + q4.string() + common);
  ASSERT_TRUE(q.contains("kl")) << q.dump();
  const double kl = q["kl"]["mean_kl"].get<double>();
  EXPECT_GT(kl, 0.0);
  EXPECT_TRUE(std::isfinite(kl));
  EXPECT_GT(q["kl"]["top1_agreement"].get<double>(), 0.0);
  EXPECT_LE(q["kl"]["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(q["kl"]["positions"], 4 * 31);
  std::printf("tiny-llama-spm-q4_0 vs f32: mean KL %.6f, top-1 %.3f, delta PPL %.4f\n", kl,
              q["kl"]["top1_agreement"].get<double>(), q["kl"]["delta_ppl"].get<double>());
}

TEST(KlDivergence, ABaseFromAnotherModelOrTextIsRefused) {
  ETNA_REQUIRE_SHARED(stories, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(f32, "models/tiny-llama-spm-f32.gguf");
  if (!std::filesystem::exists(kGpl3)) GTEST_SKIP() << "skipped: " << kGpl3 << " not found";
  test::TempDir dir;
  const std::string base = (dir / "b.kl").string();
  run_json("-m " + stories.string() + " -f " + kGpl3 + " -c 64 --chunks 2 --kl-base " + base);
  int status = 0;
  json j = run_json("-m " + f32.string() + " -f " + kGpl3 + " -c 64 --chunks 2 --kl-base " + base, &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(j.dump().find("vocabulary"), std::string::npos) << j.dump();
  j = run_json("-m " + stories.string() + " -f " + kGpl3 + " -c 32 --chunks 2 --kl-base " + base, &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(j.dump().find("-c 64"), std::string::npos) << j.dump();
  std::ofstream(dir / "junk.kl") << "not a base";
  j = run_json("-m " + stories.string() + " -f " + kGpl3 + " -c 64 --kl-base " + (dir / "junk.kl").string(), &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(j.dump().find("not a KL base file"), std::string::npos) << j.dump();
}

}  // namespace
}  // namespace etna::eval
