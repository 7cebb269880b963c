// ThreadPool: one job at a time, tasks handed out through an atomic counter.
#include "etna/base/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "etna/base/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ETNA_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define ETNA_CPU_RELAX() __asm__ volatile("yield")
#else
#define ETNA_CPU_RELAX() ((void)0)
#endif

namespace etna::base {
namespace {

// How long an idle worker (or a caller waiting for workers) spins before sleeping: long
// enough to cover the short serial stretches between the matmuls of one forward pass.
constexpr auto kSpin = std::chrono::microseconds(100);

// The pool whose task the current thread is running (to run nested calls inline).
thread_local const ThreadPool* tl_running_pool = nullptr;

template <typename Pred>
bool spin_until(Pred done) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    ETNA_CPU_RELAX();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() - start > kSpin) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  range_ = std::make_unique<Range[]>(static_cast<size_t>(n_threads));
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

namespace {
constexpr uint64_t pack(uint64_t front, uint64_t back) { return front | back << 32; }
constexpr int64_t front_of(uint64_t v) { return static_cast<int64_t>(v & 0xffffffffu); }
constexpr int64_t back_of(uint64_t v) { return static_cast<int64_t>(v >> 32); }
}  // namespace

int64_t ThreadPool::take_front(Range& r) {
  uint64_t v = r.front_back.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t f = front_of(v), b = back_of(v);
    if (f >= b) return -1;
    if (r.front_back.compare_exchange_weak(v, pack(static_cast<uint64_t>(f + 1), static_cast<uint64_t>(b)),
                                           std::memory_order_relaxed))
      return f;
  }
}

int64_t ThreadPool::take_back(Range& r) {
  uint64_t v = r.front_back.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t f = front_of(v), b = back_of(v);
    if (f >= b) return -1;
    if (r.front_back.compare_exchange_weak(v, pack(static_cast<uint64_t>(f), static_cast<uint64_t>(b - 1)),
                                           std::memory_order_relaxed))
      return b - 1;
  }
}

void ThreadPool::work_on_ranges(int index) {
  const int n = size();
  auto run_item = [&](int64_t i) {
    try {
      (*fn_)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      for (int j = 0; j < n; ++j) range_[j].front_back.store(0, std::memory_order_relaxed);  // the others stop
    }
  };
  for (int64_t i; (i = take_front(range_[index])) >= 0;) run_item(i);
  // Own range done: relieve the others, one item at a time from the back of each in turn.
  for (int d = 1; d < n; ++d) {
    Range& victim = range_[(index + d) % n];
    for (int64_t i; (i = take_back(victim)) >= 0;) run_item(i);
  }
}

void ThreadPool::work_on_current_job(int index) {
  const ThreadPool* outer = tl_running_pool;
  tl_running_pool = this;
  if (ranges_) {
    work_on_ranges(index);
  } else {
    for (;;) {
      const int64_t i = next_task_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_tasks_) break;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_task_.store(n_tasks_, std::memory_order_relaxed);  // the others stop early
      }
    }
  }
  tl_running_pool = outer;
}

void ThreadPool::worker_main(int index) {
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_cv_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
    }
    seen = generation_.load(std::memory_order_acquire);
    work_on_current_job(index);
    if (pending_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, const std::function<void(int64_t)>& fn) { start_job(n_tasks, fn, false); }

void ThreadPool::run_ranges(int64_t n_items, const std::function<void(int64_t)>& fn) {
  start_job(n_items, fn, true);
}

void ThreadPool::start_job(int64_t n_tasks, const std::function<void(int64_t)>& fn, bool ranges) {
  if (n_tasks <= 0) return;
  if (ranges && n_tasks >= (int64_t{1} << 31))
    fail(ErrorKind::invalid_argument, "run_ranges: {} items is more than the 2^31 it can split", n_tasks);
  std::unique_lock<std::mutex> busy(run_mutex_, std::defer_lock);
  if (workers_.empty() || n_tasks == 1 || tl_running_pool == this || !busy.try_lock()) {
    for (int64_t i = 0; i < n_tasks; ++i) fn(i);
    return;
  }
  fn_ = &fn;
  n_tasks_ = n_tasks;
  ranges_ = ranges;
  next_task_.store(0, std::memory_order_relaxed);
  if (ranges) {
    const int n = size();
    for (int j = 0; j < n; ++j)
      range_[j].front_back.store(pack(static_cast<uint64_t>(n_tasks * j / n), static_cast<uint64_t>(n_tasks * (j + 1) / n)),
                                 std::memory_order_relaxed);
  }
  error_ = nullptr;
  pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  work_on_current_job(0);
  if (!spin_until([&] { return pending_workers_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return pending_workers_.load(std::memory_order_acquire) == 0; });
  }
  fn_ = nullptr;
  std::exception_ptr error = std::exchange(error_, nullptr);
  busy.unlock();
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(int64_t begin, int64_t end, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  const int64_t n = (end - begin + grain - 1) / grain;
  run(n, [&](int64_t i) {
    const int64_t b = begin + i * grain;
    fn(b, std::min(end, b + grain));
  });
}

}  // namespace etna::base
