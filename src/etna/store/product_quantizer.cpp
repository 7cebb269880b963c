#include "etna/store/product_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace etna::store {

namespace {

float l2(const float* a, const float* b, size_t n) {
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

}  // namespace

uint32_t nearest_centroid(const float* x, const float* cents, size_t k, size_t w, SquaredL2 dist) {
  uint32_t best = 0;
  float bd = dist(x, cents, w);
  for (uint32_t c = 1; c < k; ++c) {
    float d = dist(x, cents + c * w, w);
    if (d < bd) bd = d, best = c;
  }
  return best;
}

void kmeans(const float* xs, size_t n, size_t w, size_t k, int iterations, std::mt19937_64& rng, SquaredL2 dist,
            float* cents) {
  std::vector<uint32_t> order(n), assign(n), count(k);
  for (size_t i = 0; i < n; ++i) order[i] = uint32_t(i);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t c = 0; c < k; ++c) std::memcpy(cents + c * w, &xs[size_t(order[c % n]) * w], w * sizeof(float));
  std::vector<double> acc(k * w, 0.0);
  for (int it = 0; it < iterations; ++it) {
    for (size_t i = 0; i < n; ++i) assign[i] = nearest_centroid(&xs[i * w], cents, k, w, dist);
    std::fill(acc.begin(), acc.end(), 0.0);
    std::fill(count.begin(), count.end(), 0u);
    for (size_t i = 0; i < n; ++i) {
      ++count[assign[i]];
      for (size_t d = 0; d < w; ++d) acc[assign[i] * w + d] += xs[i * w + d];
    }
    for (size_t c = 0; c < k; ++c) {
      if (count[c] == 0) {
        std::memcpy(cents + c * w, &xs[size_t(rng() % n) * w], w * sizeof(float));
        continue;
      }
      for (size_t d = 0; d < w; ++d) cents[c * w + d] = float(acc[c * w + d] / double(count[c]));
    }
  }
}

namespace {
uint32_t nearest(const float* x, const float* cents, size_t w) {
  return nearest_centroid(x, cents, ProductQuantizer::kCentroids, w, l2);
}
}  // namespace

size_t ProductQuantizer::code_bytes(size_t dim, uint32_t compression) {
  return std::clamp<size_t>((4 * dim + compression - 1) / compression, 1, dim);
}

void ProductQuantizer::shape(size_t d, size_t sub) {
  dim = d, m = sub;
  start.assign(m + 1, 0);
  for (size_t j = 0; j < m; ++j) start[j + 1] = uint32_t(start[j] + d / m + (j < d % m ? 1 : 0));
}

void ProductQuantizer::encode(const float* x, uint8_t* out) const {
  for (size_t j = 0; j < m; ++j) out[j] = uint8_t(nearest(x + start[j], centroid(j, 0), width(j)));
}

void ProductQuantizer::decode(const uint8_t* code, float* out) const {
  for (size_t j = 0; j < m; ++j) std::memcpy(out + start[j], centroid(j, code[j]), width(j) * sizeof(float));
}

double ProductQuantizer::squared_error(const float* x) const {
  double e = 0;
  for (size_t j = 0; j < m; ++j) {
    const float* xj = x + start[j];
    e += l2(xj, centroid(j, nearest(xj, centroid(j, 0), width(j))), width(j));
  }
  return e;
}

ProductQuantizer ProductQuantizer::train(const float* base, size_t dim, const std::vector<uint32_t>& slots,
                                         uint32_t compression) {
  ProductQuantizer pq;
  pq.shape(dim, code_bytes(dim, compression));
  if (slots.empty()) return pq;
  size_t step = std::max<size_t>(1, (slots.size() + kMaxTrainPoints - 1) / kMaxTrainPoints);
  std::vector<const float*> sample;
  for (size_t i = 0; i < slots.size(); i += step) sample.push_back(base + size_t(slots[i]) * dim);
  const size_t n = sample.size();
  pq.centroids.assign(kCentroids * dim, 0.0f);
  std::mt19937_64 rng(20110101);
  std::vector<float> xs;
  for (size_t j = 0; j < pq.m; ++j) {
    const size_t w = pq.width(j), off = pq.start[j];
    xs.resize(n * w);  // this sub-space of the sample, rows of width w
    for (size_t i = 0; i < n; ++i) std::memcpy(&xs[i * w], sample[i] + off, w * sizeof(float));
    kmeans(xs.data(), n, w, kCentroids, kIterations, rng, l2, &pq.centroids[kCentroids * off]);
  }
  pq.trained = true;
  return pq;
}

std::vector<float> ProductQuantizer::table(const float* q, Distance metric) const {
  std::vector<float> t(m * kCentroids);
  for (size_t j = 0; j < m; ++j) {
    const size_t w = width(j);
    const float* qj = q + start[j];
    for (size_t c = 0; c < kCentroids; ++c) {
      const float* cj = centroid(j, c);
      float s = 0;
      switch (metric) {
        case Distance::Euclid: s = l2(qj, cj, w); break;
        case Distance::Manhattan:
          for (size_t d = 0; d < w; ++d) s += std::fabs(qj[d] - cj[d]);
          break;
        default:
          for (size_t d = 0; d < w; ++d) s -= qj[d] * cj[d];
          break;
      }
      t[j * kCentroids + c] = s;
    }
  }
  return t;
}

}  // namespace etna::store
