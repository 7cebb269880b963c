// Clustered test vectors for the store's index and quantisation tests: point `id` lies near
// centre id % centres (centre coordinates ~ N(0, 1)), spread by `spread` times N(0, 1) noise.
// Deterministic in (id, dim, centres, spread), so a test can regenerate any point or query.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace etna::test {

inline std::vector<float> clustered_point(uint64_t id, size_t dim, uint32_t centres, float spread) {
  std::mt19937 c(uint32_t(id % centres) * 7919u + 1), r(uint32_t(id) * 104729u + 3);
  std::normal_distribution<float> gc(0.0f, 1.0f), gr(0.0f, 1.0f);  // one each: they cache a draw
  std::vector<float> v(dim);
  for (size_t k = 0; k < dim; ++k) v[k] = gc(c) + spread * gr(r);
  return v;
}

}  // namespace etna::test
