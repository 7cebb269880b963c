// Vector store benchmark: build time, memory per vector and QPS vs recall@10 for ef 16..512 on
// clustered data, single thread, side by side with hnswlib (same data, M, ef_construction).
// A plain program (prints a table); sizes via env:
//   ETNA_BENCH_N=200000  ETNA_BENCH_DIMS=128,768  ETNA_BENCH_QUERIES=200  ETNA_BENCH_M=16  ETNA_BENCH_EFC=100
// Quick check: ETNA_BENCH_N=20000 ETNA_BENCH_DIMS=128 ./vectors_bench
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

// Let hnswlib use its AVX kernels as it would with -mavx (the project builds without -march;
// Etna picks AVX2 at run time, so this keeps the comparison fair).
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#ifndef __AVX__
#define __AVX__ 1
#define ETNA_DEFINED_AVX
#endif
#endif
#include <hnswlib/hnswlib.h>
#if defined(__x86_64__)
#ifdef ETNA_DEFINED_AVX
#undef __AVX__
#endif
#pragma GCC pop_options
#endif

#include "etna/store/database.h"

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages_total = 0, pages_rss = 0;
  f >> pages_total >> pages_rss;
  return pages_rss * size_t(sysconf(_SC_PAGESIZE));
}

std::vector<float> clustered(size_t n, size_t dim, std::mt19937& rng, const std::vector<float>& centres, size_t k) {
  std::normal_distribution<float> g(0.0f, 0.35f);
  std::vector<float> out(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const float* c = &centres[(rng() % k) * dim];
    for (size_t d = 0; d < dim; ++d) out[i * dim + d] = c[d] + g(rng);
  }
  return out;
}

double recall_of(const std::vector<std::vector<uint64_t>>& truth, const std::vector<std::vector<uint64_t>>& got) {
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    std::unordered_set<uint64_t> s(got[q].begin(), got[q].end());
    for (auto id : truth[q]) hit += s.count(id);
    total += truth[q].size();
  }
  return total ? double(hit) / double(total) : 0;
}

void run(size_t n, size_t dim, size_t nq, size_t M, size_t efc) {
  std::mt19937 rng(1234 + dim);
  const size_t k_centres = 500;
  std::vector<float> centres(k_centres * dim);
  std::normal_distribution<float> g;
  for (auto& x : centres) x = g(rng);
  std::vector<float> data = clustered(n, dim, rng, centres, k_centres);
  std::vector<float> queries = clustered(nq, dim, rng, centres, k_centres);
  std::printf("\n== n=%zu dim=%zu queries=%zu M=%zu ef_construct=%zu, Euclid, 1 thread ==\n", n, dim, nq, M, efc);

  // --- Etna ---
  auto dir = std::filesystem::temp_directory_path() / ("etna-bench-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  double etna_build, etna_mem;
  std::vector<std::vector<uint64_t>> truth(nq);
  std::vector<std::pair<size_t, std::pair<double, double>>> etna_rows;
  {
    etna::store::Collection::Options opt;
    auto db = etna::store::Database::open(dir, opt);
    etna::store::CollectionConfig cfg;
    cfg.dim = dim;
    cfg.distance = etna::store::Distance::Euclid;
    cfg.hnsw.m = M;
    cfg.hnsw.ef_construct = efc;
    cfg.wal_capacity_mb = 1 << 20;  // no checkpoint inside the timed build
    auto& c = db->create_collection("bench", cfg);
    size_t rss0 = rss_bytes();
    auto t0 = Clock::now();
    for (size_t i = 0; i < n; i += 1000) {
      std::vector<etna::store::Point> batch;
      for (size_t j = i; j < std::min(n, i + 1000); ++j)
        batch.push_back({uint64_t(j), std::vector<float>(&data[j * dim], &data[(j + 1) * dim]), nullptr});
      c.upsert(std::move(batch));
    }
    etna_build = seconds_since(t0);
    etna_mem = double(rss_bytes() - rss0) / double(n);
    // Ground truth by exact scan (also the flat-index speed).
    t0 = Clock::now();
    for (size_t q = 0; q < nq; ++q) {
      std::vector<float> v(&queries[q * dim], &queries[(q + 1) * dim]);
      for (const auto& h : c.search({.vector = v, .limit = 10, .exact = true})) truth[q].push_back(h.id.num());
    }
    double flat_qps = double(nq) / seconds_since(t0);
    std::printf("etna  build %.1f s (%.0f inserts/s, including the fsync'ed log), memory %.0f B/vector (RSS delta), "
                "exact scan %.1f QPS\n", etna_build, double(n) / etna_build, etna_mem, flat_qps);
    for (size_t ef : {16, 32, 64, 128, 256, 512}) {
      std::vector<std::vector<uint64_t>> got(nq);
      t0 = Clock::now();
      for (size_t q = 0; q < nq; ++q) {
        std::vector<float> v(&queries[q * dim], &queries[(q + 1) * dim]);
        for (const auto& h : c.search({.vector = v, .limit = 10, .hnsw_ef = ef})) got[q].push_back(h.id.num());
      }
      double qps = double(nq) / seconds_since(t0);
      etna_rows.push_back({ef, {qps, recall_of(truth, got)}});
    }
  }
  std::filesystem::remove_all(dir);

  // --- hnswlib ---
  std::vector<std::pair<double, double>> hnsw_rows;
  {
    hnswlib::L2Space space(dim);
    size_t rss0 = rss_bytes();
    auto t0 = Clock::now();
    hnswlib::HierarchicalNSW<float> index(&space, n, M, efc, 100);
    for (size_t i = 0; i < n; ++i) index.addPoint(&data[i * dim], i);
    double build = seconds_since(t0);
    double mem = double(rss_bytes() - rss0) / double(n);
    std::printf("hnsw  build %.1f s (%.0f inserts/s), memory %.0f B/vector (RSS delta)\n", build, double(n) / build, mem);
    for (size_t ef : {16, 32, 64, 128, 256, 512}) {
      index.setEf(ef);
      std::vector<std::vector<uint64_t>> got(nq);
      t0 = Clock::now();
      for (size_t q = 0; q < nq; ++q) {
        auto res = index.searchKnn(&queries[q * dim], 10);
        while (!res.empty()) got[q].push_back(res.top().second), res.pop();
      }
      double qps = double(nq) / seconds_since(t0);
      hnsw_rows.push_back({qps, recall_of(truth, got)});
    }
  }
  std::printf("%6s | %12s %10s | %12s %10s | %s\n", "ef", "etna QPS", "recall@10", "hnswlib QPS", "recall@10",
              "QPS ratio etna/hnswlib");
  for (size_t i = 0; i < etna_rows.size(); ++i)
    std::printf("%6zu | %12.0f %10.4f | %12.0f %10.4f | %.2f\n", etna_rows[i].first, etna_rows[i].second.first,
                etna_rows[i].second.second, hnsw_rows[i].first, hnsw_rows[i].second,
                etna_rows[i].second.first / hnsw_rows[i].first);
}

}  // namespace

int main() {
  size_t n = env_size("ETNA_BENCH_N", 200000);
  size_t nq = env_size("ETNA_BENCH_QUERIES", 200);
  size_t M = env_size("ETNA_BENCH_M", 16), efc = env_size("ETNA_BENCH_EFC", 100);
  std::string dims = std::getenv("ETNA_BENCH_DIMS") ? std::getenv("ETNA_BENCH_DIMS") : "128,768";
  std::stringstream ss(dims);
  std::string d;
  while (std::getline(ss, d, ','))
    if (!d.empty()) run(n, std::stoul(d), nq, M, efc);
  return 0;
}
