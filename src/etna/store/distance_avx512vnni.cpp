// AVX-512 VNNI int8 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni).
// VPDPBUSD multiplies u8 x s8 and adds groups of four into int32 lanes with no saturation;
// codes in 0..127 (distance.h) are valid as both operands.
#include "etna/store/distance_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12's AVX-512 reductions use self-initialised "undefined" registers (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace etna::store::detail::avx512vnni {

namespace {
inline __mmask64 tail64(size_t left) { return __mmask64((uint64_t(1) << left) - 1); }  // left < 64
inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }
}  // namespace

int32_t dot_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    s0 = _mm512_dpbusd_epi32(s0, load(a + i), load(b + i));
    s1 = _mm512_dpbusd_epi32(s1, load(a + i + 64), load(b + i + 64));
  }
  if (i + 64 <= n) {
    s0 = _mm512_dpbusd_epi32(s0, load(a + i), load(b + i));
    i += 64;
  }
  if (i < n) {
    __mmask64 m = tail64(n - i);
    s1 = _mm512_dpbusd_epi32(s1, _mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
}

int32_t l2sq_u8(const uint8_t* a, const uint8_t* b, size_t n) {
  __m512i s = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i d = _mm512_abs_epi8(_mm512_sub_epi8(load(a + i), load(b + i)));
    s = _mm512_dpbusd_epi32(s, d, d);
  }
  if (i < n) {
    __mmask64 m = tail64(n - i);
    __m512i d = _mm512_abs_epi8(_mm512_sub_epi8(_mm512_maskz_loadu_epi8(m, a + i), _mm512_maskz_loadu_epi8(m, b + i)));
    s = _mm512_dpbusd_epi32(s, d, d);
  }
  return _mm512_reduce_add_epi32(s);
}

}  // namespace etna::store::detail::avx512vnni
#endif
