// AVX2 + FMA distance kernels (compiled with -mavx2 -mfma -mpopcnt; called only on CPUs with them).
#include "etna/store/distance_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cmath>
#include <cstdlib>

namespace etna::store::detail::avx2 {

namespace {

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

inline int64_t hsum_i64(__m256i v) {
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

inline __m256i load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

}  // namespace

float dot(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float l2sq(const float* a, const float* b, size_t n) {
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
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

float l1(const float* a, const float* b, size_t n) {
  const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 s0 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_add_ps(s0, _mm256_and_ps(mask, _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
  float s = hsum(s0);
  for (; i < n; ++i) s += std::fabs(a[i] - b[i]);
  return s;
}

// Codes are 0..127 (distance.h): a - b then fits a signed byte and vpmaddubsw's pairwise sums of
// two products (<= 2 * 127 * 127) cannot saturate, so 32 codes go per step without widening.
int32_t dot_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(load(a + i), load(b + i)), ones));
  int32_t r = hsum_i32(s);
  for (; i < n; ++i) r += int32_t(a[i]) * int32_t(b[i]);
  return r;
}

int32_t l2sq_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i d0 = _mm256_abs_epi8(_mm256_sub_epi8(load(a + i), load(b + i)));
    __m256i d1 = _mm256_abs_epi8(_mm256_sub_epi8(load(a + i + 32), load(b + i + 32)));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(d0, d0), ones));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(d1, d1), ones));
  }
  for (; i + 32 <= n; i += 32) {
    __m256i d = _mm256_abs_epi8(_mm256_sub_epi8(load(a + i), load(b + i)));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(d, d), ones));
  }
  int32_t r = hsum_i32(_mm256_add_epi32(s0, s1));
  for (; i < n; ++i) r += (int32_t(a[i]) - int32_t(b[i])) * (int32_t(a[i]) - int32_t(b[i]));
  return r;
}

int32_t l1_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  __m256i s = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) s = _mm256_add_epi64(s, _mm256_sad_epu8(load(a + i), load(b + i)));
  int32_t r = static_cast<int32_t>(hsum_i64(s));
  for (; i < n; ++i) r += std::abs(int32_t(a[i]) - int32_t(b[i]));
  return r;
}

// Four words per step: popcount of each byte by two 16-entry nibble lookups (vpshufb), bytes
// summed into the four 64-bit lanes by vpsadbw (W. Mula's method). Short strings use popcnt.
uint32_t hamming(const uint64_t* a, const uint64_t* b, size_t words) {
  size_t i = 0;
  uint64_t n = 0;
  if (words >= 8) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                           2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i acc = _mm256_setzero_si256();
    for (; i + 4 <= words; i += 4) {
      __m256i x = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
      __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x, low)),
                                  _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
      acc = _mm256_add_epi64(acc, _mm256_sad_epu8(c, _mm256_setzero_si256()));
    }
    n = uint64_t(hsum_i64(acc));
  }
  for (; i < words; ++i) n += uint64_t(_mm_popcnt_u64(a[i] ^ b[i]));
  return uint32_t(n);
}

}  // namespace etna::store::detail::avx2
#endif
