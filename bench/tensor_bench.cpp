// Tensor kernel throughput per kernel set (scalar, avx2, avx512 where the CPU has them):
//   vec_dot/<set>/<type>      one 4096-element row from cache, GB/s of weight bytes
//   decode/<set>/<type>       matmul, 1 token, ~128 MiB of weights (memory-bound), GB/s
//   prefill<N>/<set>/<type>   matmul, N = 32 and 128 tokens, 2048 x 2048 weights, GFLOP/s
// with a streaming-read bandwidth baseline measured in the same run, then a summary: decode
// as a fraction of that bandwidth and every set's speed-up over scalar. Threads: the tensor
// default (physical cores) unless ETNA_BENCH_THREADS is set. Narrow with --benchmark_filter.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "etna/base/bandwidth.h"
#include "etna/base/cpu_features.h"
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

// `rows` rows of `cols` elements: 16 distinct random rows repeated (quantised from floats
// where Etna can quantise to the type, else random bytes with small positive fp16 halves).
std::vector<uint8_t> random_rows(GgmlType type, int64_t rows, int64_t cols) {
  const size_t rb = tensor::row_bytes(type, cols);
  const int64_t distinct = std::min<int64_t>(rows, 16);
  std::vector<uint8_t> data(rb * static_cast<size_t>(rows));
  const auto& k = tensor::scalar_kernel_table()[static_cast<size_t>(type)];
  for (int64_t r = 0; r < distinct; ++r) {
    if (k.quantize) {
      const auto x = random_floats(static_cast<size_t>(cols), static_cast<uint32_t>(r) + 1);
      k.quantize(x.data(), data.data() + r * rb, cols);
    } else {
      std::mt19937 rng(static_cast<uint32_t>(r) + 2);
      for (size_t i = 0; i + 1 < rb; i += 2) {
        const uint16_t h = static_cast<uint16_t>(0x1000 | (rng() & 0x0FFF));
        std::memcpy(&data[r * rb + i], &h, 2);
      }
    }
  }
  for (int64_t r = distinct; r < rows; ++r) std::memcpy(&data[r * rb], &data[(r % distinct) * rb], rb);
  return data;
}

const std::vector<GgmlType> kDotTypes = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                                         GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K,
                                         GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
const std::vector<GgmlType> kMatmulTypes = {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K,
                                            GgmlType::Q5_K, GgmlType::Q6_K};

void bench_vec_dot(benchmark::State& state, const tensor::KernelTable* table, GgmlType type) {
  constexpr int64_t kCols = 4096;
  tensor::set_active_kernel_table(*table);
  const auto w = random_rows(type, 1, kCols);
  const auto x = random_floats(kCols, 3);
  const GgmlType at = tensor::vec_dot_type(type);
  std::vector<uint8_t> a(tensor::row_bytes(at, kCols));
  tensor::quantize_row(at, x.data(), a.data(), kCols);
  for (auto _ : state) benchmark::DoNotOptimize(tensor::vec_dot(type, kCols, w.data(), a.data()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

void bench_matmul(benchmark::State& state, const tensor::KernelTable* table, GgmlType type, int64_t rows,
                  int64_t cols, int64_t tokens) {
  tensor::set_active_kernel_table(*table);
  const auto w = random_rows(type, rows, cols);
  const auto x = random_floats(static_cast<size_t>(tokens * cols), 4);
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  const tensor::Matrix m{type, cols, rows, w.data(), tensor::row_bytes(type, cols)};
  for (auto _ : state) {
    tensor::matmul(m, x.data(), tokens, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * rows * cols * tokens * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// Keeps every run's rates for the summary.
class Collector : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> gbps, gflops;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      const std::string name = r.run_name.function_name;
      auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) gbps[name] = it->second.value / 1e9;
      auto g = r.counters.find("GFLOP/s");
      if (g != r.counters.end()) gflops[name] = g->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (const char* t = std::getenv("ETNA_BENCH_THREADS")) tensor::set_num_threads(std::atoi(t));
  const std::vector<std::string> sets = tensor::available_kernel_sets();
  std::printf("CPU: %s; threads: %d; kernel sets:", etna::base::cpu_features_string().c_str(), tensor::num_threads());
  for (const auto& s : sets) std::printf(" %s", s.c_str());
  std::printf("\n");

  for (const auto& s : sets) {
    const tensor::KernelTable* table = tensor::kernel_table_for(s);
    for (GgmlType t : kDotTypes) {
      const std::string name = "vec_dot/" + s + "/" + etna::gguf::ggml_type_name(t);
      benchmark::RegisterBenchmark(name.c_str(), bench_vec_dot, table, t)->MinTime(0.05);
    }
    for (GgmlType t : kMatmulTypes) {
      const std::string tn = etna::gguf::ggml_type_name(t);
      const int64_t cols = 4096;
      const int64_t rows = static_cast<int64_t>((size_t{128} << 20) / tensor::row_bytes(t, cols));
      benchmark::RegisterBenchmark(("decode/" + s + "/" + tn).c_str(), bench_matmul, table, t, rows, cols, 1)
          ->MinTime(0.3)
          ->Unit(benchmark::kMillisecond);
      for (int64_t tokens : {32, 128}) {
        if (s == "scalar" && tokens == 128) continue;  // slow and says nothing new
        benchmark::RegisterBenchmark(("prefill" + std::to_string(tokens) + "/" + s + "/" + tn).c_str(), bench_matmul,
                                     table, t, 2048, 2048, tokens)
            ->MinTime(0.2)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  const auto bw = etna::measure_read_bandwidth(tensor::num_threads(), size_t{1} << 30, 3);
  std::printf("memory read bandwidth (%d threads, 1 GiB): best %.1f GB/s, median %.1f GB/s\n", bw.threads,
              bw.best_gbps, bw.median_gbps);
  Collector rep;
  benchmark::RunSpecifiedBenchmarks(&rep);

  std::printf("\nsummary (bandwidth baseline %.1f GB/s):\n", bw.best_gbps);
  for (const auto& [name, g] : rep.gbps) {
    if (name.rfind("decode/", 0) != 0) continue;
    std::printf("  %-28s %6.1f GB/s = %.2f of bandwidth\n", name.c_str(), g, g / bw.best_gbps);
  }
  for (const auto& [name, v] : rep.gflops) {
    if (name.rfind("prefill", 0) != 0) continue;
    const auto slash = name.find('/'), slash2 = name.find('/', slash + 1);
    const std::string scalar = name.substr(0, slash) + "/scalar" + name.substr(slash2);
    auto it = rep.gflops.find(scalar);
    if (it != rep.gflops.end() && it->second > 0)
      std::printf("  %-28s %7.1f GFLOP/s (%.1fx scalar)\n", name.c_str(), v, v / it->second);
    else
      std::printf("  %-28s %7.1f GFLOP/s\n", name.c_str(), v);
  }
  for (const auto& [name, g] : rep.gbps) {
    if (name.rfind("vec_dot/", 0) != 0 || name.find("/scalar/") != std::string::npos) continue;
    const auto slash = name.find('/'), slash2 = name.find('/', slash + 1);
    auto it = rep.gbps.find("vec_dot/scalar" + name.substr(slash2));
    if (it != rep.gbps.end() && it->second > 0)
      std::printf("  %-28s %6.1f GB/s (%.1fx scalar)\n", name.c_str(), g, g / it->second);
  }
  benchmark::Shutdown();
  return 0;
}
