// Distance kernels: every variant this CPU runs (scalar, AVX2, AVX-512 and its VNNI / VPOPCNTDQ
// forms) against plain double-precision loops and against the scalar set, for float vectors,
// 7-bit codes and bit strings, on lengths that hit every tail path (1, 3, not multiples of the
// vector width, 767...) and on unaligned pointers. A variant the CPU lacks is skipped, saying so.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "etna/store/distance.h"

namespace etna::store::detail {
namespace {

const std::vector<size_t> kLengths = {0,  1,  2,  3,  5,  7,  8,  9,  15,  16,  17,  31,  32,  33,   47,   63,  64,
                                      65, 96, 100, 127, 128, 129, 255, 256, 300, 384, 767, 768, 769, 1023, 1536, 4099};

class StoreKernelVariant : public ::testing::TestWithParam<std::string> {
 protected:
  const Kernels* k_ = nullptr;
  void SetUp() override {
    k_ = kernel_variant(GetParam());
    if (!k_) GTEST_SKIP() << "kernel variant " << GetParam() << " is not available on this CPU (skipped)";
  }
};

TEST_P(StoreKernelVariant, FloatKernelsMatchPlainLoopsAndScalar) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  const Kernels* s = kernel_variant("scalar");
  for (size_t n : kLengths) {
    for (size_t offset : {0u, 1u, 3u}) {  // unaligned starts
      std::vector<float> av(n + offset), bv(n + offset);
      for (auto& x : av) x = g(rng);
      for (auto& x : bv) x = g(rng) * 3.0f;
      const float *a = av.data() + offset, *b = bv.data() + offset;
      double dot = 0, l2 = 0, l1 = 0, mag = 0;
      for (size_t i = 0; i < n; ++i) {
        dot += double(a[i]) * b[i];
        mag += std::fabs(double(a[i]) * b[i]);
        l2 += double(a[i] - b[i]) * (a[i] - b[i]);
        l1 += std::fabs(double(a[i]) - b[i]);
      }
      const double tol = 1e-5 * double(n + 1);
      EXPECT_NEAR(k_->dot(a, b, n), dot, tol * (1 + mag)) << k_->name << " n=" << n;
      EXPECT_NEAR(k_->l2sq(a, b, n), l2, tol * (1 + l2)) << k_->name << " n=" << n;
      EXPECT_NEAR(k_->l1(a, b, n), l1, tol * (1 + l1)) << k_->name << " n=" << n;
      EXPECT_NEAR(k_->dot(a, b, n), s->dot(a, b, n), tol * (1 + mag)) << k_->name << " n=" << n;
      EXPECT_NEAR(k_->l2sq(a, b, n), s->l2sq(a, b, n), tol * (1 + l2)) << k_->name << " n=" << n;
    }
  }
  // Identical vectors: L2 and L1 exactly zero.
  std::vector<float> v(767);
  for (auto& x : v) x = g(rng);
  EXPECT_EQ(k_->l2sq(v.data(), v.data(), v.size()), 0.0f);
  EXPECT_EQ(k_->l1(v.data(), v.data(), v.size()), 0.0f);
}

TEST_P(StoreKernelVariant, CodeKernelsAreExactOnSevenBitCodes) {
  std::mt19937 rng(11);
  const Kernels* s = kernel_variant("scalar");
  for (size_t n : kLengths) {
    for (int pattern = 0; pattern < 3; ++pattern) {
      std::vector<uint8_t> av(n + 1), bv(n + 1);
      for (size_t i = 0; i <= n; ++i) {
        // 1: codes at the ends of the range (largest products and differences); 2: all 127.
        av[i] = pattern == 0 ? uint8_t(rng() % 128) : pattern == 1 ? uint8_t(i % 2 ? 127 : 0) : 127;
        bv[i] = pattern == 0 ? uint8_t(rng() % 128) : pattern == 1 ? uint8_t(i % 3 ? 0 : 127) : 127;
      }
      const uint8_t *a = av.data() + 1, *b = bv.data() + 1;  // odd address
      int64_t dot = 0, l2 = 0, l1 = 0;
      for (size_t i = 0; i < n; ++i) {
        int64_t d = int64_t(a[i]) - b[i];
        dot += int64_t(a[i]) * b[i];
        l2 += d * d;
        l1 += std::llabs(d);
      }
      EXPECT_EQ(k_->dot_u8(a, b, n), dot) << k_->name << " n=" << n << " pattern " << pattern;
      EXPECT_EQ(k_->l2sq_u8(a, b, n), l2) << k_->name << " n=" << n << " pattern " << pattern;
      EXPECT_EQ(k_->l1_u8(a, b, n), l1) << k_->name << " n=" << n << " pattern " << pattern;
      EXPECT_EQ(k_->dot_u8(a, b, n), s->dot_u8(a, b, n));
    }
  }
}

TEST_P(StoreKernelVariant, HammingCountsDifferingBits) {
  std::mt19937_64 rng(13);
  const Kernels* s = kernel_variant("scalar");
  for (size_t words : {0u, 1u, 2u, 3u, 4u, 5u, 7u, 8u, 9u, 12u, 15u, 16u, 17u, 24u, 33u, 64u, 65u}) {
    std::vector<uint64_t> av(words + 1), bv(words + 1);
    for (auto& x : av) x = rng();
    for (auto& x : bv) x = rng();
    const uint64_t *a = av.data() + 1, *b = bv.data() + 1;  // 8-byte, not 64-byte, aligned
    uint32_t want = 0;
    for (size_t i = 0; i < words; ++i)
      for (int bit = 0; bit < 64; ++bit) want += ((a[i] ^ b[i]) >> bit) & 1;
    EXPECT_EQ(k_->hamming(a, b, words), want) << k_->name << " words=" << words;
    EXPECT_EQ(k_->hamming(a, a, words), 0u) << k_->name << " words=" << words;
    EXPECT_EQ(k_->hamming(a, b, words), s->hamming(a, b, words));
    // Complements differ in every bit.
    std::vector<uint64_t> c(a, a + words);
    for (auto& x : c) x = ~x;
    EXPECT_EQ(k_->hamming(a, c.data(), words), uint32_t(64 * words)) << k_->name << " words=" << words;
  }
}

INSTANTIATE_TEST_SUITE_P(All, StoreKernelVariant, ::testing::ValuesIn(kernel_variant_names()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '+') c = '_';
                           return n;
                         });

// The active set is the one ETNA_KERNELS names (CTest runs this suite once per set), else the
// best variant this CPU has.
TEST(StoreDistance, ActiveSetHonoursEtnaKernels) {
  const std::string active = kernels().name;
  const char* env = std::getenv("ETNA_KERNELS");
  if (env && *env) {
    EXPECT_EQ(active.rfind(env, 0), 0u) << "ETNA_KERNELS=" << env << " but the store runs " << active;
    return;
  }
  std::string best;
  for (const auto& n : kernel_variant_names())
    if (kernel_variant(n)) best = n;
  EXPECT_EQ(active, best);
}

}  // namespace
}  // namespace etna::store::detail
