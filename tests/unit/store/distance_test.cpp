// Distance kernels: the run-time selected set (AVX2 when present) against plain loops, for float
// vectors and for 7-bit codes, on lengths that exercise every tail path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <vector>

#include "etna/store/distance.h"

namespace etna::store::detail {
namespace {

TEST(StoreDistance, FloatKernelsMatchPlainLoops) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  const Kernels& k = kernels();
  for (size_t n : {1u, 7u, 8u, 15u, 16u, 17u, 33u, 128u, 130u, 768u}) {
    std::vector<float> a(n), b(n);
    for (auto& x : a) x = g(rng);
    for (auto& x : b) x = g(rng);
    double dot = 0, l2 = 0, l1 = 0;
    for (size_t i = 0; i < n; ++i) {
      dot += double(a[i]) * b[i];
      l2 += double(a[i] - b[i]) * (a[i] - b[i]);
      l1 += std::fabs(double(a[i]) - b[i]);
    }
    EXPECT_NEAR(k.dot(a.data(), b.data(), n), dot, 1e-4 * (1 + std::fabs(dot))) << k.name << " n=" << n;
    EXPECT_NEAR(k.l2sq(a.data(), b.data(), n), l2, 1e-4 * (1 + l2)) << k.name << " n=" << n;
    EXPECT_NEAR(k.l1(a.data(), b.data(), n), l1, 1e-4 * (1 + l1)) << k.name << " n=" << n;
  }
}

TEST(StoreDistance, CodeKernelsAreExactOnSevenBitCodes) {
  std::mt19937 rng(11);
  const Kernels& k = kernels();
  for (size_t n : {1u, 31u, 32u, 33u, 63u, 64u, 65u, 128u, 200u, 768u, 1536u}) {
    for (int extreme = 0; extreme < 2; ++extreme) {
      std::vector<uint8_t> a(n), b(n);
      for (size_t i = 0; i < n; ++i) {
        // extreme: codes at the ends of the range (largest products and differences).
        a[i] = extreme ? uint8_t(i % 2 ? 127 : 0) : uint8_t(rng() % 128);
        b[i] = extreme ? uint8_t(i % 3 ? 0 : 127) : uint8_t(rng() % 128);
      }
      int64_t dot = 0, l2 = 0, l1 = 0;
      for (size_t i = 0; i < n; ++i) {
        int64_t d = int64_t(a[i]) - b[i];
        dot += int64_t(a[i]) * b[i];
        l2 += d * d;
        l1 += std::llabs(d);
      }
      EXPECT_EQ(k.dot_u8(a.data(), b.data(), n), dot) << k.name << " n=" << n;
      EXPECT_EQ(k.l2sq_u8(a.data(), b.data(), n), l2) << k.name << " n=" << n;
      EXPECT_EQ(k.l1_u8(a.data(), b.data(), n), l1) << k.name << " n=" << n;
    }
  }
  // Same codes in both: all 127 (the maximum product per pair of bytes).
  std::vector<uint8_t> m(96, 127);
  EXPECT_EQ(k.dot_u8(m.data(), m.data(), m.size()), 96 * 127 * 127);
}

}  // namespace
}  // namespace etna::store::detail
