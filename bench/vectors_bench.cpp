// Vector store benchmark: build time, memory per vector and QPS vs recall@10 for ef 16..512,
// single thread, side by side with hnswlib (same data, M, ef_construction), plus Etna with int8
// scalar quantisation, with binary quantisation and with product quantisation (graph walk on
// codes, top ef rescored with the float originals; PQ compression ETNA_BENCH_PQ, default x16),
// and Etna's inverted file indices (ivf_config, no graph): IVF-FLAT and IVF-PQ (same ratio, codes
// in the lists, 8 * limit rescored with the floats), swept over nprobe instead of ef.
//
// Data: 1000 Gaussian centres (N(0,1) per component) and points = centre + N(0, spread^2) noise
// with spread 1.5 by default, i.e. noise larger than the centre spread: clusters overlap and the
// neighbourhoods are not trivially found. Queries come from the same distribution but are not
// in the data set. Ground truth: exact L2 scan computed here, independent of both libraries.
//
// QPS: queries per CPU-second of the (single-threaded) child, best of 3 passes over the query
// set per ef (same for every column); build time is given as wall and CPU time.
// Each library runs in its own forked child, so all three start from the same process state and
// memory is measured the same way for each: resident set delta (/proc/self/statm, after
// malloc_trim) from just before the index is created to just after the last insert, divided by
// n. "anon" is the part that is not file-backed (statm resident - shared).
//
// A plain program (prints tables); sizes via env:
//   ETNA_BENCH_N=200000  ETNA_BENCH_DIMS=128,768  ETNA_BENCH_QUERIES=500  ETNA_BENCH_M=16
//   ETNA_BENCH_EFC=100  ETNA_BENCH_SPREAD=1.5  ETNA_BENCH_CENTRES=1000  ETNA_BENCH_ONLY=hnswlib,etna,int8,binary,pq
//   ETNA_BENCH_PQ=16 (compression ratio: 4, 8, 16, 32 or 64)
//   ETNA_BENCH_ONLY=...,ivfflat,ivfpq  ETNA_BENCH_NLIST=0 (0: 4*sqrt(points at training))
//   ETNA_BENCH_IVF_TRAIN=0 (points at which the lists train; 0: n / 4)
// The size: ETNA_BENCH_N=1000000 ETNA_BENCH_DIMS=128 ETNA_BENCH_ONLY=hnswlib,ivfflat,ivfpq
// Quick check: ETNA_BENCH_N=20000 ETNA_BENCH_DIMS=128 ./vectors_bench
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

// Let hnswlib use its AVX kernels as it would with -mavx (the project builds without -march;
// Etna picks AVX2 at run time, so this keeps the comparison fair).
// vectors_bench_avx512 (same source, ETNA_BENCH_HNSWLIB_AVX512) gives hnswlib its AVX-512 L2
// kernel too, as a -march=native build on an AVX-512 machine would; it refuses other CPUs.
#if defined(__x86_64__)
#pragma GCC push_options
#ifdef ETNA_BENCH_HNSWLIB_AVX512
#pragma GCC target("avx2,fma,avx512f")
#ifndef __AVX512F__
#define __AVX512F__ 1
#define ETNA_DEFINED_AVX512F
#endif
#else
#pragma GCC target("avx2,fma")
#endif
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
#ifdef ETNA_DEFINED_AVX512F
#undef __AVX512F__
#endif
#pragma GCC pop_options
#endif

#include "etna/store/database.h"

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// CPU time of this process: on a shared machine a run that is preempted is not charged for the
// time other processes hold the core, so QPS stays comparable between columns run at different
// moments. (Cache and memory-bandwidth contention still show.)
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

const std::vector<size_t> kEfs = {16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
const std::vector<size_t> kNprobes = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
constexpr size_t kK = 10;
constexpr double kTargetRecall = 0.95;
// Each ef's query set is timed this many times and the best pass is kept: the machine is shared,
// and the best pass is the one least disturbed by other processes (same rule for all columns).
constexpr size_t kReps = 3;

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}
double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtod(v, nullptr) : fallback;
}

struct Mem {
  double resident = 0, anon = 0;  // bytes
};
Mem memory_now() {
  malloc_trim(0);
  std::ifstream f("/proc/self/statm");
  size_t total = 0, resident = 0, shared = 0;
  f >> total >> resident >> shared;
  double page = double(sysconf(_SC_PAGESIZE));
  return {double(resident) * page, double(resident - shared) * page};
}

struct Row {
  size_t ef = 0;
  double qps = 0, recall = 0;
};
struct Result {
  double build_s = 0, build_cpu_s = 0;
  double mem_per_vec = 0, anon_per_vec = 0;  // bytes per vector
  std::vector<Row> rows;
  std::string note;
  bool ok = false;
};

using Truth = std::vector<std::vector<uint64_t>>;

double recall_of(const Truth& truth, const Truth& got) {
  size_t hit = 0, total = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    std::unordered_set<uint64_t> s(got[q].begin(), got[q].end());
    for (auto id : truth[q]) hit += s.count(id);
    total += truth[q].size();
  }
  return total ? double(hit) / double(total) : 0;
}

// Runs fn in a forked child and returns its Result (sent back as text through a pipe).
template <class Fn>
Result in_child(const Fn& fn) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Result r = fn();
    std::ostringstream os;
    os.precision(17);
    os << r.build_s << ' ' << r.build_cpu_s << ' ' << r.mem_per_vec << ' ' << r.anon_per_vec << ' ' << r.rows.size() << '\n';
    for (const auto& row : r.rows) os << row.ef << ' ' << row.qps << ' ' << row.recall << '\n';
    std::string s = os.str();
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = write(fds[1], s.data() + off, s.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, size_t(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  Result r;
  std::istringstream is(text);
  size_t rows = 0;
  if (is >> r.build_s >> r.build_cpu_s >> r.mem_per_vec >> r.anon_per_vec >> rows) {
    r.rows.resize(rows);
    for (auto& row : r.rows) is >> row.ef >> row.qps >> row.recall;
    r.ok = bool(is);
  }
  if (!r.ok) r.note = "child failed (status " + std::to_string(status) + ")";
  return r;
}

// QPS at the target recall, interpolated linearly between the two ef values that bracket it.
// Returns NaN when no ef reaches it; *lower_bound is set when even the smallest ef exceeds it.
double qps_at_recall(const std::vector<Row>& rows, double target, bool* lower_bound) {
  *lower_bound = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].recall < target) continue;
    if (i == 0) {
      *lower_bound = true;
      return rows[0].qps;
    }
    const Row& a = rows[i - 1];
    const Row& b = rows[i];
    double t = (target - a.recall) / (b.recall - a.recall);
    return a.qps + t * (b.qps - a.qps);
  }
  return NAN;
}

std::string fmt_qps_at(const Result& r) {
  bool lb;
  double q = qps_at_recall(r.rows, kTargetRecall, &lb);
  if (std::isnan(q)) return "not reached";
  char b[64];
  std::snprintf(b, sizeof b, "%s%.0f", lb ? ">=" : "", q);
  return b;
}

// The inverted file rows: build and memory, then QPS and recall per nprobe, and the ratios to
// hnswlib at recall 0.95.
void ivf_table(size_t n, const Result& hn, const Result& ei, const Result& eq, const std::string& pq_name,
               const std::string& note) {
  if (!ei.ok && !eq.ok) return;
  const std::string pq = "etna ivf-" + pq_name.substr(5);
  for (const auto& [name, r] : {std::pair<std::string, const Result*>{"etna ivf-flat", &ei}, {pq, &eq}}) {
    if (!r->ok) continue;
    std::printf("%-14s build %7.1f s wall, %7.1f s CPU (%6.0f inserts/CPU-s)  memory %6.0f B/vector (anon %6.0f)  [%s]\n",
                name.c_str(), r->build_s, r->build_cpu_s, double(n) / r->build_cpu_s, r->mem_per_vec, r->anon_per_vec,
                note.c_str());
  }
  std::printf("%6s | %9s %7s | %9s %7s\n", "nprobe", "ivf-flat", "recall", "ivf-pq", "recall");
  for (size_t i = 0; i < kNprobes.size(); ++i) {
    std::printf("%6zu", kNprobes[i]);
    for (const Result* r : {&ei, &eq}) {
      if (r->ok && i < r->rows.size()) std::printf(" | %9.0f %7.4f", r->rows[i].qps, r->rows[i].recall);
      else std::printf(" | %9s %7s", "-", "-");
    }
    std::printf("\n");
  }
  bool lb;
  double base = hn.ok ? qps_at_recall(hn.rows, kTargetRecall, &lb) : NAN;
  for (const auto& [name, r] : {std::pair<std::string, const Result*>{"etna ivf-flat", &ei}, {pq, &eq}}) {
    if (!r->ok) continue;
    double q = qps_at_recall(r->rows, kTargetRecall, &lb);
    std::printf("%s: QPS at recall@10 %.2f %s", name.c_str(), kTargetRecall, std::isnan(q) ? "not reached" : fmt_qps_at(*r).c_str());
    if (hn.ok && q > 0)
      std::printf("  RATIO / hnswlib: QPS@0.95 %.2fx  build time %.2fx wall, %.2fx CPU  memory %.2fx (anon %.2fx)",
                  q / base, r->build_s / hn.build_s, r->build_cpu_s / hn.build_cpu_s, r->mem_per_vec / hn.mem_per_vec,
                  r->anon_per_vec / hn.anon_per_vec);
    std::printf("\n");
  }
}

void run(size_t n, size_t dim, size_t nq, size_t M, size_t efc, const std::string& only) {
  const size_t n_centres = env_size("ETNA_BENCH_CENTRES", 1000);
  const float spread = float(env_double("ETNA_BENCH_SPREAD", 1.5));
  std::mt19937 rng(1234 + dim);
  std::normal_distribution<float> g;
  std::vector<float> centres(n_centres * dim);
  for (auto& x : centres) x = g(rng);
  auto sample = [&](float* out) {
    const float* c = &centres[(rng() % n_centres) * dim];
    for (size_t d = 0; d < dim; ++d) out[d] = c[d] + spread * g(rng);
  };
  auto t0 = Clock::now();
  std::vector<float> data(n * dim), queries(nq * dim);
  for (size_t i = 0; i < n; ++i) sample(&data[i * dim]);
  for (size_t i = 0; i < nq; ++i) sample(&queries[i * dim]);
  std::printf("\n== n=%zu dim=%zu queries=%zu M=%zu ef_construct=%zu, L2, 1 thread; %zu centres, noise sd %.2f "
              "(centre sd 1) ==\n", n, dim, nq, M, efc, n_centres, double(spread));

  // Ground truth: exact scan with hnswlib's L2 kernel, 16 queries per pass over the data.
  hnswlib::L2Space space(dim);
  auto l2 = space.get_dist_func();
  void* l2p = space.get_dist_func_param();
  Truth truth(nq);
  for (size_t q0 = 0; q0 < nq; q0 += 16) {
    size_t q1 = std::min(nq, q0 + 16);
    std::vector<std::priority_queue<std::pair<float, uint64_t>>> heaps(q1 - q0);
    for (size_t i = 0; i < n; ++i)
      for (size_t q = q0; q < q1; ++q) {
        float d = l2(&queries[q * dim], &data[i * dim], l2p);
        auto& h = heaps[q - q0];
        if (h.size() < kK) h.push({d, i});
        else if (d < h.top().first) h.pop(), h.push({d, i});
      }
    for (size_t q = q0; q < q1; ++q)
      for (auto& h = heaps[q - q0]; !h.empty(); h.pop()) truth[q].push_back(h.top().second);
  }
  std::printf("data + ground truth: %.1f s\n", seconds_since(t0));
  std::fflush(stdout);

  auto want = [&](const char* name) { return only.empty() || only.find(name) != std::string::npos; };

  Result hn, et, e8, eb, ep;
  const size_t ivf_train = std::clamp<size_t>(env_size("ETNA_BENCH_IVF_TRAIN", 0) ? env_size("ETNA_BENCH_IVF_TRAIN", 0) : n / 4, 1, n);
  const size_t ivf_nlist = env_size("ETNA_BENCH_NLIST", 0) ? std::min<size_t>(env_size("ETNA_BENCH_NLIST", 0), 65536)
                                                          : size_t(std::lround(4.0 * std::sqrt(double(ivf_train))));
  const uint32_t pq_ratio = uint32_t(env_size("ETNA_BENCH_PQ", 16));
  // One library's figures, measured the same way for all: `build()` timed (wall and CPU) with
  // the resident-memory growth around it, then for each ef the best of kReps passes of
  // `search(query, ef, ids)` (ids filled only when non-null, on the first pass).
  auto measure = [&](const auto& build, const auto& search, const std::vector<size_t>& sweep = kEfs) {
    Result r;
    Mem m0 = memory_now();
    auto t = Clock::now();
    double c0 = cpu_now();
    build();
    r.build_s = seconds_since(t);
    r.build_cpu_s = cpu_now() - c0;
    Mem m1 = memory_now();
    r.mem_per_vec = (m1.resident - m0.resident) / double(n);
    r.anon_per_vec = (m1.anon - m0.anon) / double(n);
    for (size_t ef : sweep) {
      Truth got(nq);
      double best = 0;
      for (size_t rep = 0; rep < kReps; ++rep) {
        double q0 = cpu_now();
        for (size_t q = 0; q < nq; ++q) search(&queries[q * dim], ef, rep == 0 ? &got[q] : nullptr);
        best = std::max(best, double(nq) / (cpu_now() - q0));
      }
      r.rows.push_back({ef, best, recall_of(truth, got)});
    }
    return r;
  };

  if (want("hnswlib")) {
    hn = in_child([&] {
      std::unique_ptr<hnswlib::HierarchicalNSW<float>> index;
      return measure(
          [&] {
            index = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, n, M, efc, 100);
            for (size_t i = 0; i < n; ++i) index->addPoint(&data[i * dim], i);
          },
          [&](const float* query, size_t ef, std::vector<uint64_t>* ids) {
            index->setEf(ef);
            auto res = index->searchKnn(query, kK);
            if (ids)
              while (!res.empty()) ids->push_back(res.top().second), res.pop();
          });
    });
  }

  // ivf: -1 none, 0 IVF-FLAT, else IVF-PQ with that compression (the sweep is then nprobe).
  auto etna = [&](bool int8, bool binary = false, uint32_t product = 0, int ivf = -1) {
    return in_child([&] {
      Result r;
      auto dir = std::filesystem::temp_directory_path() / ("etna-bench-" + std::to_string(getpid()));
      std::filesystem::remove_all(dir);
      {
        auto db = etna::store::Database::open(dir, {});
        etna::store::CollectionConfig cfg;
        cfg.dim = dim;
        cfg.distance = etna::store::Distance::Euclid;
        cfg.hnsw.m = M;
        cfg.hnsw.ef_construct = efc;
        if (int8) cfg.quantization = etna::store::ScalarQuantization{};
        if (binary) cfg.binary = etna::store::BinaryQuantization{};
        if (product) cfg.product = etna::store::ProductQuantization{product, true};
        if (ivf >= 0) {
          cfg.ivf = etna::store::IvfConfig{};
          if (size_t nl = env_size("ETNA_BENCH_NLIST", 0)) cfg.ivf->nlist = std::min<size_t>(nl, 65536);
          cfg.ivf->pq_compression = uint32_t(ivf);
          cfg.ivf->training_threshold = ivf_train;
        }
        cfg.wal_capacity_mb = 1 << 20;  // no checkpoint inside the timed build
        etna::store::Collection* c = nullptr;
        r = measure(
            [&] {
              c = &db->create_collection("bench", cfg);
              for (size_t i = 0; i < n; i += 1000) {
                std::vector<etna::store::Point> batch;
                for (size_t j = i; j < std::min(n, i + 1000); ++j)
                  batch.push_back({uint64_t(j), std::vector<float>(&data[j * dim], &data[(j + 1) * dim]), nullptr});
                c->upsert(std::move(batch));
              }
            },
            [&](const float* query, size_t ef, std::vector<uint64_t>* ids) {
              std::vector<float> v(query, query + dim);
              auto hits = ivf >= 0 ? c->search({.vector = std::move(v), .limit = kK, .ivf_nprobe = ef})
                                   : c->search({.vector = std::move(v), .limit = kK, .hnsw_ef = ef});
              if (ids)
                for (const auto& h : hits) ids->push_back(h.id.num());
            },
            ivf >= 0 ? kNprobes : kEfs);
      }
      std::filesystem::remove_all(dir);
      return r;
    });
  };
  if (want("etna")) et = etna(false);
  if (want("int8")) e8 = etna(true);
  if (want("binary")) eb = etna(false, true);
  if (want("pq")) ep = etna(false, false, pq_ratio);
  Result ei, eq;
  if (want("ivfflat")) ei = etna(false, false, 0, 0);
  if (want("ivfpq")) eq = etna(false, false, 0, int(pq_ratio));

  auto line = [&](const char* name, const Result& r, const char* extra) {
    if (!r.ok) {
      std::printf("%-14s %s\n", name, r.note.empty() ? "not run" : r.note.c_str());
      return;
    }
    std::printf("%-14s build %7.1f s wall, %7.1f s CPU (%6.0f inserts/CPU-s)  memory %6.0f B/vector (anon %6.0f)%s\n",
                name, r.build_s, r.build_cpu_s, double(n) / r.build_cpu_s, r.mem_per_vec, r.anon_per_vec, extra);
  };
  line("hnswlib", hn, "");
  line("etna float", et, "  [build includes the fsync'ed write-ahead log]");
  line("etna int8", e8, "  [idem; floats in a file mapping, anon excludes them]");
  line("etna binary", eb, "  [1 bit/dim codes + float rescoring; floats in a file mapping]");
  const std::string pq_name = "etna pq x" + std::to_string(pq_ratio);
  char pq_note[160];
  std::snprintf(pq_note, sizeof pq_note, "  [%zu-byte PQ codes (ADC) + float rescoring; floats in a file mapping]",
                std::clamp<size_t>((4 * dim + pq_ratio - 1) / pq_ratio, 1, dim));
  line(pq_name.c_str(), ep, pq_note);

  std::printf("%5s | %9s %7s | %9s %7s %5s | %9s %7s %5s | %9s %7s %5s | %9s %7s %5s\n", "ef", "hnswlib", "recall",
              "etna f32", "recall", "x", "etna int8", "recall", "x", "etna bin", "recall", "x", "etna pq", "recall", "x");
  for (size_t i = 0; i < kEfs.size(); ++i) {
    auto cell = [&](const Result& r, bool ratio) {
      if (!r.ok || i >= r.rows.size()) {
        std::printf(" | %9s %7s%s", "-", "-", ratio ? "      " : "");
        return;
      }
      std::printf(" | %9.0f %7.4f", r.rows[i].qps, r.rows[i].recall);
      if (ratio) {
        if (hn.ok && i < hn.rows.size()) std::printf(" %5.2f", r.rows[i].qps / hn.rows[i].qps);
        else std::printf(" %5s", "-");
      }
    };
    std::printf("%5zu", kEfs[i]);
    cell(hn, false);
    cell(et, true);
    cell(e8, true);
    cell(eb, true);
    cell(ep, true);
    std::printf("\n");
  }

  std::printf("QPS at recall@10 = %.2f (linear between the bracketing ef): hnswlib %s, etna f32 %s, etna int8 %s, "
              "etna binary %s, %s %s\n",
              kTargetRecall, hn.ok ? fmt_qps_at(hn).c_str() : "-", et.ok ? fmt_qps_at(et).c_str() : "-",
              e8.ok ? fmt_qps_at(e8).c_str() : "-", eb.ok ? fmt_qps_at(eb).c_str() : "-", pq_name.c_str(),
              ep.ok ? fmt_qps_at(ep).c_str() : "-");
  if (ep.ok && !ep.rows.empty()) {
    auto best = std::max_element(ep.rows.begin(), ep.rows.end(), [](const Row& a, const Row& b) { return a.recall < b.recall; });
    std::printf("%s: best recall@10 %.4f (at ef %zu, %.0f QPS)\n", pq_name.c_str(), best->recall, best->ef, best->qps);
  }
  if (hn.ok) {
    bool lb;
    double base = qps_at_recall(hn.rows, kTargetRecall, &lb);
    for (const auto* p : {&et, &e8, &eb, &ep}) {
      const Result& r = *p;
      if (!r.ok) continue;
      const char* name = p == &et ? "etna f32 " : p == &e8 ? "etna int8" : p == &eb ? "etna bin " : "etna pq  ";
      double q = qps_at_recall(r.rows, kTargetRecall, &lb);
      if (!(q > 0)) {
        std::printf("RATIO %s / hnswlib: recall@10 %.2f not reached at ef <= 512  memory %.2fx (anon %.2fx)\n", name,
                    kTargetRecall, r.mem_per_vec / hn.mem_per_vec, r.anon_per_vec / hn.anon_per_vec);
        continue;
      }
      std::printf("RATIO %s / hnswlib: QPS@0.95 %.2fx (goal >= 1.2)  build time %.2fx wall, %.2fx CPU (goal <= 1)  "
                  "memory %.2fx (anon %.2fx; goal <= %s)\n",
                  name, q / base, r.build_s / hn.build_s, r.build_cpu_s / hn.build_cpu_s, r.mem_per_vec / hn.mem_per_vec,
                  r.anon_per_vec / hn.anon_per_vec, p == &et ? "1.1" : "0.4");
    }
  }
  ivf_table(n, hn, ei, eq, pq_name, "nlist " + std::to_string(ivf_nlist) + ", trained at " + std::to_string(ivf_train) + " points");
  std::fflush(stdout);
}

}  // namespace

int main() {
#ifdef ETNA_BENCH_HNSWLIB_AVX512
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "vectors_bench_avx512: this CPU has no AVX-512 (run vectors_bench)\n");
    return 2;
  }
  std::printf("hnswlib with its AVX-512 kernels\n");
#endif
  size_t n = env_size("ETNA_BENCH_N", 200000);
  size_t nq = env_size("ETNA_BENCH_QUERIES", 500);
  size_t M = env_size("ETNA_BENCH_M", 16), efc = env_size("ETNA_BENCH_EFC", 100);
  std::string dims = std::getenv("ETNA_BENCH_DIMS") ? std::getenv("ETNA_BENCH_DIMS") : "128,768";
  std::string only = std::getenv("ETNA_BENCH_ONLY") ? std::getenv("ETNA_BENCH_ONLY") : "";
  std::stringstream ss(dims);
  std::string d;
  while (std::getline(ss, d, ','))
    if (!d.empty()) run(n, std::stoul(d), nq, M, efc, only);
  return 0;
}
