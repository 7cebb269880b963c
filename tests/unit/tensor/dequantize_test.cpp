// Dequantisation of hand-built blocks. Each test picks integer quants and scales, packs them
// into bytes following GGML's documented layout (ggml-common.h), and computes the expected
// floats from the chosen integers, not from the code under test.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "etna/tensor/tensor.h"
#include "unit/tensor/tensor_test_util.h"

namespace etna::tensor {
namespace {

using namespace testing;

void expect_decodes_to(GgmlType type, const std::vector<uint8_t>& bytes, const std::vector<double>& expected) {
  std::vector<float> out(expected.size(), -999.0f);
  dequantize_row(type, bytes.data(), out.data(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_NEAR(out[i], expected[i], 1e-6 * std::max(1.0, std::fabs(expected[i])))
        << gguf::ggml_type_name(type) << " element " << i;
}

TEST(Dequantize, F32IsACopy) {
  std::vector<float> v = {1.5f, -2.25f, 0.0f, 3e-20f};
  std::vector<uint8_t> b(16);
  std::memcpy(b.data(), v.data(), 16);
  expect_decodes_to(GgmlType::F32, b, {1.5, -2.25, 0.0, 3e-20f});
}

TEST(Dequantize, F16AndBF16) {
  // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ~ 0.33325, 0x0001 = 2^-24 (subnormal), 0x7BFF = 65504.
  std::vector<uint8_t> h(10);
  const uint16_t halves[] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF};
  for (int i = 0; i < 5; ++i) put_u16(h, 2 * i, halves[i]);
  expect_decodes_to(GgmlType::F16, h, {1.0, -2.0, 0.333251953125, std::ldexp(1.0, -24), 65504.0});
  // bfloat16 is the top half of a float: 0x3F80 = 1.0, 0xC040 = -3.0, 0x4049 = 3.140625.
  std::vector<uint8_t> b(6);
  put_u16(b, 0, 0x3F80);
  put_u16(b, 2, 0xC040);
  put_u16(b, 4, 0x4049);
  expect_decodes_to(GgmlType::BF16, b, {1.0, -3.0, 3.140625});
}

TEST(Dequantize, F16EveryBitPatternMatchesTheReferenceConversion) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> out(65536);
  dequantize_row(GgmlType::F16, all.data(), out.data(), 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = fp16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(std::memcmp(&out[h], &want, 4), 0) << "half 0x" << std::hex << h;
  }
  // Spot checks against IEEE values: infinities and a NaN survive.
  EXPECT_TRUE(std::isinf(out[0x7C00]) && out[0x7C00] > 0);
  EXPECT_TRUE(std::isinf(out[0xFC00]) && out[0xFC00] < 0);
  EXPECT_TRUE(std::isnan(out[0x7E00]));
  EXPECT_EQ(out[0x8000], 0.0f);
  EXPECT_TRUE(std::signbit(out[0x8000]));
}

// Q4_0: {fp16 d; u8 qs[16]}; element j < 16 is the low nibble of qs[j], j >= 16 the high
// nibble of qs[j-16]; x = d * (q - 8).
TEST(Dequantize, Q4_0) {
  std::mt19937 rng(1);
  const int nb = 3;
  std::vector<uint8_t> b(18 * nb, 0);
  std::vector<double> want;
  for (int i = 0; i < nb; ++i) {
    const float d = 0.125f * (i + 1) * (i == 1 ? -1 : 1);
    put_f16(b, 18 * i, d);
    for (int j = 0; j < 32; ++j) {
      const int q = random_int(rng, 0, 15);
      b[18 * i + 2 + j % 16] |= static_cast<uint8_t>(q << (j < 16 ? 0 : 4));
      want.push_back(as_f16(d) * (q - 8));
    }
  }
  expect_decodes_to(GgmlType::Q4_0, b, want);
}

// Q4_1: {fp16 d; fp16 m; u8 qs[16]}; x = d * q + m.
TEST(Dequantize, Q4_1) {
  std::mt19937 rng(2);
  std::vector<uint8_t> b(20 * 2, 0);
  std::vector<double> want;
  for (int i = 0; i < 2; ++i) {
    const float d = 0.05f + i, m = -0.75f + i;
    put_f16(b, 20 * i, d);
    put_f16(b, 20 * i + 2, m);
    for (int j = 0; j < 32; ++j) {
      const int q = random_int(rng, 0, 15);
      b[20 * i + 4 + j % 16] |= static_cast<uint8_t>(q << (j < 16 ? 0 : 4));
      want.push_back(as_f16(d) * q + as_f16(m));
    }
  }
  expect_decodes_to(GgmlType::Q4_1, b, want);
}

// Q5_0: {fp16 d; u8 qh[4]; u8 qs[16]}; bit 4 of element j is bit j of the little-endian
// uint32 qh; x = d * (q - 16).
TEST(Dequantize, Q5_0) {
  std::mt19937 rng(3);
  std::vector<uint8_t> b(22 * 2, 0);
  std::vector<double> want;
  for (int i = 0; i < 2; ++i) {
    const float d = 0.3f * (i ? -1 : 1);
    put_f16(b, 22 * i, d);
    for (int j = 0; j < 32; ++j) {
      const int q = random_int(rng, 0, 31);
      b[22 * i + 6 + j % 16] |= static_cast<uint8_t>((q & 15) << (j < 16 ? 0 : 4));
      b[22 * i + 2 + j / 8] |= static_cast<uint8_t>((q >> 4) << (j % 8));
      want.push_back(as_f16(d) * (q - 16));
    }
  }
  expect_decodes_to(GgmlType::Q5_0, b, want);
}

// Q5_1: {fp16 d; fp16 m; u8 qh[4]; u8 qs[16]}; x = d * q + m.
TEST(Dequantize, Q5_1) {
  std::mt19937 rng(4);
  std::vector<uint8_t> b(24 * 2, 0);
  std::vector<double> want;
  for (int i = 0; i < 2; ++i) {
    const float d = 0.02f * (i + 1), m = i ? 0.5f : -0.3f;
    put_f16(b, 24 * i, d);
    put_f16(b, 24 * i + 2, m);
    for (int j = 0; j < 32; ++j) {
      const int q = random_int(rng, 0, 31);
      b[24 * i + 8 + j % 16] |= static_cast<uint8_t>((q & 15) << (j < 16 ? 0 : 4));
      b[24 * i + 4 + j / 8] |= static_cast<uint8_t>((q >> 4) << (j % 8));
      want.push_back(as_f16(d) * q + as_f16(m));
    }
  }
  expect_decodes_to(GgmlType::Q5_1, b, want);
}

// Q8_0: {fp16 d; i8 qs[32]}; Q8_1: {fp16 d; fp16 s; i8 qs[32]}; x = d * q (s is not used).
TEST(Dequantize, Q8_0AndQ8_1) {
  std::mt19937 rng(5);
  std::vector<uint8_t> b0(34, 0), b1(36, 0);
  std::vector<double> want;
  put_f16(b0, 0, -0.0625f);
  put_f16(b1, 0, -0.0625f);
  put_f16(b1, 2, 1000.0f);
  for (int j = 0; j < 32; ++j) {
    const int q = random_int(rng, -128, 127);
    b0[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    b1[4 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    want.push_back(-0.0625 * q);
  }
  expect_decodes_to(GgmlType::Q8_0, b0, want);
  expect_decodes_to(GgmlType::Q8_1, b1, want);
}

// Q2_K (84 bytes): {u8 scales[16]; u8 qs[64]; fp16 d; fp16 dmin}. Sub-block s = e/16 has
// scale (scales[s] & 15) and min (scales[s] >> 4). Element e's 2 bits sit in
// qs[32*(e/128) + e%32] at bit 2*((e%128)/32). x = d * sc * q - dmin * m.
TEST(Dequantize, Q2_K) {
  std::mt19937 rng(6);
  std::vector<uint8_t> b(84, 0);
  const float d = 0.01f, dmin = 0.004f;
  put_f16(b, 80, d);
  put_f16(b, 82, dmin);
  int sc[16], mn[16];
  for (int s = 0; s < 16; ++s) {
    sc[s] = random_int(rng, 0, 15);
    mn[s] = random_int(rng, 0, 15);
    b[s] = static_cast<uint8_t>(sc[s] | (mn[s] << 4));
  }
  std::vector<double> want;
  for (int e = 0; e < 256; ++e) {
    const int q = random_int(rng, 0, 3);
    b[16 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>(q << (2 * ((e % 128) / 32)));
    want.push_back(as_f16(d) * sc[e / 16] * q - as_f16(dmin) * mn[e / 16]);
  }
  expect_decodes_to(GgmlType::Q2_K, b, want);
}

// Q3_K (110 bytes): {u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d}. q in -4..3 is stored
// as q+4: low 2 bits like Q2_K, bit 2 as bit (e/32) of hmask[e%32]. The 16 scales are 6-bit,
// stored as s+32: low nibble in scales[j] (j < 8) or the high nibble of scales[j-8]; top two
// bits at bit 2*(j/4) of scales[8 + j%4]. x = d * s * q.
TEST(Dequantize, Q3_K) {
  std::mt19937 rng(7);
  std::vector<uint8_t> b(110, 0);
  const float d = -0.02f;
  put_f16(b, 108, d);
  int sc[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = random_int(rng, -32, 31);
    const int u = sc[j] + 32;
    b[96 + (j % 8)] |= static_cast<uint8_t>((u & 15) << (j < 8 ? 0 : 4));
    b[96 + 8 + j % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (j / 4)));
  }
  std::vector<double> want;
  for (int e = 0; e < 256; ++e) {
    const int q = random_int(rng, -4, 3), u = q + 4;
    b[32 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>((u & 3) << (2 * ((e % 128) / 32)));
    b[e % 32] |= static_cast<uint8_t>((u >> 2) << (e / 32));
    want.push_back(as_f16(d) * sc[e / 16] * q);
  }
  expect_decodes_to(GgmlType::Q3_K, b, want);
}

// Q4_K / Q5_K scales: 8 six-bit scales and mins in 12 bytes. For j < 4: scales[j] = sc,
// scales[j+4] = m. For j >= 4: scales[j+4] = (sc & 15) | (m & 15) << 4, and the top two bits
// of sc / m go to bits 6..7 of scales[j-4] / scales[j].
void pack_k4_scales(uint8_t* s, const int* sc, const int* mn) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] |= static_cast<uint8_t>(sc[j]);
      s[j + 4] |= static_cast<uint8_t>(mn[j]);
    } else {
      s[j + 4] = static_cast<uint8_t>((sc[j] & 15) | ((mn[j] & 15) << 4));
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
}

// Q4_K (144 bytes): {fp16 d; fp16 dmin; u8 scales[12]; u8 qs[128]}. Sub-block s = e/32.
// Element e is the low nibble of qs[32*(e/64) + e%32] when e%64 < 32, else the high nibble.
// x = d * sc * q - dmin * m.
TEST(Dequantize, Q4_K) {
  std::mt19937 rng(8);
  const int nb = 2;
  std::vector<uint8_t> b(144 * nb, 0);
  std::vector<double> want;
  for (int i = 0; i < nb; ++i) {
    uint8_t* blk = b.data() + 144 * i;
    const float d = 0.003f * (i + 1), dmin = 0.002f;
    put_f16(b, 144 * i, d);
    put_f16(b, 144 * i + 2, dmin);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = random_int(rng, 0, 63);
      mn[j] = random_int(rng, 0, 63);
    }
    pack_k4_scales(blk + 4, sc, mn);
    for (int e = 0; e < 256; ++e) {
      const int q = random_int(rng, 0, 15);
      blk[16 + 32 * (e / 64) + e % 32] |= static_cast<uint8_t>(q << ((e % 64) < 32 ? 0 : 4));
      want.push_back(as_f16(d) * sc[e / 32] * q - as_f16(dmin) * mn[e / 32]);
    }
  }
  expect_decodes_to(GgmlType::Q4_K, b, want);
}

// Q5_K (176 bytes): {fp16 d; fp16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}; low 4 bits as
// Q4_K, bit 4 of element e is bit (e/32) of qh[e%32].
TEST(Dequantize, Q5_K) {
  std::mt19937 rng(9);
  std::vector<uint8_t> b(176, 0);
  const float d = 0.0021f, dmin = 0.0033f;
  put_f16(b, 0, d);
  put_f16(b, 2, dmin);
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = random_int(rng, 0, 63);
    mn[j] = random_int(rng, 0, 63);
  }
  pack_k4_scales(b.data() + 4, sc, mn);
  std::vector<double> want;
  for (int e = 0; e < 256; ++e) {
    const int q = random_int(rng, 0, 31);
    b[48 + 32 * (e / 64) + e % 32] |= static_cast<uint8_t>((q & 15) << ((e % 64) < 32 ? 0 : 4));
    b[16 + e % 32] |= static_cast<uint8_t>((q >> 4) << (e / 32));
    want.push_back(as_f16(d) * sc[e / 32] * q - as_f16(dmin) * mn[e / 32]);
  }
  expect_decodes_to(GgmlType::Q5_K, b, want);
}

// Q6_K (210 bytes): {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}. q in -32..31 stored as
// q+32. For e = 128n + 32k + l: low nibble in ql[64n + 32(k&1) + l] (high nibble when k >= 2),
// top 2 bits at bit 2k of qh[32n + l]. x = d * scales[e/16] * q.
TEST(Dequantize, Q6_K) {
  std::mt19937 rng(10);
  std::vector<uint8_t> b(210, 0);
  const float d = 0.0007f;
  put_f16(b, 208, d);
  int sc[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = random_int(rng, -128, 127);
    b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
  }
  std::vector<double> want;
  for (int e = 0; e < 256; ++e) {
    const int q = random_int(rng, -32, 31), u = q + 32;
    const int n = e / 128, k = (e % 128) / 32, l = e % 32;
    b[64 * n + 32 * (k & 1) + l] |= static_cast<uint8_t>((u & 15) << (k >= 2 ? 4 : 0));
    b[128 + 32 * n + l] |= static_cast<uint8_t>((u >> 4) << (2 * k));
    want.push_back(as_f16(d) * sc[e / 16] * q);
  }
  expect_decodes_to(GgmlType::Q6_K, b, want);
}

// Q8_K (292 bytes): {f32 d; i8 qs[256]; i16 bsums[16]}; x = d * q.
TEST(Dequantize, Q8_K) {
  std::mt19937 rng(11);
  std::vector<uint8_t> b(292, 0);
  const float d = 0.0123f;
  put_f32(b, 0, d);
  std::vector<double> want;
  for (int e = 0; e < 256; ++e) {
    const int q = random_int(rng, -127, 127);
    b[4 + e] = static_cast<uint8_t>(static_cast<int8_t>(q));
    want.push_back(static_cast<double>(d * static_cast<float>(q)));
  }
  expect_decodes_to(GgmlType::Q8_K, b, want);
}

}  // namespace
}  // namespace etna::tensor
