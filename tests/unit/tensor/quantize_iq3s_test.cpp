// The IQ3_S file encoder (quantize_iq3s.cpp) on its own: what it writes decodes close to its
// input, blocks and groups stay in place whatever their neighbours hold, and degenerate inputs
// give well-formed blocks. (Byte identity with the peer is tests/unit/hub/quantize_test.cpp.)
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/quantize.h"
#include "etna/tensor/tensor.h"

namespace etna::tensor {
namespace {

std::vector<float> roundtrip(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> q(gguf::ggml_row_bytes(type, x.size()));
  quantize_for_file(type, x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(type, q.data(), y.data(), static_cast<int64_t>(x.size()));
  return y;
}

double rms_error(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (x[i] - y[i]) * (x[i] - y[i]);
    s += x[i] * x[i];
  }
  return std::sqrt(e / s);
}

std::vector<float> gaussian(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

TEST(QuantizeIQ3S, DecodesCloseToItsInput) {
  const auto x = gaussian(256 * 64, 7);
  const double iq3 = rms_error(x, roundtrip(GgmlType::IQ3_S, x));
  const double q3k = rms_error(x, roundtrip(GgmlType::Q3_K, x));
  const double q4k = rms_error(x, roundtrip(GgmlType::Q4_K, x));
  // 3.44 bits per weight: between the 3.4-bit Q3_K and the 4.5-bit Q4_K's error, or near them.
  EXPECT_LT(iq3, 0.2);
  EXPECT_LT(iq3, 1.15 * q3k) << "Q3_K " << q3k;
  EXPECT_GT(iq3, q4k) << "Q4_K " << q4k;
}

TEST(QuantizeIQ3S, SignsAndScaleFollowTheInput) {
  auto x = gaussian(256, 3);
  const auto y = roundtrip(GgmlType::IQ3_S, x);
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(x[i]) > 0.02f) {
      EXPECT_EQ(x[i] > 0, y[i] > 0) << i;
    }
  }
  for (auto& v : x) v *= -1000.0f;  // the encoding scales and mirrors with its input
  const auto z = roundtrip(GgmlType::IQ3_S, x);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(z[i], -1000.0f * y[i], 2e-3f * std::fabs(1000.0f * y[i]) + 1e-6f);
}

// A group of zeros leaves the other groups where they belong (the reference encoder shifts
// the later groups' bytes into such a group's place) and decodes to the format's smallest
// magnitude, d * 1 * 1: IQ3_S has no zero level.
TEST(QuantizeIQ3S, ZeroGroupsStayInPlace) {
  auto x = gaussian(512, 11);
  for (int i = 64; i < 96; ++i) x[i] = 0.0f;  // group 2 of block 0
  const auto y = roundtrip(GgmlType::IQ3_S, x);
  float amax = 0;
  for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[i]));
  for (int i = 64; i < 96; ++i) EXPECT_LE(std::fabs(y[i]), 1.04f * amax / 31) << i;
  std::vector<float> rest(x.begin() + 96, x.begin() + 256), rest_y(y.begin() + 96, y.begin() + 256);
  EXPECT_LT(rms_error(rest, rest_y), 0.2);

  const std::vector<float> zeros(256, 0.0f);
  std::vector<uint8_t> q(sizeof(BlockIQ3_S), 0xAB);
  quantize_for_file(GgmlType::IQ3_S, zeros.data(), q.data(), 256);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(q[i], 0) << i;
}

TEST(QuantizeIQ3S, RefusesPartialBlocks) {
  std::vector<float> x(128, 1.0f);
  std::vector<uint8_t> q(sizeof(BlockIQ3_S));
  EXPECT_THROW(quantize_for_file(GgmlType::IQ3_S, x.data(), q.data(), 128), Error);
  EXPECT_TRUE(can_quantize_for_file(GgmlType::IQ3_S));
}

}  // namespace
}  // namespace etna::tensor
