// Every SIMD kernel set this CPU can run against the scalar one: activation quantisers bit for
// bit, dot products within float rounding for every weight type, tiles equal to vec_dot bit
// for bit, and matmul independent of the thread count.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"
#include "support/test_support.h"
#include "unit/tensor/tensor_test_util.h"

namespace etna::tensor {
namespace {

using namespace testing;

// Byte offsets of the fp16 scale fields in a block of each weight type.
struct Layout {
  GgmlType type;
  std::vector<size_t> half_fields;
};

const std::vector<Layout>& weight_layouts() {
  static const std::vector<Layout> l = {
      {GgmlType::F32, {}},        {GgmlType::F16, {}},     {GgmlType::BF16, {}},      {GgmlType::Q4_0, {0}},
      {GgmlType::Q4_1, {0, 2}},   {GgmlType::Q5_0, {0}},   {GgmlType::Q5_1, {0, 2}},  {GgmlType::Q8_0, {0}},
      {GgmlType::Q2_K, {80, 82}}, {GgmlType::Q3_K, {108}}, {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}},
      {GgmlType::Q6_K, {208}},    {GgmlType::IQ4_NL, {0}}, {GgmlType::IQ4_XS, {0}},  {GgmlType::IQ3_S, {0}},
  };
  return l;
}

// Switches the active table for the lifetime of the object.
class UseTable {
 public:
  explicit UseTable(const KernelTable& t) : saved_(active_kernel_table()) { set_active_kernel_table(t); }
  ~UseTable() { set_active_kernel_table(saved_); }

 private:
  const KernelTable& saved_;
};

// The non-scalar sets to check (all this CPU can run).
std::vector<std::string> simd_sets() {
  std::vector<std::string> s;
  for (const auto& n : available_kernel_sets())
    if (n != "scalar") s.push_back(n);
  return s;
}

const TypeKernels& entry(const KernelTable& t, GgmlType type) { return t[static_cast<size_t>(type)]; }

// A random weight row: random bytes with small finite fp16 scales (any bit pattern of the
// integer parts is a valid row), or random floats for the float formats.
std::vector<uint8_t> random_row(const Layout& l, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const TypeKernels& k = entry(scalar_kernel_table(), l.type);
  std::vector<uint8_t> row(static_cast<size_t>(n / k.block_size) * k.block_bytes);
  if (l.type == GgmlType::F32 || l.type == GgmlType::F16 || l.type == GgmlType::BF16) {
    const auto x = random_floats(static_cast<size_t>(n), seed, -2.0f, 2.0f);
    k.quantize(x.data(), row.data(), n);
    return row;
  }
  for (auto& b : row) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (size_t b = 0; b < row.size(); b += k.block_bytes)
    for (size_t off : l.half_fields) put_f16(row, b + off, scale(rng) * (rng() & 1 ? 1.0f : -1.0f));
  return row;
}

// Activations with awkward values mixed in: exact ties after scaling, zeros, repeated extremes
// of both signs, a zero block.
std::vector<float> awkward_floats(size_t n, uint32_t seed) {
  auto x = random_floats(n, seed, -3.0f, 3.0f);
  std::mt19937 rng(seed + 1);
  for (size_t i = 0; i < n; i += 32) {
    switch ((i / 32) % 6) {
      case 0:  // amax 127: x * (1/d) is x, so .5 values are exact ties
        x[i] = 127.0f;
        x[i + 1] = 2.5f;
        x[i + 2] = -3.5f;
        x[i + 3] = 0.5f;
        x[i + 4] = -0.5f;
        break;
      case 1:
        for (size_t j = 0; j < 32 && i + j < n; ++j) x[i + j] = 0.0f;
        break;
      case 2:  // the extreme twice, with both signs: the first one decides the sign
        x[i + 5] = -9.0f;
        x[i + 9] = 9.0f;
        break;
      case 3:
        x[i + 31] = -127.0f;
        x[i + 7] = 63.5f;
        break;
      default:
        break;
    }
  }
  return x;
}

TEST(KernelSets, AvailabilityFollowsTheCpu) {
  const auto& f = base::cpu_features();
  const auto sets = available_kernel_sets();
  ASSERT_FALSE(sets.empty());
  EXPECT_EQ(sets.front(), "scalar");
  EXPECT_EQ(kernel_table_for("avx2") != nullptr, f.avx2 && f.fma && f.f16c);
  EXPECT_EQ(kernel_table_for("avx512") != nullptr, f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl);
  EXPECT_EQ(kernel_table_for("nonsense"), nullptr);
  EXPECT_EQ(kernel_table_name(scalar_kernel_table()), "scalar");
  for (const auto& n : sets) EXPECT_EQ(kernel_table_name(*kernel_table_for(n)), n);
  EXPECT_FALSE(base::cpu_features_string().empty());
  EXPECT_GE(base::physical_core_count(), 1);
  std::printf("CPU: %s; kernel sets:", base::cpu_features_string().c_str());
  for (const auto& n : sets) std::printf(" %s", n.c_str());
  std::printf("; active: %s\n", active_kernels_name().c_str());
}

TEST(KernelSets, ActivationQuantisersAreBitIdentical) {
  const auto& scalar = scalar_kernel_table();
  for (const auto& name : simd_sets()) {
    const KernelTable& simd = *kernel_table_for(name);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16, GgmlType::BF16}) {
      const TypeKernels& s = entry(scalar, t);
      const TypeKernels& v = entry(simd, t);
      for (uint32_t seed = 0; seed < 20; ++seed) {
        const int64_t n = 512 * 3;
        auto x = seed % 2 ? awkward_floats(static_cast<size_t>(n), seed) : random_floats(n, seed, -50.0f, 50.0f);
        if (seed == 4)
          for (auto& e : x) e *= 1e-30f;  // tiny values: subnormal scales
        const size_t bytes = static_cast<size_t>(n / s.block_size) * s.block_bytes;
        std::vector<uint8_t> a(bytes, 0xAB), b(bytes, 0xCD);
        s.quantize(x.data(), a.data(), n);
        v.quantize(x.data(), b.data(), n);
        ASSERT_EQ(a, b) << name << " " << gguf::ggml_type_name(t) << " seed " << seed;
        std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
        s.dequantize(a.data(), da.data(), n);
        v.dequantize(a.data(), db.data(), n);
        ASSERT_EQ(0, std::memcmp(da.data(), db.data(), da.size() * 4)) << name << " " << gguf::ggml_type_name(t);
      }
    }
  }
}

// vec_dot on each SIMD set against the scalar one for the same bytes. Both sum the same
// integer block products; only the order of the float additions differs, so the difference
// is bounded by a few float roundings of the sum of magnitudes of the block terms.
TEST(KernelSets, VecDotMatchesScalarForEveryType) {
  const auto& scalar = scalar_kernel_table();
  for (const auto& name : simd_sets()) {
    const KernelTable& simd = *kernel_table_for(name);
    double worst = 0.0;
    for (const auto& l : weight_layouts()) {
      const TypeKernels& sw = entry(scalar, l.type);
      const TypeKernels& act = entry(scalar, sw.vec_dot_type);
      for (int64_t n : {256, 512, 4096}) {
        for (uint32_t trial = 0; trial < 4; ++trial) {
          const auto w = random_row(l, n, 100 * trial + static_cast<uint32_t>(n) + static_cast<uint32_t>(l.type));
          const auto x = trial == 3 ? awkward_floats(static_cast<size_t>(n), trial)
                                    : random_floats(static_cast<size_t>(n), 7 + trial, -2.0f, 2.0f);
          std::vector<uint8_t> a(static_cast<size_t>(n / act.block_size) * act.block_bytes);
          act.quantize(x.data(), a.data(), n);
          const float want = sw.vec_dot(n, w.data(), a.data());
          const float got = entry(simd, l.type).vec_dot(n, w.data(), a.data());
          // Magnitude: the dot of absolute decoded values.
          std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
          sw.dequantize(w.data(), wf.data(), n);
          act.dequantize(a.data(), af.data(), n);
          double mag = 0.0;
          for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(wf[i]) * af[i]);
          const double bound = 1e-6 * mag + 1e-30;
          worst = std::max(worst, std::fabs(got - want) / (mag + 1e-30));
          ASSERT_NEAR(got, want, bound) << name << " " << gguf::ggml_type_name(l.type) << " n=" << n << " trial "
                                        << trial;
          ASSERT_TRUE(std::isfinite(got));
        }
      }
    }
    std::printf("%s: worst |simd - scalar| / sum|w*a| = %.3g\n", name.c_str(), worst);
  }
}

// Every tile shape gives exactly vec_dot for each (row, token) pair.
TEST(KernelSets, TilesEqualVecDotBitForBit) {
  for (const auto& name : simd_sets()) {
    const KernelTable& simd = *kernel_table_for(name);
    for (const auto& l : weight_layouts()) {
      const TypeKernels& k = entry(simd, l.type);
      ASSERT_NE(k.tile, nullptr) << name << " " << gguf::ggml_type_name(l.type);
      const TypeKernels& act = entry(simd, k.vec_dot_type);
      const int64_t n = l.type == GgmlType::F32 ? 264 : 512;  // F32: a tail after the 16-wide steps
      const size_t pad = 8;
      const size_t wrb = static_cast<size_t>(n / k.block_size) * k.block_bytes + pad;
      const size_t arb = static_cast<size_t>(n / act.block_size) * act.block_bytes + pad;
      std::vector<uint8_t> w(wrb * kTileRows), a(arb * kTileTokens);
      for (int r = 0; r < kTileRows; ++r) {
        const auto row = random_row(l, n, 31 * r + static_cast<uint32_t>(l.type));
        std::memcpy(w.data() + r * wrb, row.data(), row.size());
      }
      for (int t = 0; t < kTileTokens; ++t) {
        const auto x = random_floats(static_cast<size_t>(n), 50 + t, -1.0f, 1.0f);
        act.quantize(x.data(), a.data() + t * arb, n);
      }
      for (int nr = 1; nr <= kTileRows; ++nr) {
        for (int nt = 1; nt <= kTileTokens; ++nt) {
          const size_t ys = kTileRows + 3;  // a stride wider than the tile, to catch stray writes
          std::vector<float> y(ys * kTileTokens, NAN);
          k.tile(n, w.data(), wrb, a.data(), arb, y.data(), ys, nr, nt);
          for (int t = 0; t < kTileTokens; ++t)
            for (int r = 0; r < static_cast<int>(ys); ++r) {
              const float got = y[t * ys + r];
              if (t < nt && r < nr) {
                const float want = k.vec_dot(n, w.data() + r * wrb, a.data() + t * arb);
                ASSERT_EQ(got, want) << name << " " << gguf::ggml_type_name(l.type) << " tile " << nr << "x" << nt
                                     << " r=" << r << " t=" << t;
              } else {
                ASSERT_TRUE(std::isnan(got)) << "tile wrote outside its rows/tokens";
              }
            }
        }
      }
    }
  }
}

// matmul on each set: values equal vec_dot of that set, and are bitwise the same for 1, 2 and
// 3 threads and for a token count that is not a multiple of the tile.
TEST(KernelSets, MatmulIsIndependentOfThreadCount) {
  const int saved_threads = num_threads();
  for (const auto& name : available_kernel_sets()) {
    UseTable use(*kernel_table_for(name));
    for (const auto& l : weight_layouts()) {
      const int64_t cols = 512, rows = 37;
      const size_t rb = row_bytes(l.type, cols) + 4;
      std::vector<uint8_t> data(rb * rows);
      for (int64_t r = 0; r < rows; ++r) {
        const auto row = random_row(l, cols, 7 * static_cast<uint32_t>(r) + 3);
        std::memcpy(data.data() + r * rb, row.data(), row.size());
      }
      const Matrix w{l.type, cols, rows, data.data(), rb};
      for (int64_t tokens : {1, 6}) {
        const auto x = random_floats(static_cast<size_t>(tokens * cols), 9, -1.0f, 1.0f);
        std::vector<float> ref;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<float> y(static_cast<size_t>(tokens * rows), NAN);
          matmul(w, x.data(), tokens, y.data());
          if (ref.empty()) {
            ref = y;
            const GgmlType at = vec_dot_type(l.type);
            std::vector<uint8_t> a(row_bytes(at, cols));
            for (int64_t t = 0; t < tokens; ++t) {
              quantize_row(at, x.data() + t * cols, a.data(), cols);
              for (int64_t r = 0; r < rows; ++r)
                ASSERT_EQ(y[t * rows + r], vec_dot(l.type, cols, data.data() + r * rb, a.data()))
                    << name << " " << gguf::ggml_type_name(l.type) << " t=" << t << " r=" << r;
            }
          } else {
            ASSERT_EQ(0, std::memcmp(ref.data(), y.data(), y.size() * 4))
                << name << " " << gguf::ggml_type_name(l.type) << " threads " << threads;
          }
        }
      }
    }
  }
  set_num_threads(saved_threads);
}

// A large matmul really is split across the pool (and still matches a single thread), and
// concurrent callers from several threads each get their own correct result.
TEST(KernelSets, ConcurrentMatmulsFromSeveralThreads) {
  const int saved_threads = num_threads();
  set_num_threads(2);
  const int64_t cols = 1024, rows = 256, tokens = 3;
  const Layout l{GgmlType::Q4_0, {0}};
  std::vector<uint8_t> data;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = random_row(l, cols, static_cast<uint32_t>(r));
    data.insert(data.end(), row.begin(), row.end());
  }
  const Matrix w{l.type, cols, rows, data.data(), row_bytes(l.type, cols)};
  std::vector<std::vector<float>> xs, want;
  for (int c = 0; c < 4; ++c) {
    xs.push_back(random_floats(static_cast<size_t>(tokens * cols), 100 + c));
    want.emplace_back(static_cast<size_t>(tokens * rows));
    matmul(w, xs[c].data(), tokens, want[c].data());
  }
  std::vector<std::thread> callers;
  std::vector<int> bad(4, 0);
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<float> y(static_cast<size_t>(tokens * rows));
        matmul(w, xs[c].data(), tokens, y.data());
        if (std::memcmp(y.data(), want[c].data(), y.size() * 4) != 0) ++bad[c];
      }
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < 4; ++c) EXPECT_EQ(bad[c], 0) << "caller " << c;
  set_num_threads(saved_threads);
}

TEST(KernelSets, ActiveNameAndThreads) {
  EXPECT_FALSE(active_kernels_name().empty());
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), base::physical_core_count());
}

// A matrix of `rows` random rows of `l`'s type, `cols` elements each, back to back.
std::vector<uint8_t> random_matrix(const Layout& l, int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<uint8_t> data;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = random_row(l, cols, seed + 13 * static_cast<uint32_t>(r));
    data.insert(data.end(), row.begin(), row.end());
  }
  return data;
}

const std::vector<Layout>& packable_layouts() {
  static const std::vector<Layout> l = {{GgmlType::Q4_0, {0}},     {GgmlType::Q8_0, {0}},    {GgmlType::Q2_K, {80, 82}},
                                        {GgmlType::Q3_K, {108}},    {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}},
                                        {GgmlType::Q6_K, {208}}};
  return l;
}

// repack_rows moves bytes only: unpack_group restores every group exactly, and matrices it
// cannot handle (row count, type, padding, no packed kernel) are refused.
TEST(Repack, RoundTripsAndRefusesWhatItCannotPack) {
  for (const auto& name : simd_sets()) {
    UseTable use(*kernel_table_for(name));
    for (const auto& l : packable_layouts()) {
      const int64_t rows = 24, cols = 512;  // 2 super-blocks: one would leave a K-quant group as it was
      auto data = random_matrix(l, rows, cols, 5);
      const auto original = data;
      Matrix w{l.type, cols, rows, data.data(), row_bytes(l.type, cols)};
      ASSERT_TRUE(can_repack(w));
      repack_rows(w, data.data());
      EXPECT_TRUE(w.interleaved);
      EXPECT_NE(data, original);
      EXPECT_FALSE(can_repack(w));  // already interleaved
      std::vector<uint8_t> back(data.size());
      for (int64_t g = 0; g < rows / kPackRows; ++g)
        unpack_group(w, g, back.data() + static_cast<size_t>(g) * kPackRows * w.row_bytes);
      EXPECT_EQ(back, original) << name << " " << gguf::ggml_type_name(l.type);

      Matrix odd{l.type, cols, rows - 1, data.data(), w.row_bytes};
      EXPECT_FALSE(can_repack(odd));
      Matrix padded{l.type, cols, 8, data.data(), w.row_bytes + 4};
      EXPECT_FALSE(can_repack(padded));
    }
    std::vector<uint8_t> k(row_bytes(GgmlType::Q5_0, 256) * 8);
    EXPECT_FALSE(can_repack(Matrix{GgmlType::Q5_0, 256, 8, k.data(), row_bytes(GgmlType::Q5_0, 256)}));
  }
  UseTable scalar(scalar_kernel_table());
  std::vector<uint8_t> d(row_bytes(GgmlType::Q4_0, 256) * 8);
  EXPECT_FALSE(can_repack(Matrix{GgmlType::Q4_0, 256, 8, d.data(), row_bytes(GgmlType::Q4_0, 256)}))
      << "the scalar set has no packed kernels";
}

// Every packed tile (8 interleaved rows x 1..4 tokens) equals vec_dot on the original rows bit
// for bit, random bytes included (Q8_0 weights of -128, all nibble values).
TEST(Repack, PackedTilesEqualVecDotBitForBit) {
  for (const auto& name : simd_sets()) {
    const KernelTable& simd = *kernel_table_for(name);
    UseTable use(simd);
    for (const auto& l : packable_layouts()) {
      const TypeKernels& k = entry(simd, l.type);
      ASSERT_NE(k.packed_tile, nullptr) << name;
      const TypeKernels& act = entry(simd, k.vec_dot_type);
      for (int64_t n : {32, 512, 2048}) {
        if (n % k.block_size != 0) continue;  // K-quants: 256-element super-blocks
        auto data = random_matrix(l, kPackRows, n, 77 + static_cast<uint32_t>(n));
        const auto original = data;
        Matrix w{l.type, n, kPackRows, data.data(), row_bytes(l.type, n)};
        repack_rows(w, data.data());
        const size_t arb = row_bytes(k.vec_dot_type, n);
        std::vector<uint8_t> a(arb * kTileTokens);
        for (int t = 0; t < kTileTokens; ++t) {
          const auto x = t == 3 ? awkward_floats(static_cast<size_t>(n), 3) : random_floats(static_cast<size_t>(n), 60 + t, -1.0f, 1.0f);
          act.quantize(x.data(), a.data() + t * arb, n);
        }
        for (int nt = 1; nt <= kTileTokens; ++nt) {
          const size_t ys = kPackRows + 3;
          std::vector<float> y(ys * kTileTokens, NAN);
          k.packed_tile(n, data.data(), a.data(), arb, y.data(), ys, kPackRows, nt);
          for (int t = 0; t < kTileTokens; ++t)
            for (int r = 0; r < static_cast<int>(ys); ++r) {
              const float got = y[t * ys + r];
              if (t < nt && r < kPackRows) {
                const float want = k.vec_dot(n, original.data() + r * w.row_bytes, a.data() + t * arb);
                ASSERT_EQ(got, want) << name << " " << gguf::ggml_type_name(l.type) << " n=" << n << " nt=" << nt
                                     << " r=" << r << " t=" << t;
              } else {
                ASSERT_TRUE(std::isnan(got)) << "packed tile wrote outside its rows/tokens";
              }
            }
        }
      }
    }
  }
}

// The AVX-512 sets' 16-row tiles (two neighbouring groups in one register) equal vec_dot on
// the original rows bit for bit, for every token count, and write nothing else.
TEST(Repack, SixteenRowTilesEqualVecDotBitForBit) {
  int tested = 0;
  for (const auto& name : simd_sets()) {
    const KernelTable& simd = *kernel_table_for(name);
    UseTable use(simd);
    for (const auto& l : packable_layouts()) {
      const TypeKernels& k = entry(simd, l.type);
      if (k.packed_tile16 == nullptr) continue;
      ++tested;
      const TypeKernels& act = entry(simd, k.vec_dot_type);
      for (int64_t n : {32, 512, 2048}) {
        if (n % k.block_size != 0) continue;  // K-quants: 256-element super-blocks
        constexpr int kRows = 2 * kPackRows;
        auto data = random_matrix(l, kRows, n, 91 + static_cast<uint32_t>(n));
        const auto original = data;
        Matrix w{l.type, n, kRows, data.data(), row_bytes(l.type, n)};
        repack_rows(w, data.data());
        const size_t arb = row_bytes(k.vec_dot_type, n);
        constexpr int kT = kPackedTile16Tokens;
        std::vector<uint8_t> a(arb * kT);
        for (int t = 0; t < kT; ++t) {
          const auto x = t == 5 ? awkward_floats(static_cast<size_t>(n), 3) : random_floats(static_cast<size_t>(n), 70 + t, -1.0f, 1.0f);
          act.quantize(x.data(), a.data() + t * arb, n);
        }
        const uint8_t* g0 = data.data();
        const uint8_t* g1 = g0 + kPackRows * w.row_bytes;
        for (int nt = 1; nt <= kT; ++nt) {
          const size_t ys = kRows + 5;
          std::vector<float> y(ys * kT, NAN);
          k.packed_tile16(n, g0, g1, a.data(), arb, y.data(), ys, nt);
          for (int t = 0; t < kT; ++t)
            for (int r = 0; r < static_cast<int>(ys); ++r) {
              const float got = y[t * ys + r];
              if (t < nt && r < kRows) {
                const float want = k.vec_dot(n, original.data() + r * w.row_bytes, a.data() + t * arb);
                ASSERT_EQ(got, want) << name << " " << gguf::ggml_type_name(l.type) << " n=" << n << " nt=" << nt
                                     << " r=" << r << " t=" << t;
              } else {
                ASSERT_TRUE(std::isnan(got)) << "16-row tile wrote outside its rows/tokens";
              }
            }
        }
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "no kernel set with 16-row tiles on this CPU (they need AVX-512 F/BW/VL)";
}

// matmul on a repacked matrix equals matmul on the original bit for bit, under every kernel
// set (one without packed kernels restores each group first) and thread count.
TEST(Repack, MatmulOnRepackedEqualsOriginal) {
  const int saved_threads = num_threads();
  const auto sets = simd_sets();
  if (sets.empty()) GTEST_SKIP() << "no SIMD kernel set on this CPU";
  for (const auto& l : packable_layouts()) {
    const int64_t rows = 40, cols = 512;
    auto data = random_matrix(l, rows, cols, 11);
    const auto original = data;
    const Matrix plain{l.type, cols, rows, original.data(), row_bytes(l.type, cols)};
    Matrix packed = plain;
    packed.data = data.data();
    {
      UseTable use(*kernel_table_for(sets.back()));
      repack_rows(packed, data.data());
    }
    for (const auto& name : available_kernel_sets()) {
      UseTable use(*kernel_table_for(name));
      for (int64_t tokens : {1, 5, 9}) {
        const auto x = random_floats(static_cast<size_t>(tokens * cols), 21, -1.0f, 1.0f);
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          std::vector<float> want(static_cast<size_t>(tokens * rows), NAN), got(want.size(), NAN);
          matmul(plain, x.data(), tokens, want.data());
          matmul(packed, x.data(), tokens, got.data());
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4))
              << name << " " << gguf::ggml_type_name(l.type) << " tokens " << tokens << " threads " << threads;
        }
      }
    }
  }
  set_num_threads(saved_threads);
}

// The peak loop does what it counts: the checksum is multiply-adds x the two operands.
TEST(KernelSets, Int8PeakLoopCountsItsWork) {
  EXPECT_EQ(int8_peak_kernel("scalar"), nullptr);
  EXPECT_EQ(int8_peak_kernel("nonsense"), nullptr);
  for (const auto& name : simd_sets()) {
    Int8PeakFn fn = int8_peak_kernel(name);
    ASSERT_NE(fn, nullptr) << name;
    int32_t sink[3] = {1, 3, 0};
    const int64_t madds = fn(1000, sink);
    EXPECT_GT(madds, 0);
    EXPECT_EQ(static_cast<int64_t>(sink[2]), madds * 1 * 3) << name;
  }
}

// ETNA_KERNELS is read once per process: check it in child processes of the etna binary.
TEST(KernelSets, EnvironmentVariableSelectsOrRefuses) {
  const std::string bin = ETNA_BINARY;
  if (!std::filesystem::exists(bin)) GTEST_SKIP() << "skipped: " << bin << " not built";
  std::string out;
  ASSERT_EQ(0, etna::test::run_command("ETNA_KERNELS=scalar '" + bin + "' info --cpu", &out, true)) << out;
  EXPECT_NE(out.find("scalar"), std::string::npos) << out;
  EXPECT_NE(etna::test::run_command("ETNA_KERNELS=bogus '" + bin + "' info --cpu", &out, true), 0);
  EXPECT_NE(out.find("ETNA_KERNELS=bogus"), std::string::npos) << out;
  if (!kernel_table_for("avx512")) {
    EXPECT_NE(etna::test::run_command("ETNA_KERNELS=avx512 '" + bin + "' info --cpu", &out, true), 0);
    EXPECT_NE(out.find("cannot run"), std::string::npos) << out;
  }
}

// The attention's weighted sum of V rows: every set's axpy against the scalar one (a fused
// multiply-add may round once where the scalar kernel rounds twice), for F32 and F16 rows, odd
// lengths included; other types have none.
TEST(KernelSets, AxpyMatchesScalar) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const KernelTable& scalar = scalar_kernel_table();
  for (const std::string& set : available_kernel_sets()) {
    const KernelTable& t = *kernel_table_for(set);
    for (GgmlType type : {GgmlType::F32, GgmlType::F16}) {
      const auto k = static_cast<size_t>(type);
      ASSERT_NE(t[k].axpy, nullptr) << set;
      for (int n : {1, 7, 8, 64, 131}) {
        std::vector<float> x(n), y0(n), y1, decoded(n);
        for (auto& v : x) v = nd(rng);
        for (auto& v : y0) v = nd(rng);
        std::vector<uint8_t> row(n * 4);
        scalar[k].quantize(x.data(), row.data(), n);
        scalar[k].dequantize(row.data(), decoded.data(), n);
        y1 = y0;
        std::vector<float> want = y0;
        const float a = 0.37f;
        scalar[k].axpy(n, a, row.data(), want.data());
        t[k].axpy(n, a, row.data(), y1.data());
        for (int i = 0; i < n; ++i) {
          EXPECT_FLOAT_EQ(want[i], y0[i] + a * decoded[i]) << set << " n=" << n << " i=" << i;
          EXPECT_NEAR(y1[i], want[i], 1e-6f * (1 + std::fabs(want[i]))) << set << " n=" << n << " i=" << i;
        }
      }
    }
    EXPECT_EQ(t[static_cast<size_t>(GgmlType::Q8_0)].axpy, nullptr) << set;
  }
}

// Attention's F32 block product: every set's gemm against the scalar one (which sums each
// element in k order, one multiply-add at a time) over shapes with row and column tails, strided
// operands (a read transposed too) and accumulation into c; the scalar one against doubles.
TEST(KernelSets, GemmMatchesScalar) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const auto f32 = static_cast<size_t>(GgmlType::F32);
  const GemmFn scalar = scalar_kernel_table()[f32].gemm;
  ASSERT_NE(scalar, nullptr);
  for (const std::string& set : available_kernel_sets()) {
    const GemmFn gemm = kernel_table_for(set)->at(f32).gemm;
    ASSERT_NE(gemm, nullptr) << set;
    for (int m : {1, 5, 6, 7, 13, 64})
      for (int n : {1, 7, 8, 15, 16, 17, 64, 65, 100})
        for (int k : {0, 1, 3, 64, 70})
          for (bool transposed : {false, true})
            for (bool accumulate : {false, true}) {
              // a is m x k: row-major (rsa = k + 2) or read transposed (csa = m + 1).
              const size_t rsa = transposed ? 1 : k + 2, csa = transposed ? m + 1 : 1;
              const size_t ldb = n + 3, ldc = n + 1;
              std::vector<float> a(static_cast<size_t>(std::max(m, 1)) * (k + 2) + static_cast<size_t>(k) * (m + 1) + 1),
                  b(static_cast<size_t>(k) * ldb + 1), c0(static_cast<size_t>(m) * ldc);
              for (auto& v : a) v = nd(rng);
              for (auto& v : b) v = nd(rng);
              for (auto& v : c0) v = nd(rng);
              std::vector<float> want = c0, got = c0;
              scalar(m, n, k, a.data(), rsa, csa, b.data(), ldb, want.data(), ldc, accumulate);
              gemm(m, n, k, a.data(), rsa, csa, b.data(), ldb, got.data(), ldc, accumulate);
              for (int i = 0; i < m; ++i)
                for (size_t j = 0; j < ldc; ++j) {
                  const size_t at = i * ldc + j;
                  if (j >= static_cast<size_t>(n)) {  // past the n columns: untouched
                    EXPECT_EQ(got[at], c0[at]) << set;
                    EXPECT_EQ(want[at], c0[at]);
                    continue;
                  }
                  double exact = accumulate ? c0[at] : 0.0, mag = std::fabs(exact);
                  for (int p = 0; p < k; ++p) {
                    const double t = static_cast<double>(a[i * rsa + p * csa]) * b[p * ldb + j];
                    exact += t;
                    mag += std::fabs(t);
                  }
                  EXPECT_NEAR(want[at], exact, 1e-6 * (1 + mag)) << "scalar m=" << m << " n=" << n << " k=" << k;
                  EXPECT_NEAR(got[at], want[at], 1e-6 * (1 + mag))
                      << set << " m=" << m << " n=" << n << " k=" << k << " i=" << i << " j=" << j;
                }
            }
  }
}

}  // namespace
}  // namespace etna::tensor
