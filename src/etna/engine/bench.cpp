#include "etna/engine/bench.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "etna/base/bandwidth.h"
#include "etna/base/error.h"
#include "etna/tensor/tensor.h"

namespace etna::engine {
namespace {

using Clock = std::chrono::steady_clock;

RateStats summarise(std::vector<double> v) {
  RateStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return s;
}

}  // namespace

BenchResult run_bench(const model::Model& model, const BenchOptions& o,
                      const std::function<void(const std::string&)>& progress) {
  if (o.n_prompt < 0 || o.n_gen < 0)
    fail(ErrorKind::invalid_argument, "bench: test lengths must be >= 0 (got -p {} -n {})", o.n_prompt, o.n_gen);
  if (o.n_prompt == 0 && o.n_gen == 0) fail(ErrorKind::invalid_argument, "bench: both tests are skipped (-p 0 -n 0)");
  if (o.repetitions < 1) fail(ErrorKind::invalid_argument, "bench: repetitions must be >= 1 (got {})", o.repetitions);
  const int n_vocab = model.config().n_vocab;
  const int n_ctx = std::max(o.n_prompt, o.n_gen);  // each test starts from an empty cache
  auto cache = model.make_cache(1, n_ctx, o.cache_type);

  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> random_token(0, n_vocab - 1);
  model::Batch batch;
  std::vector<float> logits;

  // n random tokens in one batch from an empty cache; logits for the last (as a prompt needs).
  auto prompt_run = [&](int n) {
    cache->clear(0);
    batch.clear();
    for (int i = 0; i < n; ++i) batch.add(random_token(rng), i, 0, i == n - 1);
    const auto t0 = Clock::now();
    model.forward(batch, *cache, logits);
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // n random tokens one at a time from an empty cache, each with its logits (as generation).
  auto gen_run = [&](int n) {
    cache->clear(0);
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      batch.clear();
      batch.add(random_token(rng), i, 0, true);
      model.forward(batch, *cache, logits);
    }
    return n / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };

  // Warm-up: maps every weight page in and primes caches and the thread pool.
  if (o.n_prompt > 0) prompt_run(std::min(o.n_prompt, 32));
  if (o.n_gen > 0) gen_run(std::min(o.n_gen, 4));
  say("warm-up done");

  std::vector<double> pp, tg;
  for (int r = 0; r < o.repetitions; ++r) {
    if (o.n_prompt > 0) {
      pp.push_back(prompt_run(o.n_prompt));
      say(fmt::format("run {}/{}: pp{} {:.2f} t/s", r + 1, o.repetitions, o.n_prompt, pp.back()));
    }
    if (o.n_gen > 0) {
      tg.push_back(gen_run(o.n_gen));
      say(fmt::format("run {}/{}: tg{} {:.2f} t/s", r + 1, o.repetitions, o.n_gen, tg.back()));
    }
  }

  BenchResult res;
  res.resident = resident_memory();  // before the bandwidth buffer raises the peak
  res.pp_tps = summarise(pp);
  res.tg_tps = summarise(tg);
  res.threads = tensor::num_threads();
  res.kernels = tensor::active_kernels_name();
  res.memory = estimate_memory(model, n_ctx, o.cache_type, std::max(1, o.n_prompt));
  res.bytes_per_token = weight_bytes_per_token(model);
  // Best of 10 short passes (~10 ms each): one pass disturbed by another process would understate it.
  res.bandwidth_gbps = measure_read_bandwidth(res.threads, o.bandwidth_bytes, 10).best_gbps;
  say(fmt::format("read bandwidth {:.2f} GB/s with {} threads", res.bandwidth_gbps, res.threads));
  if (res.bandwidth_gbps > 0)
    res.roofline = res.tg_tps.median * static_cast<double>(res.bytes_per_token) / (res.bandwidth_gbps * 1e9);
  return res;
}

}  // namespace etna::engine
