// AVX-512 F/BW/VL distance kernels (compiled with those -m flags; called only on CPUs with them).
// Tails are masked loads, so every length runs without a scalar loop.
#include "etna/store/distance_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12's AVX-512 reductions use self-initialised "undefined" registers (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace etna::store::detail::avx512 {

namespace {
inline __mmask16 tail16(size_t left) { return __mmask16((1u << left) - 1); }            // left < 16
inline __mmask64 tail64(size_t left) { return __mmask64((uint64_t(1) << left) - 1); }    // left < 64
inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }
}  // namespace

float dot(const float* a, const float* b, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  if (i + 16 <= n) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    i += 16;
  }
  if (i < n) {
    __mmask16 m = tail16(n - i);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float l2sq(const float* a, const float* b, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
    s0 = _mm512_fmadd_ps(d0, d0, s0);
    s1 = _mm512_fmadd_ps(d1, d1, s1);
  }
  if (i + 16 <= n) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
    s0 = _mm512_fmadd_ps(d, d, s0);
    i += 16;
  }
  if (i < n) {
    __mmask16 m = tail16(n - i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    s1 = _mm512_fmadd_ps(d, d, s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

float l1(const float* a, const float* b, size_t n) {
  __m512 s = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) s = _mm512_add_ps(s, _mm512_abs_ps(_mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    s = _mm512_add_ps(s, _mm512_abs_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i))));
  }
  return _mm512_reduce_add_ps(s);
}

// Codes are 0..127 (distance.h), so vpmaddubsw (u8 x s8, pairs summed) cannot saturate.
int32_t dot_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m512i ones = _mm512_set1_epi16(1);
  __m512i s = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(load(a + i), load(b + i)), ones));
  if (i < n) {
    __mmask64 m = tail64(n - i);
    s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_maskz_loadu_epi8(m, a + i),
                                                                   _mm512_maskz_loadu_epi8(m, b + i)), ones));
  }
  return _mm512_reduce_add_epi32(s);
}

int32_t l2sq_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  const __m512i ones = _mm512_set1_epi16(1);
  __m512i s = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i d = _mm512_abs_epi8(_mm512_sub_epi8(load(a + i), load(b + i)));
    s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(d, d), ones));
  }
  if (i < n) {
    __mmask64 m = tail64(n - i);
    __m512i d = _mm512_abs_epi8(_mm512_sub_epi8(_mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i)));
    s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(d, d), ones));
  }
  return _mm512_reduce_add_epi32(s);
}

int32_t l1_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  __m512i s = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) s = _mm512_add_epi64(s, _mm512_sad_epu8(load(a + i), load(b + i)));
  if (i < n) {
    __mmask64 m = tail64(n - i);
    s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i)));
  }
  return static_cast<int32_t>(_mm512_reduce_add_epi64(s));
}

// Eight words per step, popcount by nibble lookup (vpshufb) and vpsadbw, as in the AVX2 set.
uint32_t hamming(const uint64_t* a, const uint64_t* b, size_t words) {
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i acc = _mm512_setzero_si512();
  auto count = [&](__m512i x) {
    __m512i c = _mm512_add_epi8(_mm512_shuffle_epi8(table, _mm512_and_si512(x, low)),
                                _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(x, 4), low)));
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(c, _mm512_setzero_si512()));
  };
  size_t i = 0;
  for (; i + 8 <= words; i += 8) count(_mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i)));
  if (i < words) {
    __mmask8 m = __mmask8((1u << (words - i)) - 1);
    count(_mm512_xor_si512(_mm512_maskz_loadu_epi64(m, a + i), _mm512_maskz_loadu_epi64(m, b + i)));
  }
  return static_cast<uint32_t>(_mm512_reduce_add_epi64(acc));
}

}  // namespace etna::store::detail::avx512
#endif
