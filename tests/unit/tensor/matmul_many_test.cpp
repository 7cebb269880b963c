// tensor::matmul_many: several matrices on the same input in one dispatch give each matrix's
// matmul bit for bit, whatever their mix of types, widths, layouts and row counts.
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tensor/tensor.h"

namespace etna::tensor {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct Owned {
  std::vector<uint8_t> data;
  Matrix m;
};

Owned make(GgmlType type, int64_t rows, int64_t cols, uint32_t seed, bool repack) {
  Owned o;
  const size_t rb = row_bytes(type, cols);
  o.data.resize(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const auto x = random_floats(static_cast<size_t>(cols), seed + static_cast<uint32_t>(r));
    quantize_row(type, x.data(), o.data.data() + r * rb, cols);
  }
  o.m = Matrix{type, cols, rows, o.data.data(), rb};
  if (repack && can_repack(o.m)) repack_rows(o.m, o.data.data());
  return o;
}

TEST(MatmulMany, EqualsOneMatmulPerMatrix) {
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n_tokens : {1, 3, 9}) {
      const int64_t cols = 512;
      std::vector<Owned> ws;
      ws.push_back(make(GgmlType::Q4_0, 256, cols, 1, true));
      ws.push_back(make(GgmlType::Q8_0, 72, cols, 2, false));
      ws.push_back(make(GgmlType::Q4_0, 40, cols, 3, true));
      ws.push_back(make(GgmlType::F32, 24, cols, 4, false));
      ws.push_back(make(GgmlType::Q8_0, 0, cols, 5, false));  // nothing to compute
      ws.push_back(make(GgmlType::Q8_0, 136, cols, 6, true));
      const auto x = random_floats(static_cast<size_t>(cols * n_tokens), 99);
      std::vector<std::vector<float>> want(ws.size()), got(ws.size());
      std::vector<MatmulOut> outs;
      for (size_t i = 0; i < ws.size(); ++i) {
        want[i].assign(static_cast<size_t>(ws[i].m.rows * n_tokens), 0.0f);
        got[i].assign(want[i].size(), -1.0f);
        matmul(ws[i].m, x.data(), n_tokens, want[i].data());
        outs.push_back({&ws[i].m, got[i].data()});
      }
      matmul_many(outs.data(), static_cast<int>(outs.size()), x.data(), n_tokens);
      for (size_t i = 0; i < ws.size(); ++i)
        EXPECT_EQ(0, std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)))
            << "matrix " << i << " threads " << threads << " tokens " << n_tokens;
    }
  }
  set_num_threads(saved);
}

TEST(MatmulMany, RefusesABadMatrixBeforeComputingAny) {
  std::vector<uint8_t> d(row_bytes(GgmlType::Q8_0, 64) * 8, 0);
  std::vector<float> x(64, 1.0f), y0(8, 7.0f), y1(8, 7.0f);
  const Matrix good{GgmlType::Q8_0, 64, 8, d.data(), row_bytes(GgmlType::Q8_0, 64)};
  const Matrix bad{GgmlType::Q8_0, 64, 8, d.data(), 4};  // rows shorter than their blocks
  const MatmulOut outs[2] = {{&good, y0.data()}, {&bad, y1.data()}};
  EXPECT_THROW(matmul_many(outs, 2, x.data(), 1), Error);
  EXPECT_EQ(y0[0], 7.0f);
}

}  // namespace
}  // namespace etna::tensor
