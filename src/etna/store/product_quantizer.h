// Product quantisation (Jegou, Douze & Schmid 2011, "Product quantization for nearest neighbor
// search"): the dimension is cut into m contiguous sub-spaces, each with its own codebook of
// K = 256 centroids found by k-means; a vector's code is the number of its nearest centroid in
// each sub-space, one byte each. Distances between a float query and a code are asymmetric
// (ADC): a per-query table holds d_j(q_j, c) for every sub-space j and centroid c, so one distance
// is m look-ups and equals the distance from q to the decoded vector.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "etna/store/types.h"

namespace etna::store {

using SquaredL2 = float (*)(const float* a, const float* b, size_t n);

// The centroid (k rows of width w at cents) nearest to x under dist; the first on a tie.
uint32_t nearest_centroid(const float* x, const float* cents, size_t k, size_t w, SquaredL2 dist);
// Lloyd's k-means, `iterations` rounds (bounded, not to convergence), over n >= 1 rows of width
// w at xs; writes k centroids to cents. Initial centroids are the first k rows of a shuffle
// drawn from rng (rows repeat when k > n); an emptied cluster restarts at a random row. Shared by
// the product quantiser's codebooks and the inverted file's coarse quantiser (ivf.h).
void kmeans(const float* xs, size_t n, size_t w, size_t k, int iterations, std::mt19937_64& rng, SquaredL2 dist,
            float* cents);

struct ProductQuantizer {
  static constexpr size_t kCentroids = 256;        // K: one byte per sub-space
  static constexpr size_t kMaxTrainPoints = 8192;  // k-means sample size (an even sample)
  static constexpr int kIterations = 12;           // Lloyd iterations: bounded, not to convergence

  bool trained = false;
  size_t dim = 0, m = 0;
  std::vector<uint32_t> start;  // m + 1 boundaries; sub-space j is components [start[j], start[j+1])
  // kCentroids * dim floats: sub-space j's centroids are kCentroids rows of width(j) at
  // kCentroids * start[j].
  std::vector<float> centroids;

  // m for a dimension and a compression ratio: ceil(4*dim / ratio) code bytes, clamped to [1, dim].
  static size_t code_bytes(size_t dim, uint32_t compression);
  // Sets dim, m and the boundaries: the first dim % m sub-spaces have one component more.
  void shape(size_t dim, size_t m);
  size_t width(size_t j) const { return start[j + 1] - start[j]; }
  const float* centroid(size_t j, size_t c) const { return &centroids[kCentroids * start[j] + c * width(j)]; }

  // Codebooks by k-means over up to kMaxTrainPoints of the vectors base + slot*dim (an even
  // sample in the given order). Initial centroids are distinct sample points (fixed seed, so the
  // same input gives the same codebooks); an emptied cluster restarts at a random sample point.
  // With no slots the result is untrained.
  static ProductQuantizer train(const float* base, size_t dim, const std::vector<uint32_t>& slots,
                                uint32_t compression);
  // out[0..m): the nearest centroid (squared L2) in each sub-space. REQUIRES: trained.
  void encode(const float* x, uint8_t* out) const;
  // out[0..dim): the centroids a code names.
  void decode(const uint8_t* code, float* out) const;
  // The ADC table for query q, m x kCentroids: entry j*K + c is sub-space j's share of the
  // collection distance between q and centroid c (squared L2 for Euclid, L1 for Manhattan,
  // minus the inner product for Dot and Cosine); a code's entries sum to distance(q, decode(code)).
  std::vector<float> table(const float* q, Distance metric) const;
  // Sum over sub-spaces of the squared L2 distance from x to its code (the k-means objective).
  double squared_error(const float* x) const;
};

}  // namespace etna::store
