// Tensor kernel throughput: vec_dot in GB/s of weight bytes per type (with dequantise-then-
// F32-dot as the in-run baseline it should beat), and matmul GFLOP/s for a 4096 x 4096 weight
// with 1 and 32 tokens. Short by design: run with --benchmark_filter to narrow it.
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"

namespace {

using etna::gguf::GgmlType;
namespace tensor = etna::tensor;

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// `rows` rows of `cols` elements of `type`: quantised from random floats where Etna can
// quantise to the type, else random bytes with small finite fp16 scales in every half word.
std::vector<uint8_t> random_rows(GgmlType type, int64_t rows, int64_t cols) {
  const size_t rb = tensor::row_bytes(type, cols);
  std::vector<uint8_t> data(rb * static_cast<size_t>(rows));
  if (tensor::find_kernels(type)->quantize) {
    const auto x = random_floats(static_cast<size_t>(cols), 1);
    for (int64_t r = 0; r < rows; ++r) tensor::quantize_row(type, x.data(), data.data() + r * rb, cols);
  } else {
    std::mt19937 rng(2);
    for (size_t i = 0; i + 1 < data.size(); i += 2) {
      const uint16_t h = static_cast<uint16_t>(0x1000 | (rng() & 0x0FFF));  // a small positive half
      std::memcpy(&data[i], &h, 2);
    }
  }
  return data;
}

constexpr int64_t kCols = 4096;

void BM_vec_dot(benchmark::State& state, GgmlType type) {
  const auto w = random_rows(type, 1, kCols);
  const auto x = random_floats(kCols, 3);
  const GgmlType at = tensor::vec_dot_type(type);
  std::vector<uint8_t> a(tensor::row_bytes(at, kCols));
  tensor::quantize_row(at, x.data(), a.data(), kCols);
  for (auto _ : state) benchmark::DoNotOptimize(tensor::vec_dot(type, kCols, w.data(), a.data()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// Baseline: decode the weight row to floats, then an F32 dot.
void BM_dequantize_then_dot(benchmark::State& state, GgmlType type) {
  const auto w = random_rows(type, 1, kCols);
  const auto x = random_floats(kCols, 3);
  std::vector<float> wf(kCols);
  for (auto _ : state) {
    tensor::dequantize_row(type, w.data(), wf.data(), kCols);
    benchmark::DoNotOptimize(tensor::vec_dot(GgmlType::F32, kCols, wf.data(), x.data()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

void BM_matmul(benchmark::State& state, GgmlType type) {
  const int64_t rows = 4096, tokens = state.range(0);
  const auto w = random_rows(type, rows, kCols);
  const auto x = random_floats(static_cast<size_t>(tokens * kCols), 4);
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  const tensor::Matrix m{type, kCols, rows, w.data(), tensor::row_bytes(type, kCols)};
  for (auto _ : state) {
    tensor::matmul(m, x.data(), tokens, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * kCols * tokens * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

#define ETNA_VEC_DOT(T)                                                    \
  BENCHMARK_CAPTURE(BM_vec_dot, T, GgmlType::T)->MinTime(0.05);             \
  BENCHMARK_CAPTURE(BM_dequantize_then_dot, T, GgmlType::T)->MinTime(0.05)

ETNA_VEC_DOT(F32);
ETNA_VEC_DOT(F16);
ETNA_VEC_DOT(BF16);
ETNA_VEC_DOT(Q8_0);
ETNA_VEC_DOT(Q4_0);
ETNA_VEC_DOT(Q4_1);
ETNA_VEC_DOT(Q5_0);
ETNA_VEC_DOT(Q5_1);
ETNA_VEC_DOT(Q2_K);
ETNA_VEC_DOT(Q3_K);
ETNA_VEC_DOT(Q4_K);
ETNA_VEC_DOT(Q5_K);
ETNA_VEC_DOT(Q6_K);

#define ETNA_MATMUL(T)                                                                                    \
  BENCHMARK_CAPTURE(BM_matmul, T, GgmlType::T)->Arg(1)->Arg(32)->Iterations(1)->Unit(benchmark::kMillisecond)

ETNA_MATMUL(F32);
ETNA_MATMUL(Q8_0);
ETNA_MATMUL(Q4_0);
ETNA_MATMUL(Q4_K);

}  // namespace

BENCHMARK_MAIN();
