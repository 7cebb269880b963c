// Throughput of one model, in the manner of llama-bench: prompt processing (a prompt of random
// token ids evaluated in one batch) and generation (tokens evaluated one at a time), each timed
// over several repetitions after one warm-up, with the memory roofline measured in the same run:
// generation reads every weight once per token, so tg_tps * bytes_per_token cannot exceed the
// machine's read bandwidth.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "etna/engine/memory.h"
#include "etna/model/model.h"

namespace etna::engine {

struct BenchOptions {
  int n_prompt = 512;    // prompt-processing test length; 0 skips the test
  int n_gen = 128;       // generation test length; 0 skips the test
  int repetitions = 3;   // timed runs of each test
  model::KvType cache_type = model::KvType::f32;
  uint64_t seed = 1234;  // for the random token ids
  size_t bandwidth_bytes = size_t{256} << 20;  // buffer streamed to measure read bandwidth
};

struct RateStats {  // tokens per second over the repetitions
  double min = 0.0, median = 0.0, max = 0.0;
};

// The int8 multiply-add peak of one kernel set, all threads: G ops/s, 2 ops per multiply-add.
struct Int8Peak {
  std::string kernels;
  double gops = 0.0;
};

// One generation run and the read bandwidth measured right after it.
struct RooflineRun {
  double tg_tps = 0.0;
  double bandwidth_gbps = 0.0;  // best of 3 passes with the same thread count
  double roofline = 0.0;        // tg_tps * bytes_per_token / bandwidth
};

struct BenchResult {
  RateStats pp_tps, tg_tps;
  uint64_t bytes_per_token = 0;  // weight_bytes_per_token()
  double bandwidth_gbps = 0.0;   // median over roofline_runs (or one measurement with no generation test)
  double roofline = 0.0;         // median of roofline_runs[].roofline: 1 = memory-bound ideal
  std::vector<RooflineRun> roofline_runs;  // one per generation run, in order
  int threads = 0;
  std::string kernels;           // tensor::active_kernels_name()
  std::vector<Int8Peak> int8_peaks;  // per SIMD kernel set the CPU has, measured in this run (the active
                                     // set's: the median of its measurements beside the prompt runs)
  uint64_t layer_weights = 0;        // elements of the layers' weight matrices a token multiplies by (the used
                                     // experts only): multiply-adds per prompt token
  double prompt_gops = 0.0;          // 2 * layer_weights * pp_tps.median / 1e9
  double prompt_peak = 0.0;          // median over the prompt runs of each run's int8 ops/s over the active
                                     // set's int8 peak (or the best set's) measured right after that run
  MemoryEstimate memory;         // for a context of n_prompt + n_gen (at least the larger test)
  ResidentMemory resident;       // measured after the prompt runs, before the bandwidth buffer
};

// Runs the benchmark with the tensor layer's current thread count. `progress` (may be empty)
// receives one line per finished run. Throws etna::Error (invalid_argument) for negative
// lengths, repetitions < 1, or both tests skipped.
BenchResult run_bench(const model::Model& model, const BenchOptions& options,
                      const std::function<void(const std::string&)>& progress = {});

}  // namespace etna::engine
