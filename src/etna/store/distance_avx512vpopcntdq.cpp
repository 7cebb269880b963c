// Hamming distance with AVX-512 VPOPCNTDQ (compiled with -mavx512f -mavx512vpopcntdq): eight
// 64-bit words per VPOPCNTQ, the tail by a masked load.
#include "etna/store/distance_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12's AVX-512 reductions use self-initialised "undefined" registers (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace etna::store::detail::avx512vpopcntdq {

uint32_t hamming(const uint64_t* a, const uint64_t* b, size_t words) {
  __m512i acc = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 8 <= words; i += 8)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i))));
  if (i < words) {
    __mmask8 m = __mmask8((1u << (words - i)) - 1);
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(m, a + i),
                                                                     _mm512_maskz_loadu_epi64(m, b + i))));
  }
  return static_cast<uint32_t>(_mm512_reduce_add_epi64(acc));
}

}  // namespace etna::store::detail::avx512vpopcntdq
#endif
