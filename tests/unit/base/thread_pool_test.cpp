// ThreadPool: every task runs exactly once for many sizes and pool sizes, nested and concurrent
// calls run inline instead of deadlocking, exceptions come back to the caller, and the pool is
// reusable after all of these; run_ranges starts each thread on its own contiguous range and
// lets a thread done early take items from another's. Also the CPU feature report.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/base/thread_pool.h"

namespace etna::base {
namespace {

TEST(ThreadPool, EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000, 4097}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.run(n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeInChunks) {
  ThreadPool pool(3);
  for (int64_t grain : {1, 3, 16, 1000}) {
    std::vector<std::atomic<int>> hits(1001);
    pool.parallel_for(5, 1001, grain, [&](int64_t b, int64_t e) {
      ASSERT_LE(e - b, grain);
      ASSERT_LT(b, e);
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), i >= 5 ? 1 : 0);
  }
  pool.parallel_for(10, 10, 4, [](int64_t, int64_t) { FAIL() << "empty range ran"; });
}

TEST(ThreadPool, UsesMoreThanOneThread) {
  ThreadPool pool(2);
  // Tasks that wait for each other can only finish if two threads run them at once.
  std::atomic<int> arrived{0};
  std::atomic<bool> both{false};
  pool.run(2, [&](int64_t) {
    arrived.fetch_add(1);
    for (int i = 0; i < 2000000 && arrived.load() < 2; ++i) std::this_thread::yield();
    if (arrived.load() == 2) both = true;
  });
  EXPECT_TRUE(both.load());
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::atomic<int> total{0};
  pool.run(6, [&](int64_t) { pool.run(5, [&](int64_t) { total.fetch_add(1); }); });
  EXPECT_EQ(total.load(), 30);
}

TEST(ThreadPool, ConcurrentCallersAllComplete) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) pool.run(17, [&](int64_t i) { total.fetch_add(i); });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 200 * (16 * 17 / 2));
}

TEST(ThreadPool, ExceptionsReachTheCallerAndThePoolStaysUsable) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.run(100, [](int64_t i) {
    if (i == 37) throw std::runtime_error("task 37");
  }),
               std::runtime_error);
  std::atomic<int> n{0};
  pool.run(50, [&](int64_t) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 50);
}

TEST(ThreadPool, ManySmallJobsInARow) {
  ThreadPool pool(2);
  int64_t sum = 0;
  for (int rep = 0; rep < 5000; ++rep) {
    std::atomic<int64_t> s{0};
    pool.run(4, [&](int64_t i) { s.fetch_add(i + 1); });
    sum += s.load();
  }
  EXPECT_EQ(sum, 5000 * 10);
}

TEST(ThreadPool, RunRangesRunsEveryItemExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 4, 5, 7, 64, 1000, 4097}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.run_ranges(n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, RunRangesGivesEachThreadAContiguousStretchFirst) {
  ThreadPool pool(2);
  // Every item waits until both threads have started, so neither can finish its own range
  // before the other begins: each thread's first item is the first of its own half.
  std::mutex m;
  std::map<std::thread::id, int64_t> first_item;
  auto threads_started = [&] {
    std::lock_guard<std::mutex> lock(m);
    return first_item.size();
  };
  pool.run_ranges(100, [&](int64_t i) {
    {
      std::lock_guard<std::mutex> lock(m);
      first_item.emplace(std::this_thread::get_id(), i);  // kept only for a thread's first item
    }
    for (int k = 0; k < 2000000 && threads_started() < 2; ++k) std::this_thread::yield();
  });
  ASSERT_EQ(first_item.size(), 2u);
  std::vector<int64_t> firsts;
  for (const auto& [id, i] : first_item) firsts.push_back(i);
  std::sort(firsts.begin(), firsts.end());
  EXPECT_EQ(firsts[0], 0);
  EXPECT_EQ(firsts[1], 50);
}

TEST(ThreadPool, RunRangesRelievesASlowThread) {
  ThreadPool pool(2);
  // The items of one half are slow; the thread with the fast half must then take items from
  // the back of the slow half, so that half is not run by one thread alone.
  std::mutex m;
  std::map<std::thread::id, std::vector<int64_t>> by_thread;
  pool.run_ranges(40, [&](int64_t i) {
    if (i < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard<std::mutex> lock(m);
    by_thread[std::this_thread::get_id()].push_back(i);
  });
  ASSERT_EQ(by_thread.size(), 2u);
  int threads_in_slow_half = 0;
  for (const auto& [id, items] : by_thread)
    if (std::any_of(items.begin(), items.end(), [](int64_t i) { return i < 20; })) ++threads_in_slow_half;
  EXPECT_EQ(threads_in_slow_half, 2);
}

TEST(ThreadPool, RunRangesExceptionsReachTheCaller) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.run_ranges(100, [](int64_t i) {
    if (i == 70) throw std::runtime_error("item 70");
  }),
               std::runtime_error);
  std::atomic<int> n{0};
  pool.run_ranges(50, [&](int64_t) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 50);
  std::atomic<int> nested{0};
  pool.run_ranges(4, [&](int64_t) { pool.run_ranges(5, [&](int64_t) { nested.fetch_add(1); }); });
  EXPECT_EQ(nested.load(), 20);
}

TEST(CpuFeatures, ConsistentReport) {
  const CpuFeatures& f = cpu_features();
  // Implications the detection must respect.
  if (f.avx2) {
    EXPECT_TRUE(f.avx);
  }
  if (f.fma || f.f16c) {
    EXPECT_TRUE(f.avx);
  }
  if (f.avx512bw || f.avx512vl || f.avx512vnni || f.avx512bf16) {
    EXPECT_TRUE(f.avx512f);
  }
#if defined(__x86_64__)
  EXPECT_TRUE(f.x86);
  EXPECT_FALSE(f.vendor.empty());
#endif
  EXPECT_FALSE(cpu_features_string().empty());
  EXPECT_GE(physical_core_count(), 1);
}

}  // namespace
}  // namespace etna::base
