#include "etna/engine/bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "etna/base/bandwidth.h"
#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/tensor/kernels.h"
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

// Best of 5 passes of the set's peak loop on every thread (8 tasks per thread, handed out as
// threads come free, so one late wake-up does not halve a pass).
double measure_int8_peak(tensor::Int8PeakFn fn, int threads) {
  constexpr int64_t kRounds = int64_t{1} << 18;  // per task: ~3M instructions, about a millisecond
  double best = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    std::atomic<int64_t> madds{0};
    const auto t0 = Clock::now();
    tensor::parallel_for(8 * static_cast<int64_t>(threads), INT64_MAX / 4, [&](int64_t task) {
      int32_t sink[3] = {static_cast<int32_t>(task), 3, 0};
      madds += fn(kRounds, sink);
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(madds.load()) / s / 1e9);
  }
  return best;
}

uint64_t layer_weight_elements(const model::Model& model) {
  const model::ModelConfig& c = model.config();
  uint64_t n = 0;
  for (const auto& t : model.file().tensors()) {
    if (t.dims.size() < 2 || t.name.rfind("blk.", 0) != 0) continue;
    // Stacked experts: each token multiplies by the expert_used_count experts it is routed to.
    const bool experts = t.dims.size() == 3 && c.n_expert > 0;
    n += experts ? t.n_elements / c.n_expert * c.n_expert_used : t.n_elements;
  }
  return n;
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

  // The int8 peaks of every kernel set the CPU has; the prompt is compared with the active set's
  // (or the best one's), measured right after each prompt run for the reason given below.
  struct PeakSet {
    std::string name;
    tensor::Int8PeakFn fn;
  };
  std::vector<PeakSet> peak_sets;
  for (const std::string& set : tensor::available_kernel_sets())
    if (tensor::Int8PeakFn fn = tensor::int8_peak_kernel(set))
      peak_sets.push_back({set == "avx512" && base::cpu_features().avx512vnni ? "avx512+vnni" : set, fn});
  size_t active_peak = peak_sets.size();
  for (size_t i = 0; i < peak_sets.size(); ++i)
    if (peak_sets[i].name == tensor::active_kernels_name() || i + 1 == peak_sets.size()) {
      active_peak = i;
      break;
    }
  const uint64_t layer_weights = layer_weight_elements(model);

  std::vector<double> pp, tg, pp_peak, pp_fraction;
  for (int r = 0; r < o.repetitions && o.n_prompt > 0; ++r) {
    pp.push_back(prompt_run(o.n_prompt));
    std::string peak_note;
    if (active_peak < peak_sets.size()) {
      pp_peak.push_back(measure_int8_peak(peak_sets[active_peak].fn, tensor::num_threads()));
      pp_fraction.push_back(2.0 * static_cast<double>(layer_weights) * pp.back() / 1e9 / pp_peak.back());
      peak_note = fmt::format(", {:.2f} of the int8 peak ({:.0f} G ops/s)", pp_fraction.back(), pp_peak.back());
    }
    say(fmt::format("run {}/{}: pp{} {:.2f} t/s{}", r + 1, o.repetitions, o.n_prompt, pp.back(), peak_note));
  }

  BenchResult res;
  res.resident = resident_memory();  // before the bandwidth buffer raises the peak
  res.threads = tensor::num_threads();
  res.bytes_per_token = weight_bytes_per_token(model);
  // The roofline pairs each generation run with the read bandwidth measured right after it
  // (best of 3 passes of ~10 ms): on a shared or virtual machine the bandwidth drifts by tens of
  // per cent between runs seconds apart, and a ratio of figures from different moments would
  // carry that drift. The figures are the medians over the runs.
  const ReadBandwidthProbe probe(res.threads, o.bandwidth_bytes);
  std::vector<double> bw, roof;
  for (int r = 0; r < o.repetitions && o.n_gen > 0; ++r) {
    tg.push_back(gen_run(o.n_gen));
    bw.push_back(probe.measure(3).best_gbps);
    roof.push_back(bw.back() > 0 ? tg.back() * static_cast<double>(res.bytes_per_token) / (bw.back() * 1e9) : 0.0);
    res.roofline_runs.push_back({tg.back(), bw.back(), roof.back()});
    say(fmt::format("run {}/{}: tg{} {:.2f} t/s, read bandwidth {:.2f} GB/s: roofline {:.2f}", r + 1, o.repetitions,
                    o.n_gen, tg.back(), bw.back(), roof.back()));
  }
  if (bw.empty()) bw.push_back(probe.measure(10).best_gbps);  // no generation test: the bandwidth alone
  res.pp_tps = summarise(pp);
  res.tg_tps = summarise(tg);
  res.kernels = tensor::active_kernels_name();
  res.memory = estimate_memory(model, n_ctx, o.cache_type, std::max(1, o.n_prompt));
  res.bandwidth_gbps = summarise(bw).median;
  if (!roof.empty()) res.roofline = summarise(roof).median;
  for (size_t i = 0; i < peak_sets.size(); ++i)
    res.int8_peaks.push_back({peak_sets[i].name, i == active_peak && !pp_peak.empty()
                                                     ? summarise(pp_peak).median
                                                     : measure_int8_peak(peak_sets[i].fn, res.threads)});
  res.layer_weights = layer_weights;
  res.prompt_gops = 2.0 * static_cast<double>(res.layer_weights) * res.pp_tps.median / 1e9;
  if (!pp_fraction.empty()) res.prompt_peak = summarise(pp_fraction).median;
  if (!res.int8_peaks.empty())
    say(fmt::format("int8 peak {:.0f} G ops/s ({})", res.int8_peaks.back().gops, res.int8_peaks.back().kernels));
  return res;
}

}  // namespace etna::engine
