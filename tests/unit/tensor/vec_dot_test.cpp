// Quantisation rounding and error bounds, vec_dot against a double-precision dot of the
// decoded operands for every weight type, matmul shapes, and error handling.
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"
#include "unit/tensor/tensor_test_util.h"

namespace etna::tensor {
namespace {

using namespace testing;

// ---- quantisation ----

std::vector<uint8_t> quantize(GgmlType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

std::vector<float> dequantize(GgmlType t, const std::vector<uint8_t>& b, size_t n) {
  std::vector<float> out(n);
  dequantize_row(t, b.data(), out.data(), static_cast<int64_t>(n));
  return out;
}

TEST(Quantize, Q8_0RoundsHalfAwayFromZero) {
  // amax 127 gives d = 1 exactly, so q = roundf(x).
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.49f;
  x[4] = -126.6f;
  auto b = quantize(GgmlType::Q8_0, x);
  ASSERT_EQ(b.size(), 34u);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3C00);  // d = 1.0 in fp16
  EXPECT_EQ(static_cast<int8_t>(b[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(b[3]), 3);
  EXPECT_EQ(static_cast<int8_t>(b[4]), -3);
  EXPECT_EQ(static_cast<int8_t>(b[5]), 0);
  EXPECT_EQ(static_cast<int8_t>(b[6]), -127);
}

TEST(Quantize, Q8_1StoresScaledSum) {
  std::vector<float> x(32, 0.0f);
  x[0] = -127.0f;
  x[7] = 10.2f;
  x[31] = 5.0f;
  auto b = quantize(GgmlType::Q8_1, x);
  ASSERT_EQ(b.size(), 36u);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3C00);
  EXPECT_FLOAT_EQ(fp16_to_fp32(static_cast<uint16_t>(b[2] | (b[3] << 8))), -127.0f + 10.0f + 5.0f);
  EXPECT_EQ(static_cast<int8_t>(b[4 + 7]), 10);
}

TEST(Quantize, Q8_KRoundsHalfToEvenAndSumsGroups) {
  // max = -127 gives iscale = 1, so q = nearest-even(x) and d = -1... scaled back: d = 1/iscale.
  std::vector<float> x(256, 0.0f);
  x[0] = -127.0f;
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -1.5f;
  x[4] = 0.5f;
  x[200] = 100.0f;
  auto b = quantize(GgmlType::Q8_K, x);
  ASSERT_EQ(b.size(), 292u);
  float d;
  std::memcpy(&d, b.data(), 4);
  EXPECT_EQ(d, 1.0f);
  const auto q = [&](int i) { return static_cast<int8_t>(b[4 + i]); };
  EXPECT_EQ(q(0), -127);
  EXPECT_EQ(q(1), 2);
  EXPECT_EQ(q(2), 4);
  EXPECT_EQ(q(3), -2);
  EXPECT_EQ(q(4), 0);
  EXPECT_EQ(q(200), 100);
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += q(16 * g + l);
    const int16_t stored = static_cast<int16_t>(b[260 + 2 * g] | (b[261 + 2 * g] << 8));
    EXPECT_EQ(stored, sum) << "group " << g;
  }
  // A positive extreme maps to -127 with a negative d.
  std::vector<float> y(256, 1.0f);
  y[9] = 254.0f;
  auto c = quantize(GgmlType::Q8_K, y);
  EXPECT_EQ(static_cast<int8_t>(c[4 + 9]), -127);
  EXPECT_EQ(static_cast<int8_t>(c[4 + 0]), 0);  // 1.0 * (-127/254) = -0.5 rounds to even 0
  auto back = dequantize(GgmlType::Q8_K, c, 256);
  EXPECT_FLOAT_EQ(back[9], 254.0f);
}

TEST(Quantize, Q4_0UsesSignedExtreme) {
  // The first value of largest magnitude maps to -8 exactly; d = max / -8.
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;
  x[1] = 3.2f;   // (int)(3.2 + 8.5) = 11 -> 3
  x[2] = 8.0f;   // 16 clamps to 15 -> 7
  x[17] = -3.6f;  // (int)(-3.6 + 8.5) = 4 -> -4
  auto back = dequantize(GgmlType::Q4_0, quantize(GgmlType::Q4_0, x), 32);
  EXPECT_EQ(back[0], -8.0f);
  EXPECT_EQ(back[1], 3.0f);
  EXPECT_EQ(back[2], 7.0f);
  EXPECT_EQ(back[17], -4.0f);
  EXPECT_EQ(back[5], 0.0f);
  // A positive extreme gives a negative d and still round-trips.
  x[0] = 8.0f;
  x[2] = -8.0f;
  back = dequantize(GgmlType::Q4_0, quantize(GgmlType::Q4_0, x), 32);
  EXPECT_EQ(back[0], 8.0f);
  EXPECT_EQ(back[2], -7.0f);
}

TEST(Quantize, AllZeroBlocksStayZero) {
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1,
                     GgmlType::Q8_K}) {
    std::vector<float> x(256, 0.0f);
    auto back = dequantize(t, quantize(t, x), 256);
    for (float v : back) ASSERT_EQ(v, 0.0f) << gguf::ggml_type_name(t);
  }
}

// Round trip error per block: at most `steps` quantisation steps plus fp16 scale rounding.
struct ErrorCase {
  GgmlType type;
  int block;
  double steps_per_range;  // the step is (block range) / this
  double max_steps;        // allowed error in steps
};

TEST(Quantize, RoundTripErrorBounds) {
  const ErrorCase cases[] = {
      {GgmlType::Q8_0, 32, 254, 0.5},  {GgmlType::Q8_1, 32, 254, 0.5},   {GgmlType::Q8_K, 256, 254, 0.5},
      {GgmlType::Q4_0, 32, 16, 1.0},   {GgmlType::Q5_0, 32, 32, 1.0},    {GgmlType::Q4_1, 32, 15, 0.5},
      {GgmlType::Q5_1, 32, 31, 0.5},
  };
  for (const auto& c : cases) {
    const auto x = random_floats(1024, 42 + static_cast<uint32_t>(c.type), -3.0f, 2.0f);
    const auto back = dequantize(c.type, quantize(c.type, x), x.size());
    double worst = 0.0;
    for (size_t b = 0; b < x.size(); b += c.block) {
      double lo = x[b], hi = x[b], amax = 0.0;
      for (int j = 0; j < c.block; ++j) {
        lo = std::min<double>(lo, x[b + j]);
        hi = std::max<double>(hi, x[b + j]);
        amax = std::max<double>(amax, std::fabs(x[b + j]));
      }
      const bool symmetric = c.type != GgmlType::Q4_1 && c.type != GgmlType::Q5_1;
      const double step = (symmetric ? 2 * amax : hi - lo) / c.steps_per_range;
      // fp16 scale rounding moves every value by up to 2^-11 of its size.
      const double bound = c.max_steps * step * 1.001 + amax * std::ldexp(1.0, -10);
      for (int j = 0; j < c.block; ++j) {
        const double err = std::fabs(back[b + j] - x[b + j]);
        worst = std::max(worst, err / bound);
        ASSERT_LE(err, bound) << gguf::ggml_type_name(c.type) << " element " << b + j;
      }
    }
    EXPECT_GT(worst, 0.1) << gguf::ggml_type_name(c.type) << ": suspiciously exact";
  }
}

TEST(Quantize, FloatFormatsRoundToNearest) {
  const auto x = random_floats(257, 5, -100.0f, 100.0f);
  const auto f16 = dequantize(GgmlType::F16, quantize(GgmlType::F16, x), x.size());
  const auto bf16 = dequantize(GgmlType::BF16, quantize(GgmlType::BF16, x), x.size());
  const auto f32 = dequantize(GgmlType::F32, quantize(GgmlType::F32, x), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_LE(std::fabs(f16[i] - x[i]), std::fabs(x[i]) * std::ldexp(1.0, -11) + 1e-7);
    EXPECT_LE(std::fabs(bf16[i] - x[i]), std::fabs(x[i]) * std::ldexp(1.0, -8));
    EXPECT_EQ(f32[i], x[i]);
  }
}

// ---- vec_dot ----

// Weight rows of random bytes with sane fp16 scales at the fields each layout defines.
struct WeightLayout {
  GgmlType type;
  std::vector<size_t> half_fields;  // byte offsets of fp16 scale/min fields in a block
};

std::vector<uint8_t> random_weight_row(const WeightLayout& l, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  if (l.type == GgmlType::F32 || l.type == GgmlType::F16 || l.type == GgmlType::BF16) {
    const auto x = random_floats(static_cast<size_t>(n), seed);
    return quantize(l.type, x);
  }
  const TypeKernels* k = find_kernels(l.type);
  std::vector<uint8_t> row(row_bytes(l.type, n));
  for (auto& byte : row) byte = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (size_t b = 0; b < row.size(); b += k->block_bytes)
    for (size_t off : l.half_fields) put_f16(row, b + off, scale(rng) * (rng() & 1 ? 1.0f : -1.0f));
  return row;
}

double dot_reference(const std::vector<float>& a, const std::vector<float>& b, double* magnitude) {
  double s = 0.0, m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    s += static_cast<double>(a[i]) * b[i];
    m += std::fabs(static_cast<double>(a[i]) * b[i]);
  }
  *magnitude = m;
  return s;
}

TEST(VecDot, MatchesDoublePrecisionDotOfDecodedOperands) {
  const std::vector<WeightLayout> layouts = {
      {GgmlType::F32, {}},      {GgmlType::F16, {}},      {GgmlType::BF16, {}},     {GgmlType::Q4_0, {0}},
      {GgmlType::Q4_1, {0, 2}}, {GgmlType::Q5_0, {0}},    {GgmlType::Q5_1, {0, 2}}, {GgmlType::Q8_0, {0}},
      {GgmlType::Q2_K, {80, 82}}, {GgmlType::Q3_K, {108}}, {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}},
      {GgmlType::Q6_K, {208}},
  };
  const int64_t n = 1024;
  for (const auto& l : layouts) {
    for (uint32_t trial = 0; trial < 5; ++trial) {
      const auto w = random_weight_row(l, n, 1000 * trial + static_cast<uint32_t>(l.type));
      const auto x = random_floats(static_cast<size_t>(n), 77 + trial, -2.0f, 2.0f);
      const GgmlType at = vec_dot_type(l.type);
      const auto a = quantize(at, x);
      const auto wf = dequantize(l.type, w, n);
      const auto af = dequantize(at, a, n);
      double magnitude;
      const double want = dot_reference(wf, af, &magnitude);
      double bound = 2e-6 * magnitude + 1e-30;
      if (at == GgmlType::Q8_1) {
        // Q4_1/Q5_1 use the block sum s = d * sum(q) stored as fp16: allow its rounding.
        for (int64_t b = 0; b < n / 32; ++b) {
          const float m = fp16_to_fp32(static_cast<uint16_t>(w[b * (l.type == GgmlType::Q4_1 ? 20 : 24) + 2] |
                                                             (w[b * (l.type == GgmlType::Q4_1 ? 20 : 24) + 3] << 8)));
          const float s = fp16_to_fp32(static_cast<uint16_t>(a[b * 36 + 2] | (a[b * 36 + 3] << 8)));
          bound += std::fabs(m * s) * std::ldexp(1.0, -10);
        }
      }
      const float got = vec_dot(l.type, n, w.data(), a.data());
      ASSERT_NEAR(got, want, bound) << gguf::ggml_type_name(l.type) << " trial " << trial;
      ASSERT_GT(magnitude, 0.0);
    }
  }
}

// GGML's ggml_vec_dot_f16 sums the products it does not vectorise in double. A product of two
// halves is exact in float, so an F16 dot shorter than one vector step (an F16 KV cache's q.k with
// head_dim 8) is the exact dot rounded once, on every kernel set; a float running sum is not.
TEST(VecDot, ShortF16DotIsTheExactDotRoundedOnce) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mag(0.5f, 2.0f);
  for (const std::string& set : available_kernel_sets()) {
    const TypeKernels& k = (*kernel_table_for(set))[static_cast<size_t>(GgmlType::F16)];
    const TypeKernels& act = (*kernel_table_for(set))[static_cast<size_t>(k.vec_dot_type)];
    ASSERT_EQ(k.vec_dot_type, GgmlType::F16) << set;
    int float_sum_differs = 0;
    for (int trial = 0; trial < 2000; ++trial) {
      const int n = 2 + trial % 14;  // 2..15: no full 16-element step
      std::vector<float> x(n), y(n);
      for (int i = 0; i < n; ++i) {
        x[i] = (rng() & 1 ? -1 : 1) * mag(rng);
        y[i] = (rng() & 1 ? -1 : 1) * mag(rng);
      }
      std::vector<uint16_t> xh(n), yh(n);
      k.quantize(x.data(), xh.data(), n);
      act.quantize(y.data(), yh.data(), n);
      std::vector<float> xd(n), yd(n);
      k.dequantize(xh.data(), xd.data(), n);
      act.dequantize(yh.data(), yd.data(), n);
      double exact = 0;  // terms of 22 significant bits within 2^4 of each other: no rounding
      float running = 0;
      for (int i = 0; i < n; ++i) {
        exact += static_cast<double>(xd[i]) * yd[i];
        running += xd[i] * yd[i];
      }
      ASSERT_EQ(k.vec_dot(n, xh.data(), yh.data()), static_cast<float>(exact)) << set << " n=" << n << " trial " << trial;
      float_sum_differs += running != static_cast<float>(exact);
    }
    EXPECT_GT(float_sum_differs, 100) << "the trials do not tell a float sum from the exact one";
  }
}

TEST(VecDot, ActivationFormatsAgainstThemselves) {
  for (GgmlType t : {GgmlType::Q8_1, GgmlType::Q8_K}) {
    ASSERT_EQ(vec_dot_type(t), t);
    const auto a = quantize(t, random_floats(512, 3));
    const auto b = quantize(t, random_floats(512, 4));
    double m;
    const double want = dot_reference(dequantize(t, a, 512), dequantize(t, b, 512), &m);
    EXPECT_NEAR(vec_dot(t, 512, a.data(), b.data()), want, 2e-6 * m);
  }
}

TEST(VecDot, VecDotTypes) {
  EXPECT_EQ(vec_dot_type(GgmlType::F32), GgmlType::F32);
  EXPECT_EQ(vec_dot_type(GgmlType::F16), GgmlType::F16);
  EXPECT_EQ(vec_dot_type(GgmlType::BF16), GgmlType::BF16);
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q5_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q8_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_1), GgmlType::Q8_1);
  EXPECT_EQ(vec_dot_type(GgmlType::Q5_1), GgmlType::Q8_1);
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    EXPECT_EQ(vec_dot_type(t), GgmlType::Q8_K);
}

// ---- matmul ----

void check_matmul(GgmlType type, int64_t rows, int64_t cols, int64_t tokens, size_t pad) {
  // Rows padded by `pad` bytes to check that row_bytes is honoured.
  const size_t rb = row_bytes(type, cols) + pad;
  std::vector<uint8_t> data(rb * rows, 0xEE);
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<uint8_t> row;
    if (find_kernels(type)->quantize) {
      row = quantize(type, random_floats(static_cast<size_t>(cols), 500 + static_cast<uint32_t>(r)));
    } else {
      row = random_weight_row({type, type == GgmlType::Q4_K ? std::vector<size_t>{0, 2} : std::vector<size_t>{208}},
                              cols, 900 + static_cast<uint32_t>(r));
    }
    std::memcpy(data.data() + r * rb, row.data(), row.size());
    dequantize_row(type, row.data(), wf.data() + r * cols, cols);
  }
  const auto x = random_floats(static_cast<size_t>(tokens * cols), 8);
  Matrix w{type, cols, rows, data.data(), rb};
  std::vector<float> y(static_cast<size_t>(tokens * rows), NAN);
  matmul(w, x.data(), tokens, y.data());

  const GgmlType at = vec_dot_type(type);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
    const auto a = quantize(at, xt);
    const auto af = dequantize(at, a, static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      // Exactly what vec_dot gives for this row and token...
      EXPECT_EQ(y[t * rows + r], vec_dot(type, cols, data.data() + r * rb, a.data()));
      // ...and close to the double-precision dot of the decoded operands.
      std::vector<float> wr(wf.begin() + r * cols, wf.begin() + (r + 1) * cols);
      double m;
      const double want = dot_reference(wr, af, &m);
      EXPECT_NEAR(y[t * rows + r], want, 1e-5 * m + 1e-3 * (at == GgmlType::Q8_1 ? m : 0.0))
          << gguf::ggml_type_name(type) << " t=" << t << " r=" << r;
    }
  }
}

TEST(Matmul, ShapesAndValues) {
  check_matmul(GgmlType::F32, 5, 64, 3, 0);
  check_matmul(GgmlType::F32, 4, 33, 2, 12);  // odd length
  check_matmul(GgmlType::F16, 3, 96, 2, 6);
  check_matmul(GgmlType::BF16, 3, 96, 1, 0);
  check_matmul(GgmlType::Q8_0, 7, 128, 4, 2);
  check_matmul(GgmlType::Q4_0, 6, 256, 3, 0);
  check_matmul(GgmlType::Q4_1, 2, 64, 2, 0);
  check_matmul(GgmlType::Q5_0, 2, 64, 2, 0);
  check_matmul(GgmlType::Q5_1, 2, 64, 2, 0);
  check_matmul(GgmlType::Q4_K, 3, 512, 2, 0);
  check_matmul(GgmlType::Q6_K, 3, 512, 2, 4);
}

TEST(Matmul, OutputLayoutIsTokenMajor) {
  // W = [[1,0,...],[0,2,0...]] (F32, 2 x 4); x = two tokens.
  const float w[8] = {1, 0, 0, 0, 0, 2, 0, 0};
  const float x[8] = {3, 5, 7, 9, -1, -2, -3, -4};
  float y[4];
  matmul(Matrix{GgmlType::F32, 4, 2, reinterpret_cast<const uint8_t*>(w), 16}, x, 2, y);
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(y[1], 10.0f);
  EXPECT_EQ(y[2], -1.0f);
  EXPECT_EQ(y[3], -4.0f);
}

TEST(Matmul, EmptyShapesDoNothing) {
  float y = 42.0f;
  matmul(Matrix{GgmlType::Q4_0, 32, 0, nullptr, 18}, nullptr, 3, &y);
  matmul(Matrix{GgmlType::Q4_0, 32, 4, nullptr, 18}, nullptr, 0, &y);
  EXPECT_EQ(y, 42.0f);
}

// ---- dispatch ----

int g_counting_calls = 0;
float counting_vec_dot(int64_t n, const void* w, const void* a) {
  ++g_counting_calls;
  return scalar_kernel_table()[static_cast<size_t>(GgmlType::Q8_0)].vec_dot(n, w, a);
}

TEST(Dispatch, PublicFunctionsUseTheActiveTable) {
  static KernelTable custom = scalar_kernel_table();
  custom[static_cast<size_t>(GgmlType::Q8_0)].vec_dot = counting_vec_dot;
  set_active_kernel_table(custom);
  const auto w = quantize(GgmlType::Q8_0, random_floats(64 * 3, 1));
  const auto x = random_floats(64 * 2, 2);
  float y[6];
  g_counting_calls = 0;
  matmul(Matrix{GgmlType::Q8_0, 64, 3, w.data(), 68}, x.data(), 2, y);
  set_active_kernel_table(scalar_kernel_table());
  EXPECT_EQ(g_counting_calls, 6);
  EXPECT_EQ(&active_kernel_table(), &scalar_kernel_table());
}

// ---- errors ----

void expect_error(ErrorKind kind, const std::string& message_part, const std::function<void()>& f) {
  try {
    f();
    ADD_FAILURE() << "no error; expected: " << message_part;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

TEST(Errors, UnsupportedTypes) {
  float out[256];
  uint8_t buf[1024] = {};
  EXPECT_FALSE(is_supported(GgmlType::IQ2_XXS));
  EXPECT_FALSE(is_supported(GgmlType::TQ1_0));
  EXPECT_FALSE(is_supported(GgmlType::I32));
  EXPECT_FALSE(is_supported(static_cast<GgmlType>(1000)));
  EXPECT_TRUE(is_supported(GgmlType::Q6_K));
  expect_error(ErrorKind::unsupported, "tensor type IQ2_XXS is not supported yet",
               [&] { dequantize_row(GgmlType::IQ2_XXS, buf, out, 256); });
  expect_error(ErrorKind::unsupported, "tensor type TQ2_0 is not supported yet",
               [&] { vec_dot(GgmlType::TQ2_0, 256, buf, buf); });
  expect_error(ErrorKind::unsupported, "IQ2_S", [&] { vec_dot_type(GgmlType::IQ2_S); });
  expect_error(ErrorKind::unsupported, "type#1000", [&] { row_bytes(static_cast<GgmlType>(1000), 32); });
  expect_error(ErrorKind::unsupported, "IQ1_M",
               [&] { matmul(Matrix{GgmlType::IQ1_M, 256, 1, buf, 56}, out, 1, out); });
  expect_error(ErrorKind::unsupported, "quantising to Q4_K", [&] { quantize_row(GgmlType::Q4_K, out, buf, 256); });
}

TEST(Errors, BadLengths) {
  float out[64];
  uint8_t buf[64] = {};
  expect_error(ErrorKind::invalid_argument, "not a multiple", [&] { dequantize_row(GgmlType::Q4_0, buf, out, 40); });
  expect_error(ErrorKind::invalid_argument, "not a multiple", [&] { row_bytes(GgmlType::Q6_K, 128); });
  expect_error(ErrorKind::invalid_argument, "not a multiple", [&] { quantize_row(GgmlType::Q8_0, out, buf, 31); });
  expect_error(ErrorKind::invalid_argument, "not a multiple", [&] { vec_dot(GgmlType::Q8_0, 20, buf, buf); });
  expect_error(ErrorKind::invalid_argument, "row_bytes",
               [&] { matmul(Matrix{GgmlType::Q8_0, 64, 1, buf, 34}, out, 1, out); });
  EXPECT_EQ(row_bytes(GgmlType::Q4_K, 512), 288u);
  EXPECT_EQ(row_bytes(GgmlType::F16, 7), 14u);
}

}  // namespace
}  // namespace etna::tensor
