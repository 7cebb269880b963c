// A persistent pool of worker threads for data-parallel loops. Workers are created once and
// wait between jobs (spinning briefly, then sleeping on a condition variable), so a
// parallel_for costs a wake-up, not a thread creation.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace etna::base {

class ThreadPool {
 public:
  // A pool of `n_threads` threads in total: the calling thread plus n_threads - 1 workers.
  // n_threads < 1 is treated as 1.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that take part in a run (workers + the caller).
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) once for every i in [0, n_tasks), spread over the pool (tasks are handed out
  // in order, one at a time, to whichever thread is free) and returns when all have finished.
  // If the pool is already running a job (a nested call from inside a task, or another thread
  // using it), everything runs on the calling thread instead: same results, no deadlock.
  // The first exception thrown by a task is rethrown here after the others have stopped.
  void run(int64_t n_tasks, const std::function<void(int64_t)>& fn);

  // Calls fn(i) once for every i in [0, n_items), like run(), but thread j of the pool first
  // owns the contiguous range of items [j * n_items / size(), (j + 1) * n_items / size()) and
  // walks it from the front, so each thread streams one long stretch of memory. A thread whose
  // range is used up takes single items from the back of another thread's range (work
  // stealing, Blumofe & Leiserson 1999), so a thread slowed by a neighbour or descheduled is
  // relieved one item at a time instead of holding the others at the barrier. The nesting,
  // concurrency and exception rules are those of run().
  void run_ranges(int64_t n_items, const std::function<void(int64_t)>& fn);

  // Splits [begin, end) into chunks of `grain` (>= 1) elements and calls fn(chunk_begin,
  // chunk_end) for each through run().
  void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  // One thread's range of a run_ranges() job, [front, back) packed into one word so that the
  // owner (taking the front) and a thief (taking the back) agree through one compare-exchange.
  struct alignas(64) Range {
    std::atomic<uint64_t> front_back{0};
  };
  void worker_main(int index);
  void work_on_current_job(int index);
  void start_job(int64_t n_tasks, const std::function<void(int64_t)>& fn, bool ranges);
  void work_on_ranges(int index);
  int64_t take_front(Range& r);
  int64_t take_back(Range& r);

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // held by the thread whose job the pool is running

  std::mutex mutex_;  // guards sleeping / waking and the first exception
  std::condition_variable wake_cv_, done_cv_;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};  // bumped once per job (release: job fields are set)
  std::atomic<int> pending_workers_{0};  // workers still inside the current job
  std::atomic<int64_t> next_task_{0};
  int64_t n_tasks_ = 0;
  bool ranges_ = false;           // the current job is a run_ranges() job
  std::unique_ptr<Range[]> range_;  // one per thread (index 0: the caller), for run_ranges()
  const std::function<void(int64_t)>* fn_ = nullptr;
  std::exception_ptr error_;
};

}  // namespace etna::base
