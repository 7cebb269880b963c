// The store's SIMD distance kernels, one namespace per instruction set (internal; see
// distance.h for the contracts). Each set lives in its own distance_<set>.cpp, the only file
// compiled with that set's -m flags (CMakeLists.txt), so the binary runs on any x86-64 CPU and
// calls a set only after checking the CPU has it (distance.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace etna::store::detail {

#define ETNA_STORE_FLOAT_KERNELS                                \
  float dot(const float* a, const float* b, size_t n);          \
  float l2sq(const float* a, const float* b, size_t n);         \
  float l1(const float* a, const float* b, size_t n);
#define ETNA_STORE_U8_KERNELS                                             \
  int32_t dot_u8(const uint8_t* a, const uint8_t* b, size_t n);           \
  int32_t l2sq_u8(const uint8_t* a, const uint8_t* b, size_t n);          \
  int32_t l1_u8(const uint8_t* a, const uint8_t* b, size_t n);
#define ETNA_STORE_HAMMING_KERNEL uint32_t hamming(const uint64_t* a, const uint64_t* b, size_t words);

#if defined(__x86_64__)
namespace avx2 {  // AVX2 + FMA (+ POPCNT)
ETNA_STORE_FLOAT_KERNELS
ETNA_STORE_U8_KERNELS
ETNA_STORE_HAMMING_KERNEL
}  // namespace avx2
namespace avx512 {  // AVX-512 F/BW/VL: masked tails, int8 with VPMADDUBSW, popcount by nibble lookup
ETNA_STORE_FLOAT_KERNELS
ETNA_STORE_U8_KERNELS
ETNA_STORE_HAMMING_KERNEL
}  // namespace avx512
namespace avx512vnni {  // + VNNI: int8 products summed by VPDPBUSD (|a - b| has no VNNI form: l1_u8 stays AVX-512BW's)
int32_t dot_u8(const uint8_t* a, const uint8_t* b, size_t n);
int32_t l2sq_u8(const uint8_t* a, const uint8_t* b, size_t n);
}  // namespace avx512vnni
namespace avx512vpopcntdq {  // + VPOPCNTDQ: Hamming with VPOPCNTQ
ETNA_STORE_HAMMING_KERNEL
}  // namespace avx512vpopcntdq
#endif

#undef ETNA_STORE_FLOAT_KERNELS
#undef ETNA_STORE_U8_KERNELS
#undef ETNA_STORE_HAMMING_KERNEL

}  // namespace etna::store::detail
