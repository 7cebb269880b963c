// Distance kernels (internal). Every metric is turned into a "distance": lower is closer, so the
// graph code has one ordering; score() converts back to what Qdrant reports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "etna/store/types.h"

namespace etna::store::detail {

// Raw kernels over n components (n any length, 0 included; no alignment required). Sets for
// scalar, AVX2 and AVX-512 code (store/distance_*.cpp, each compiled with its own -m flags) are
// chosen at run time by what the CPU has; ETNA_KERNELS=scalar|avx2|avx512 forces one, as for the
// tensor kernels. The *_u8 kernels REQUIRE codes in 0..127 (7-bit scalar quantisation: the SIMD
// versions multiply bytes as u8 x s8 without widening). hamming() counts differing bits of two
// bit strings of `words` uint64 words.
struct Kernels {
  float (*dot)(const float* a, const float* b, size_t n);
  float (*l2sq)(const float* a, const float* b, size_t n);
  float (*l1)(const float* a, const float* b, size_t n);
  int32_t (*dot_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  int32_t (*l2sq_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  int32_t (*l1_u8)(const uint8_t* a, const uint8_t* b, size_t n);
  uint32_t (*hamming)(const uint64_t* a, const uint64_t* b, size_t words);
  const char* name;  // e.g. "avx512+vnni+vpopcntdq"
};
// The active set: ETNA_KERNELS when set (etna::Error when the name is unknown or the CPU cannot
// run it), else the best the CPU has. Chosen once per process.
const Kernels& kernels();

// Every variant this build knows, best last: "scalar", "avx2", "avx512" (F/BW/VL only),
// "avx512+vnni" (int8 with VPDPBUSD), "avx512+vpopcntdq" (Hamming with VPOPCNTQ) and the
// combination kernels() picks on a CPU with both. For tests and benchmarks.
std::vector<std::string> kernel_variant_names();
// The variant called `name`, or null when this CPU (or build) cannot run it.
const Kernels* kernel_variant(const std::string& name);

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
