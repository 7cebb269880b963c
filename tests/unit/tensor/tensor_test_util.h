// Helpers shared by the tensor tests: raw little-endian byte writers for building GGML blocks
// by hand, and random data.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "etna/base/half.h"

namespace etna::tensor::testing {

inline void put_u16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v & 0xFF);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
inline void put_f16(std::vector<uint8_t>& b, size_t off, float v) { put_u16(b, off, fp32_to_fp16(v)); }
inline void put_f32(std::vector<uint8_t>& b, size_t off, float v) { std::memcpy(&b[off], &v, 4); }
// The fp16 value a float becomes when stored (what the decoder will read back).
inline double as_f16(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline int random_int(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

}  // namespace etna::tensor::testing
