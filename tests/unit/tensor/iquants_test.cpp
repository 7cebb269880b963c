// The IQ formats (IQ4_NL, IQ4_XS, IQ3_S): their tables, hand-built blocks decoded from the
// chosen integers, dot products against decoded rows on every kernel set, and the types that
// stay unsupported refused with their names. (The SIMD kernels are also in the generic
// SIMD-against-scalar, tile and matmul checks of kernel_sets_test.cpp.)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/iquants_tables.h"
#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"
#include "support/test_support.h"
#include "unit/tensor/tensor_test_util.h"

namespace etna::tensor {
namespace {

using namespace testing;

// GGML's IQ4_NL levels, as its documentation lists them.
const int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

TEST(IQTables, IQ4NLLevels) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(kIQ4NLValues[i], kLevels[i]) << i;
}

// The grid is GGML's list of 512 distinct points of {1,3,...,15}^4 in ascending order of their
// little-endian words: a transcription slip would break the order or the value set. (The IQ3_M
// reference model in tests/unit/model/iq_reference_test.cpp checks the values themselves.)
TEST(IQTables, IQ3SGridIsSortedDistinctAndOdd) {
  ASSERT_EQ(kIQ3SGrid.size(), 512u);
  for (size_t i = 0; i < kIQ3SGrid.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(kIQ3SGrid[i - 1], kIQ3SGrid[i]) << i;
    }
    EXPECT_LT(kIQ3SGridCodes[i], 010000) << i;
    for (int e = 0; e < 4; ++e) {
      const uint32_t v = (kIQ3SGrid[i] >> (8 * e)) & 0xFF;
      EXPECT_TRUE(v % 2 == 1 && v <= 15) << i;
    }
  }
  // First and last points, and the total of all words, as GGML's table has them.
  EXPECT_EQ(kIQ3SGrid[0], 0x01010101u);
  EXPECT_EQ(kIQ3SGrid[3], 0x0101010bu);
  EXPECT_EQ(kIQ3SGrid[511], 0x0f0f0101u);
  uint64_t total = 0;
  for (uint32_t v : kIQ3SGrid) total += v;
  EXPECT_EQ(total, 53294177878ull);
}

void expect_decodes_to(GgmlType type, const std::vector<uint8_t>& bytes, const std::vector<double>& expected) {
  std::vector<float> out(expected.size(), -999.0f);
  dequantize_row(type, bytes.data(), out.data(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_NEAR(out[i], expected[i], 1e-6 * std::max(1.0, std::fabs(expected[i])))
        << gguf::ggml_type_name(type) << " element " << i;
}

TEST(IQDequantize, IQ4NL) {
  std::mt19937 rng(1);
  std::vector<uint8_t> b(18 * 2);
  std::vector<double> want(64);
  for (int blk = 0; blk < 2; ++blk) {
    const float d = blk ? -0.03125f : 0.5f;
    put_f16(b, 18 * blk, d);
    int q[32];
    for (int& v : q) v = random_int(rng, 0, 15);
    for (int j = 0; j < 16; ++j) b[18 * blk + 2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j) want[32 * blk + j] = as_f16(d) * kLevels[q[j]];
  }
  expect_decodes_to(GgmlType::IQ4_NL, b, want);
}

TEST(IQDequantize, IQ4XS) {
  std::mt19937 rng(2);
  std::vector<uint8_t> b(136);
  const float d = 0.0625f;
  put_f16(b, 0, d);
  int ls[8], q[256];
  uint16_t scales_h = 0;
  for (int s = 0; s < 8; ++s) {
    ls[s] = s == 0 ? 0 : s == 1 ? 63 : random_int(rng, 0, 63);  // both extremes of the 6 bits
    scales_h = static_cast<uint16_t>(scales_h | ((ls[s] >> 4) << (2 * s)));
    b[4 + s / 2] = static_cast<uint8_t>(b[4 + s / 2] | ((ls[s] & 15) << (4 * (s % 2))));
  }
  put_u16(b, 2, scales_h);
  for (int& v : q) v = random_int(rng, 0, 15);
  for (int s = 0; s < 8; ++s)
    for (int j = 0; j < 16; ++j) b[8 + 16 * s + j] = static_cast<uint8_t>(q[32 * s + j] | (q[32 * s + 16 + j] << 4));
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) want[e] = as_f16(d) * (ls[e / 32] - 32) * kLevels[q[e]];
  expect_decodes_to(GgmlType::IQ4_XS, b, want);
}

TEST(IQDequantize, IQ3S) {
  std::mt19937 rng(3);
  std::vector<uint8_t> b(110);
  const float d = 0.25f;
  put_f16(b, 0, d);
  // Offsets: qs 2, qh 66, signs 74, scales 106.
  int index[64], sc[8];
  bool neg[256];
  for (int g = 0; g < 64; ++g) {
    index[g] = g == 0 ? 0 : g == 1 ? 511 : g == 2 ? 256 : random_int(rng, 0, 511);
    b[2 + g] = static_cast<uint8_t>(index[g] & 0xFF);
    b[66 + g / 8] = static_cast<uint8_t>(b[66 + g / 8] | ((index[g] >> 8) << (g % 8)));
  }
  for (int e = 0; e < 256; ++e) {
    neg[e] = rng() & 1;
    b[74 + e / 8] = static_cast<uint8_t>(b[74 + e / 8] | (neg[e] << (e % 8)));
  }
  for (int s = 0; s < 8; ++s) {
    sc[s] = s == 0 ? 15 : random_int(rng, 0, 15);
    b[106 + s / 2] = static_cast<uint8_t>(b[106 + s / 2] | (sc[s] << (4 * (s % 2))));
  }
  std::vector<double> want(256);
  for (int e = 0; e < 256; ++e) {
    const int v = 2 * ((kIQ3SGridCodes[index[e / 4]] >> (3 * (e % 4))) & 7) + 1;
    want[e] = as_f16(d) * (1 + 2 * sc[e / 32]) * (neg[e] ? -v : v);
  }
  // Point 256 is the first with bit 8 set: its index depends on qh.
  EXPECT_NE(kIQ3SGridCodes[256], kIQ3SGridCodes[0]);
  expect_decodes_to(GgmlType::IQ3_S, b, want);
}

// Random rows with small finite scales, the (first) fp16 scale at byte 0 of each block.
std::vector<uint8_t> random_iq_row(GgmlType type, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t block_bytes = type == GgmlType::IQ4_NL ? 18 : type == GgmlType::IQ4_XS ? 136 : 110;
  const int64_t block = type == GgmlType::IQ4_NL ? 32 : 256;
  std::vector<uint8_t> row(static_cast<size_t>(n / block) * block_bytes);
  for (auto& v : row) v = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (size_t off = 0; off < row.size(); off += block_bytes) put_f16(row, off, scale(rng) * (rng() & 1 ? 1.f : -1.f));
  return row;
}

// vec_dot of every kernel set equals the dot of the decoded weights with the decoded
// activations (of the activation type llama.cpp pairs with each format), up to float rounding.
TEST(IQVecDot, EqualsDotOfDecodedRowsOnEveryKernelSet) {
  const std::pair<GgmlType, GgmlType> pairs[] = {
      {GgmlType::IQ4_NL, GgmlType::Q8_0}, {GgmlType::IQ4_XS, GgmlType::Q8_K}, {GgmlType::IQ3_S, GgmlType::Q8_K}};
  for (const std::string& set : available_kernel_sets()) {
    const KernelTable& table = *kernel_table_for(set);
    for (auto [type, act_type] : pairs) {
      const TypeKernels& k = table[static_cast<size_t>(type)];
      ASSERT_NE(k.block_size, 0) << set << " lacks " << gguf::ggml_type_name(type);
      ASSERT_EQ(k.vec_dot_type, act_type) << gguf::ggml_type_name(type);
      const TypeKernels& act = table[static_cast<size_t>(act_type)];
      for (int64_t n : {256, 2048}) {
        const auto w = random_iq_row(type, n, static_cast<uint32_t>(n) + static_cast<uint32_t>(type));
        const auto x = random_floats(static_cast<size_t>(n), 11, -2.0f, 2.0f);
        std::vector<uint8_t> a(static_cast<size_t>(n / act.block_size) * act.block_bytes);
        act.quantize(x.data(), a.data(), n);
        std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
        k.dequantize(w.data(), wf.data(), n);
        act.dequantize(a.data(), af.data(), n);
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          want += static_cast<double>(wf[i]) * af[i];
          mag += std::fabs(static_cast<double>(wf[i]) * af[i]);
        }
        const float got = k.vec_dot(n, w.data(), a.data());
        EXPECT_NEAR(got, want, 1e-5 * mag) << set << " " << gguf::ggml_type_name(type) << " n=" << n;
        EXPECT_GT(mag, 0.0);
      }
    }
  }
}

void expect_unsupported(GgmlType type) {
  const std::string name = gguf::ggml_type_name(type);
  EXPECT_FALSE(is_supported(type)) << name;
  float out[256];
  uint8_t buf[512] = {};
  const std::function<void()> calls[] = {
      [&] { dequantize_row(type, buf, out, 256); },
      [&] { vec_dot(type, 256, buf, buf); },
      [&] { matmul(Matrix{type, 256, 1, buf, 256}, out, 1, out); },
  };
  for (const auto& f : calls) {
    try {
      f();
      ADD_FAILURE() << name << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::unsupported);
      EXPECT_EQ(std::string(e.what()), "tensor type " + name + " is not supported yet");
    }
  }
}

// The IQ2, IQ1, IQ3_XXS, ternary and MXFP4 formats are not computed: each is refused with its
// own name.
TEST(IQUnsupported, OtherFormatsAreRefusedByName) {
  EXPECT_TRUE(is_supported(GgmlType::IQ4_NL));
  EXPECT_TRUE(is_supported(GgmlType::IQ4_XS));
  EXPECT_TRUE(is_supported(GgmlType::IQ3_S));
  for (GgmlType t : {GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ1_S,
                     GgmlType::IQ1_M, GgmlType::TQ1_0, GgmlType::TQ2_0, GgmlType::MXFP4})
    expect_unsupported(t);
  EXPECT_EQ(gguf::ggml_type_name(GgmlType::MXFP4), "MXFP4");
  EXPECT_EQ(gguf::ggml_type_name(GgmlType::IQ2_S), "IQ2_S");
}

// quantize_row against llama.cpp's quantizer: ../shared/next/models/tiny-llama-kq-iq4_nl and
// -iq4_xs were made by the peer from tiny-llama-kq-f32; every IQ4_NL / IQ4_XS tensor in them
// is re-quantised here from the F32 source and compared byte for byte.
void expect_quantizes_like_the_peer(const std::string& quantised, GgmlType type) {
  const auto src_path = etna::test::shared_file("next/models/tiny-llama-kq-f32.gguf");
  const auto q_path = etna::test::shared_file("next/models/" + quantised + ".gguf");
  if (src_path.empty() || q_path.empty()) GTEST_SKIP() << "skipped: ../shared/next/models not found";
  auto src = gguf::GgufFile::open(src_path.string());
  auto q = gguf::GgufFile::open(q_path.string());
  size_t tensors = 0, rows = 0, bad_rows = 0;
  for (const auto& t : q->tensors()) {
    if (t.type != type) continue;
    const gguf::TensorInfo* f = src->find_tensor(t.name);
    ASSERT_NE(f, nullptr) << t.name;
    ASSERT_EQ(f->type, GgmlType::F32);
    ASSERT_EQ(f->dims, t.dims);
    const int64_t n = static_cast<int64_t>(t.dims[0]);
    const size_t rb = row_bytes(type, n);
    std::vector<uint8_t> mine(rb);
    ++tensors;
    for (uint64_t r = 0; r < t.rows(); ++r, ++rows) {
      quantize_row(type, reinterpret_cast<const float*>(f->data) + r * n, mine.data(), n);
      if (std::memcmp(mine.data(), t.data + r * rb, rb) != 0) ++bad_rows;
    }
  }
  std::printf("%s: %zu %s tensors, %zu rows, %zu differ\n", quantised.c_str(), tensors,
              gguf::ggml_type_name(type).c_str(), rows, bad_rows);
  EXPECT_GT(tensors, 0u);
  EXPECT_EQ(bad_rows, 0u);
}

TEST(IQQuantize, IQ4NLMatchesThePeerByteForByte) { expect_quantizes_like_the_peer("tiny-llama-kq-iq4_nl", GgmlType::IQ4_NL); }
TEST(IQQuantize, IQ4XSMatchesThePeerByteForByte) { expect_quantizes_like_the_peer("tiny-llama-kq-iq4_xs", GgmlType::IQ4_XS); }

// Round trip: quantising and decoding stays close to the input, zero groups stay zero.
TEST(IQQuantize, RoundTripIsClose) {
  for (GgmlType type : {GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    const int64_t n = 1024;
    auto x = random_floats(static_cast<size_t>(n), 5, -1.0f, 1.0f);
    for (int j = 0; j < 32; ++j) x[64 + j] = 0.0f;
    std::vector<uint8_t> q(row_bytes(type, n));
    quantize_row(type, x.data(), q.data(), n);
    std::vector<float> back(static_cast<size_t>(n));
    dequantize_row(type, q.data(), back.data(), n);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += (back[i] - x[i]) * (back[i] - x[i]);
      norm += x[i] * x[i];
    }
    EXPECT_LT(std::sqrt(err / norm), 0.12) << gguf::ggml_type_name(type);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(back[64 + j], 0.0f);
  }
}

}  // namespace
}  // namespace etna::tensor
