// Inverted file index with a coarse k-means quantiser: the inverted file of Sivic & Zisserman
// 2003 ("Video Google"), as used for vectors by IVFADC (Jegou, Douze & Schmid 2011, "Product
// quantization for nearest neighbor search", section 4). Internal.
//
// nlist coarse centroids are trained by k-means on a sample; every point is appended to the
// inverted list of its nearest centroid (squared L2). A search ranks the centroids against the
// query and scans the nprobe nearest lists. IVF-FLAT scores each listed point with its float
// vector; IVF-PQ scores its product code with per-query ADC tables (product_quantizer.h) and the
// caller rescores the best with the floats. Codes encode the vectors themselves, not residuals
// to the coarse centroid: one ADC table per query serves every list, at the cost of some code
// precision that the float rescoring wins back.
//
// Nodes are slot numbers of the owning collection; removal is immediate (swap with the list's
// last entry), so slots can be reused at once. Not thread-safe for writes (the owner's lock).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "etna/store/distance.h"
#include "etna/store/hnsw.h"
#include "etna/store/product_quantizer.h"
#include "etna/store/types.h"

namespace etna::store::detail {

class InvertedFile {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kSamplePerList = IvfConfig::kSamplePerList;  // k-means sample per centroid,
  static constexpr size_t kMaxSample = IvfConfig::kMaxSample;          // at most this many
  static constexpr int kIterations = IvfConfig::kIterations;

  // nlist for a collection of n points when the config leaves it open: 4 * sqrt(n), in [1, 65536].
  static size_t default_nlist(size_t n);
  // nprobe when neither the request nor the config sets it: nlist / 16, at least 8, at most nlist.
  static size_t default_nprobe(size_t nlist);

  // Trains the coarse quantiser (nlist centroids, fewer when there are fewer slots) and, when
  // pq_compression != 0, product codebooks, on an even sample of `slots` (vectors at
  // base + slot * dim). The lists start empty: add() the points. Same input, same result.
  static InvertedFile train(const float* base, size_t dim, Distance metric, const std::vector<uint32_t>& slots,
                            size_t nlist, uint32_t pq_compression);

  // A trained file with these centroids and codebooks and empty lists (loading a data file).
  static InvertedFile restore(size_t dim, Distance metric, std::vector<float> centroids, ProductQuantizer pq);

  bool trained() const { return nlist_ > 0; }
  size_t nlist() const { return nlist_; }
  size_t dim() const { return dim_; }
  bool product() const { return pq_.trained; }
  const ProductQuantizer& pq() const { return pq_; }
  const std::vector<float>& centroids() const { return centroids_; }
  size_t size() const { return size_; }
  bool contains(uint32_t s) const { return s < list_of_.size() && list_of_[s] != kNone; }
  uint32_t list_of(uint32_t s) const { return s < list_of_.size() ? list_of_[s] : kNone; }
  const std::vector<uint32_t>& list(size_t l) const { return lists_[l].slots; }
  // The PQ code of slot s (pq().m bytes). REQUIRES: contains(s) && product().
  const uint8_t* code(uint32_t s) const { return &lists_[list_of_[s]].codes[size_t(pos_[s]) * pq_.m]; }

  // Appends slot s (vector x) to its nearest list, encoding x for IVF-PQ. REQUIRES: trained().
  void add(uint32_t s, const float* x);
  // Appends slot s to list l with a given code (null for IVF-FLAT): loading a data file.
  void add_to(uint32_t s, uint32_t l, const uint8_t* code);
  // Takes slot s out of its list, if it is in one.
  void remove(uint32_t s);

  // The nprobe lists to scan for q, nearest centroid first (clamped to [1, nlist]). Centroids
  // are ranked by inner product for Dot and by squared L2 otherwise, Cosine included: k-means
  // centroids of unit vectors are shorter than unit length, so for Cosine the L2 order is not
  // the inner-product order (||q - c||^2 = 1 + ||c||^2 - 2 q.c); L2 matches how points were
  // filed (nearest centroid by L2), which is what the probe must find.
  std::vector<uint32_t> probe(const float* q, size_t nprobe) const;

  // The `keep` best accepted points of the probed lists, nearest first: float distances from q
  // to the vectors at base + slot * dim for IVF-FLAT, ADC distances for IVF-PQ (rescore them).
  // accept(slot) filters during the scan.
  template <class Accept>
  std::vector<Candidate> search(const float* q, const float* base, size_t nprobe, size_t keep,
                                const Accept& accept) const;

  size_t memory_bytes() const;

 private:
  void set_metric(Distance metric);
  float scan_distance(const float* q, const float* v) const;
  void push(std::vector<Candidate>& heap, size_t keep, float d, uint32_t s) const {
    if (heap.size() < keep) {
      heap.push_back({d, s});
      std::push_heap(heap.begin(), heap.end());
    } else if (d < heap.front().distance) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = {d, s};
      std::push_heap(heap.begin(), heap.end());
    }
  }

  struct List {
    std::vector<uint32_t> slots;
    std::vector<uint8_t> codes;  // slots.size() * pq.m for IVF-PQ
  };
  size_t dim_ = 0, nlist_ = 0, size_ = 0;
  Distance metric_ = Distance::Euclid;
  float (*dist_)(const float*, const float*, size_t) = nullptr;  // the metric's kernel
  bool negate_ = false;                                           // Dot/Cosine: -dot
  std::vector<float> centroids_;  // nlist * dim
  ProductQuantizer pq_;
  std::vector<List> lists_;
  std::vector<uint32_t> list_of_, pos_;  // per slot: its list (kNone) and place in it
};

template <class Accept>
std::vector<Candidate> InvertedFile::search(const float* q, const float* base, size_t nprobe, size_t keep,
                                            const Accept& accept) const {
  std::vector<Candidate> heap;  // furthest on top
  if (!trained() || keep == 0) return heap;
  std::vector<uint32_t> lists = probe(q, nprobe);
  size_t listed = 0;  // keep may be a large oversampling * limit: reserve no more than can come back
  for (uint32_t l : lists) listed += lists_[l].slots.size();
  heap.reserve(std::min(keep, listed));
  if (pq_.trained) {
    const std::vector<float> table = pq_.table(q, metric_);
    const size_t m = pq_.m;
    for (uint32_t l : lists) {
      const List& L = lists_[l];
      for (size_t i = 0; i < L.slots.size(); ++i) {
        if (!accept(L.slots[i])) continue;
        const uint8_t* c = &L.codes[i * m];
        float d = 0;
        for (size_t j = 0; j < m; ++j) d += table[j * ProductQuantizer::kCentroids + c[j]];
        push(heap, keep, d, L.slots[i]);
      }
    }
  } else {
    for (uint32_t l : lists) {
      const std::vector<uint32_t>& S = lists_[l].slots;
      for (size_t i = 0; i < S.size(); ++i) {
        if (i + 2 < S.size()) __builtin_prefetch(base + size_t(S[i + 2]) * dim_);
        if (!accept(S[i])) continue;
        push(heap, keep, scan_distance(q, base + size_t(S[i]) * dim_), S[i]);
      }
    }
  }
  std::sort_heap(heap.begin(), heap.end());
  return heap;
}

}  // namespace etna::store::detail
