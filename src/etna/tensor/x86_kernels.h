// Entry points of the x86 SIMD kernel sets (x86_kernels.inc compiled once per instruction
// set). Internal to the tensor layer; kernels.cpp puts them into tables after checking that
// the CPU has the instructions. Calling one on a CPU without them is undefined.
#pragma once
#include <cstddef>
#include <cstdint>

#define ETNA_X86_DECLARE_TILE(name)                                                                         \
  void tile_##name(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys, \
                   int nr, int nt);                                                                         \
  float vec_dot_##name(int64_t n, const void* w, const void* a);

#define ETNA_X86_DECLARE_SET(ns)                                      \
  namespace etna::tensor::ns {                                        \
  ETNA_X86_DECLARE_TILE(f32)                                          \
  ETNA_X86_DECLARE_TILE(f16)                                          \
  ETNA_X86_DECLARE_TILE(bf16)                                         \
  ETNA_X86_DECLARE_TILE(q4_0)                                         \
  ETNA_X86_DECLARE_TILE(q5_0)                                         \
  ETNA_X86_DECLARE_TILE(q8_0)                                         \
  ETNA_X86_DECLARE_TILE(q4_1)                                         \
  ETNA_X86_DECLARE_TILE(q5_1)                                         \
  ETNA_X86_DECLARE_TILE(q2_k)                                         \
  ETNA_X86_DECLARE_TILE(q3_k)                                         \
  ETNA_X86_DECLARE_TILE(q4_k)                                         \
  ETNA_X86_DECLARE_TILE(q5_k)                                         \
  ETNA_X86_DECLARE_TILE(q6_k)                                         \
  ETNA_X86_DECLARE_TILE(iq4_nl)                                       \
  ETNA_X86_DECLARE_TILE(iq4_xs)                                       \
  ETNA_X86_DECLARE_TILE(iq3_s)                                        \
  float vec_dot_q8_k(int64_t n, const void* w, const void* a);        \
  int64_t int8_madd_peak(int64_t rounds, int32_t* sink);             \
  void packed_tile_q4_0(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q8_0(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q2_k(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q3_k(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q4_k(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q5_k(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void packed_tile_q6_k(int64_t n, const uint8_t* g, const uint8_t* a, size_t as, float* y, size_t ys, int nr, \
                        int nt);                                                                              \
  void quantize_q8_0(const float* src, void* dst, int64_t n);         \
  void quantize_q8_1(const float* src, void* dst, int64_t n);         \
  void quantize_q8_k(const float* src, void* dst, int64_t n);         \
  void quantize_f16(const float* src, void* dst, int64_t n);          \
  void dequantize_f16(const void* src, float* dst, int64_t n);        \
  void axpy_f32(int64_t n, float a, const void* x, float* y);         \
  void axpy_f16(int64_t n, float a, const void* x, float* y);         \
  void gemm_f32(int m, int n, int k, const float* a, size_t rsa, size_t csa, const float* b, size_t ldb, \
                float* c, size_t ldc, bool accumulate);                                                 \
  }

ETNA_X86_DECLARE_SET(avx2)
ETNA_X86_DECLARE_SET(avx512)
ETNA_X86_DECLARE_SET(avx512vnni)

// Two neighbouring interleaved groups in 512-bit registers: the AVX-512 sets only.
#define ETNA_X86_DECLARE_PACKED16(ns)                                                                              \
  namespace etna::tensor::ns {                                                                                   \
  void packed_tile16_q4_0(int64_t n, const uint8_t* g0, const uint8_t* g1, const uint8_t* a, size_t as, float* y, \
                          size_t ys, int nt);                                                                    \
  void packed_tile16_q8_0(int64_t n, const uint8_t* g0, const uint8_t* g1, const uint8_t* a, size_t as, float* y, \
                          size_t ys, int nt);                                                                    \
  }
ETNA_X86_DECLARE_PACKED16(avx512)
ETNA_X86_DECLARE_PACKED16(avx512vnni)
#undef ETNA_X86_DECLARE_PACKED16
namespace etna::tensor::avx512vnni {
void packed_tile16_q4_k(int64_t n, const uint8_t* g0, const uint8_t* g1, const uint8_t* a, size_t as, float* y,
                        size_t ys, int nt);
void packed_tile16_q6_k(int64_t n, const uint8_t* g0, const uint8_t* g1, const uint8_t* a, size_t as, float* y,
                        size_t ys, int nt);
}

#undef ETNA_X86_DECLARE_SET
#undef ETNA_X86_DECLARE_TILE
