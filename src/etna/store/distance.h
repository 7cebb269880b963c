// Distance kernels (internal). Every metric is turned into a "distance": lower is closer, so the
// graph code has one ordering; score() converts back to what Qdrant reports.
#pragma once
#include <cstddef>
#include <cstdint>

#include "etna/store/types.h"

namespace etna::store::detail {

// Raw kernels over n components; an AVX2+FMA set is chosen at run time when the CPU has it.
// The *_u8 kernels REQUIRE codes in 0..127 (7-bit scalar quantisation; the AVX2 versions rely
// on it to multiply bytes without widening).
struct Kernels {
  float (*dot)(const float* a, const float* b, size_t n);
  float (*l2sq)(const float* a, const float* b, size_t n);
  float (*l1)(const float* a, const float* b, size_t n);
  int32_t (*dot_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  int32_t (*l2sq_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  int32_t (*l1_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  const char* name;
};
const Kernels& kernels();

// Distance between two stored-form float vectors (Cosine vectors already normalised).
inline float distance(Distance d, const float* a, const float* b, size_t n) {
  const Kernels& k = kernels();
  switch (d) {
    case Distance::Cosine:
    case Distance::Dot: return -k.dot(a, b, n);
    case Distance::Euclid: return k.l2sq(a, b, n);
    case Distance::Manhattan:
    case Distance::Hamming: return k.l1(a, b, n);
    case Distance::Jaccard: {
      float differ = k.l1(a, b, n), both = k.dot(a, b, n);
      return differ + both == 0 ? 0.0f : differ / (differ + both);
    }
  }
  return 0;
}

// The score Qdrant reports for an internal distance.
float score_of(Distance d, float distance);
// The internal distance for a score threshold (inverse of score_of).
float distance_of(Distance d, float score);

// Normalises v to unit length in place (a zero vector stays zero).
void normalize(float* v, size_t n);

}  // namespace etna::store::detail
