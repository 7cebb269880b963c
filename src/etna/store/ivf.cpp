#include "etna/store/ivf.h"

#include <cmath>
#include <cstring>
#include <random>

namespace etna::store::detail {

size_t InvertedFile::default_nlist(size_t n) {
  return std::clamp<size_t>(size_t(std::lround(4.0 * std::sqrt(double(n)))), 1, 65536);
}

size_t InvertedFile::default_nprobe(size_t nlist) { return std::min(nlist, std::max<size_t>(8, nlist / 16)); }

InvertedFile InvertedFile::train(const float* base, size_t dim, Distance metric, const std::vector<uint32_t>& slots,
                                 size_t nlist, uint32_t pq_compression) {
  InvertedFile f;
  f.dim_ = dim;
  f.set_metric(metric);
  const Kernels& k = kernels();
  if (slots.empty() || nlist == 0) return f;
  nlist = std::min(nlist, slots.size());
  const size_t want = std::min(kMaxSample, std::max(nlist, nlist * kSamplePerList));
  const size_t step = std::max<size_t>(1, (slots.size() + want - 1) / want);
  std::vector<float> xs;
  std::vector<uint32_t> sample;
  for (size_t i = 0; i < slots.size(); i += step) {
    sample.push_back(slots[i]);
    xs.insert(xs.end(), base + size_t(slots[i]) * dim, base + size_t(slots[i]) * dim + dim);
  }
  f.centroids_.resize(nlist * dim);
  std::mt19937_64 rng(20030101);
  kmeans(xs.data(), sample.size(), dim, nlist, kIterations, rng, k.l2sq, f.centroids_.data());
  f.nlist_ = nlist;
  f.lists_.resize(nlist);
  if (pq_compression) f.pq_ = ProductQuantizer::train(base, dim, sample, pq_compression);
  return f;
}

void InvertedFile::set_metric(Distance metric) {
  metric_ = metric;
  const Kernels& k = kernels();
  switch (metric) {
    case Distance::Cosine:
    case Distance::Dot: dist_ = k.dot, negate_ = true; break;
    case Distance::Manhattan: dist_ = k.l1; break;
    default: dist_ = k.l2sq; break;
  }
}

InvertedFile InvertedFile::restore(size_t dim, Distance metric, std::vector<float> centroids, ProductQuantizer pq) {
  InvertedFile f;
  f.dim_ = dim;
  f.set_metric(metric);
  f.nlist_ = centroids.size() / dim;
  f.centroids_ = std::move(centroids);
  f.pq_ = std::move(pq);
  f.lists_.resize(f.nlist_);
  return f;
}

void InvertedFile::add(uint32_t s, const float* x) {
  uint32_t l = nearest_centroid(x, centroids_.data(), nlist_, dim_, kernels().l2sq);
  if (!pq_.trained) return add_to(s, l, nullptr);
  std::vector<uint8_t> code(pq_.m);
  pq_.encode(x, code.data());
  add_to(s, l, code.data());
}

void InvertedFile::add_to(uint32_t s, uint32_t l, const uint8_t* code) {
  remove(s);
  if (list_of_.size() <= s) {
    list_of_.resize(size_t(s) + 1 + s / 4, kNone);
    pos_.resize(list_of_.size(), 0);
  }
  List& L = lists_[l];
  list_of_[s] = l;
  pos_[s] = uint32_t(L.slots.size());
  L.slots.push_back(s);
  if (pq_.trained) L.codes.insert(L.codes.end(), code, code + pq_.m);
  ++size_;
}

void InvertedFile::remove(uint32_t s) {
  if (!contains(s)) return;
  List& L = lists_[list_of_[s]];
  const size_t at = pos_[s], last = L.slots.size() - 1, m = pq_.trained ? pq_.m : 0;
  if (at != last) {
    uint32_t moved = L.slots[last];
    L.slots[at] = moved;
    pos_[moved] = uint32_t(at);
    if (m) std::memcpy(&L.codes[at * m], &L.codes[last * m], m);
  }
  L.slots.pop_back();
  if (m) L.codes.resize(last * m);
  list_of_[s] = kNone;
  --size_;
}

std::vector<uint32_t> InvertedFile::probe(const float* q, size_t nprobe) const {
  nprobe = std::clamp<size_t>(nprobe, 1, nlist_);
  const Kernels& k = kernels();
  std::vector<Candidate> c(nlist_);
  for (uint32_t l = 0; l < nlist_; ++l) {
    const float* x = &centroids_[size_t(l) * dim_];
    c[l] = {metric_ == Distance::Dot ? -k.dot(q, x, dim_) : k.l2sq(q, x, dim_), l};
  }
  std::partial_sort(c.begin(), c.begin() + nprobe, c.end());
  std::vector<uint32_t> out(nprobe);
  for (size_t i = 0; i < nprobe; ++i) out[i] = c[i].node;
  return out;
}

float InvertedFile::scan_distance(const float* q, const float* v) const {
  float r = dist_(q, v, dim_);
  return negate_ ? -r : r;
}

size_t InvertedFile::memory_bytes() const {
  size_t b = (centroids_.capacity() + pq_.centroids.capacity()) * sizeof(float) +
             (list_of_.capacity() + pos_.capacity()) * sizeof(uint32_t);
  for (const List& L : lists_) b += L.slots.capacity() * sizeof(uint32_t) + L.codes.capacity() + sizeof(List);
  return b;
}

}  // namespace etna::store::detail
