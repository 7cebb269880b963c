#include "etna/store/distance.h"

#include <cmath>

#include "etna/base/vector_ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace etna::store::detail {

namespace {

float dot_scalar(const float* a, const float* b, size_t n) { return base::dot_f32(a, b, n); }

float l2sq_scalar(const float* a, const float* b, size_t n) {
  float s0 = 0, s1 = 0;
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
    s0 += d0 * d0;
    s1 += d1 * d1;
  }
  for (; i < n; ++i) s0 += (a[i] - b[i]) * (a[i] - b[i]);
  return s0 + s1;
}

float l1_scalar(const float* a, const float* b, size_t n) {
  float s = 0;
  for (size_t i = 0; i < n; ++i) s += std::fabs(a[i] - b[i]);
  return s;
}

int32_t dot_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += int32_t(a[i]) * int32_t(b[i]);
  return s;
}

int32_t l2sq_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) {
    int32_t d = int32_t(a[i]) - int32_t(b[i]);
    s += d * d;
  }
  return s;
}

int32_t l1_u8_scalar(const uint8_t* a, const uint8_t* b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += std::abs(int32_t(a[i]) - int32_t(b[i]));
  return s;
}

#if defined(__x86_64__)
#define ETNA_AVX2 __attribute__((target("avx2,fma")))

ETNA_AVX2 inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

ETNA_AVX2 inline int32_t hsum256_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

ETNA_AVX2 float dot_avx2(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

ETNA_AVX2 float l2sq_avx2(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
  }
  float s = hsum256(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

ETNA_AVX2 float l1_avx2(const float* a, const float* b, size_t n) {
  const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 s0 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_add_ps(s0, _mm256_and_ps(mask, _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
  float s = hsum256(s0);
  for (; i < n; ++i) s += std::fabs(a[i] - b[i]);
  return s;
}

// The int8 kernels take codes in 0..127 (see distance.h): then a - b fits a signed byte and
// vpmaddubsw's pairwise sums of two products (<= 2 * 127 * 127) cannot saturate, so 32 codes
// are handled per step without widening.
ETNA_AVX2 int32_t dot_u8_avx2(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones));
  }
  int32_t r = hsum256_i32(s);
  for (; i < n; ++i) r += int32_t(a[i]) * int32_t(b[i]);
  return r;
}

ETNA_AVX2 int32_t l2sq_u8_avx2(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i d0 = _mm256_abs_epi8(_mm256_sub_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i))));
    __m256i d1 = _mm256_abs_epi8(_mm256_sub_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 32)),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 32))));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(d0, d0), ones));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(d1, d1), ones));
  }
  for (; i + 32 <= n; i += 32) {
    __m256i d = _mm256_abs_epi8(_mm256_sub_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i))));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(d, d), ones));
  }
  int32_t r = hsum256_i32(_mm256_add_epi32(s0, s1));
  for (; i < n; ++i) r += (int32_t(a[i]) - int32_t(b[i])) * (int32_t(a[i]) - int32_t(b[i]));
  return r;
}

ETNA_AVX2 int32_t l1_u8_avx2(const uint8_t* a, const uint8_t* b, size_t n) {
  __m256i s = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    s = _mm256_add_epi64(s, _mm256_sad_epu8(x, y));
  }
  alignas(32) int64_t parts[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(parts), s);
  int32_t r = static_cast<int32_t>(parts[0] + parts[1] + parts[2] + parts[3]);
  for (; i < n; ++i) r += std::abs(int32_t(a[i]) - int32_t(b[i]));
  return r;
}
#endif

Kernels choose() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {dot_avx2, l2sq_avx2, l1_avx2, dot_u8_avx2, l2sq_u8_avx2, l1_u8_avx2, "avx2"};
#endif
  return {dot_scalar, l2sq_scalar, l1_scalar, dot_u8_scalar, l2sq_u8_scalar, l1_u8_scalar, "scalar"};
}

}  // namespace

const Kernels& kernels() {
  static const Kernels k = choose();
  return k;
}

float score_of(Distance d, float distance) {
  switch (d) {
    case Distance::Cosine:
    case Distance::Dot: return -distance;
    case Distance::Euclid: return std::sqrt(std::max(distance, 0.0f));
    default: return distance;
  }
}

float distance_of(Distance d, float score) {
  switch (d) {
    case Distance::Cosine:
    case Distance::Dot: return -score;
    case Distance::Euclid: return score < 0 ? -1.0f : score * score;
    default: return score;
  }
}

void normalize(float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  if (s <= 0) return;
  float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (size_t i = 0; i < n; ++i) v[i] *= inv;
}

}  // namespace etna::store::detail
