// Small float kernels shared across layers (attention scores in the forward passes, the
// portable distance of the vector store). Plain C++: each layer's SIMD paths live in its own
// kernels.
#pragma once
#include <cstddef>

namespace etna::base {

// Sum of a[i] * b[i] over n floats, in four interleaved partial sums (a fixed order, so every
// caller rounds the same way).
inline float dot_f32(const float* a, const float* b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace etna::base
