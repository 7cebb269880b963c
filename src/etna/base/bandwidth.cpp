#include "etna/base/bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include "etna/base/error.h"

namespace etna {
namespace {

// Sums n words with eight independent accumulators, so the loop is limited by loads rather
// than by one add chain; the compiler vectorises it with the baseline instruction set.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  for (; i < n; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t x : a) s += x;
  return s;
}

volatile uint64_t g_sink = 0;

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(int n_threads, size_t bytes) : n_words_(bytes / sizeof(uint64_t)), n_threads_(n_threads) {
  if (n_threads < 1) fail(ErrorKind::invalid_argument, "bandwidth: need at least one thread (got {})", n_threads);
  if (bytes < (size_t{1} << 20)) fail(ErrorKind::invalid_argument, "bandwidth: buffer of {} bytes is too small", bytes);
  const size_t mapped = n_words_ * sizeof(uint64_t);
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail(ErrorKind::io, "bandwidth: cannot map a {} byte buffer", mapped);
  buf_ = std::unique_ptr<uint64_t, Unmap>(static_cast<uint64_t*>(p), Unmap{mapped});
#if defined(MADV_HUGEPAGE)
  ::madvise(p, mapped, MADV_HUGEPAGE);  // advice only: 4 KiB pages still measure, just lower
#endif
  // Written once so every page is backed by real memory before timing (not the shared zero page).
  uint64_t* w = buf_.get();
  for (size_t i = 0; i < n_words_; ++i) w[i] = i * 0x9E3779B97F4A7C15ull;
}

void ReadBandwidthProbe::Unmap::operator()(uint64_t* p) const { ::munmap(p, bytes); }

ReadBandwidthProbe::~ReadBandwidthProbe() = default;

ReadBandwidth ReadBandwidthProbe::measure(int passes) const {
  if (passes < 1) fail(ErrorKind::invalid_argument, "bandwidth: need at least one pass (got {})", passes);
  std::atomic<uint64_t> sink{0};
  auto one_pass = [&] {
    std::vector<std::thread> threads;
    const size_t per = (n_words_ + n_threads_ - 1) / n_threads_;
    for (int t = 0; t < n_threads_; ++t) {
      const size_t begin = std::min(n_words_, per * t), end = std::min(n_words_, begin + per);
      threads.emplace_back([&, begin, end] { sink += sum_words(buf_.get() + begin, end - begin); });
    }
    for (auto& th : threads) th.join();
  };

  one_pass();  // warm-up: threads started once, TLB and prefetchers primed
  std::vector<double> gbps;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    one_pass();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbps.push_back(static_cast<double>(n_words_ * sizeof(uint64_t)) / s / 1e9);
  }
  g_sink = sink.load();  // the sums are observable, so the reads cannot be optimised away
  std::sort(gbps.begin(), gbps.end());
  ReadBandwidth r;
  r.best_gbps = gbps.back();
  r.median_gbps = gbps[gbps.size() / 2];
  r.bytes = n_words_ * sizeof(uint64_t);
  r.threads = n_threads_;
  return r;
}

ReadBandwidth measure_read_bandwidth(int n_threads, size_t bytes, int passes) {
  if (passes < 1) fail(ErrorKind::invalid_argument, "bandwidth: need at least one pass (got {})", passes);
  return ReadBandwidthProbe(n_threads, bytes).measure(passes);
}

}  // namespace etna
