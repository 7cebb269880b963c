// Scalar kernels for the K-quants (256-element super-blocks) and their Q8_K activations.
// Each super-block is first unpacked into one small integer per element plus per-sub-block
// scales; dequantisation scales those, dot products sum them against Q8_K integers exactly.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "etna/base/half.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor::scalar {
namespace {

// 2-bit fields (Q2_K, Q3_K low bits): element e lives in byte 32*(e/128) + e%32 at bit
// 2*((e%128)/32).
inline void unpack_2bit(const uint8_t* qs, int8_t* q) {
  for (int e = 0; e < kQK_K; ++e) q[e] = static_cast<int8_t>((qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
}

// 4-bit fields (Q4_K, Q5_K low bits): element e is the low nibble of qs[32*(e/64) + e%32]
// when e%64 < 32, else the high nibble.
inline void unpack_4bit(const uint8_t* qs, int8_t* q) {
  for (int e = 0; e < kQK_K; ++e) {
    const uint8_t byte = qs[32 * (e / 64) + e % 32];
    q[e] = static_cast<int8_t>((e % 64) < 32 ? (byte & 0x0F) : (byte >> 4));
  }
}

// Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins in 12 bytes. Sub-blocks 0..3 keep
// theirs in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 keep the
// low 4 bits in the nibbles of bytes 8..11 and the top 2 bits in bits 6..7 of bytes 0..7.
inline void unpack_k4_scales(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
    mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

// Q3_K: sixteen 6-bit scales in 12 bytes, stored offset by 32. Low 4 bits: nibbles of bytes
// 0..7 (sub-block j in byte j%8, high nibble when j >= 8); top 2 bits: bits 2*(j/4) of byte
// 8 + j%4.
inline void unpack_q3_scales(const uint8_t* s, int* sc) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc[j] = (lo | (hi << 4)) - 32;
  }
}

inline void unpack_q3(const BlockQ3_K& b, int8_t* q) {
  unpack_2bit(b.qs, q);
  // The high bit of element e is bit (e/32) of hmask[e%32]; when clear, 4 is subtracted.
  for (int e = 0; e < kQK_K; ++e)
    q[e] = static_cast<int8_t>(q[e] - ((((b.hmask[e % 32] >> (e / 32)) & 1) ^ 1) << 2));
}

inline void unpack_q5(const BlockQ5_K& b, int8_t* q) {
  unpack_4bit(b.qs, q);
  // The fifth bit of element e is bit (e/32) of qh[e%32].
  for (int e = 0; e < kQK_K; ++e) q[e] = static_cast<int8_t>(q[e] | (((b.qh[e % 32] >> (e / 32)) & 1) << 4));
}

// Q6_K: element e = 128*n + 32*k + l has its low 4 bits in ql[64*n + 32*(k&1) + l]
// (low nibble for k < 2, high for k >= 2) and its top 2 bits at bit 2*k of qh[32*n + l].
inline void unpack_q6(const BlockQ6_K& b, int8_t* q) {
  for (int e = 0; e < kQK_K; ++e) {
    const int n = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t low_byte = b.ql[64 * n + 32 * (k & 1) + l];
    const int low = k < 2 ? (low_byte & 0x0F) : (low_byte >> 4);
    const int high = (b.qh[32 * n + l] >> (2 * k)) & 3;
    q[e] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

// Sum over `len` elements of weight integers times activation integers.
inline int dot_i8(const int8_t* x, const int8_t* y, int len) {
  int sum = 0;
  for (int l = 0; l < len; ++l) sum += x[l] * y[l];
  return sum;
}

// Round to nearest, ties to even, as GGML's nearest_int does (valid for |x| < 2^22).
inline int nearest_int(float x) {
  float v = x + 12582912.0f;  // 1.5 * 2^23: the integer part lands in the low mantissa bits
  int32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace

// ---- dequantisation ----

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ2_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    unpack_2bit(b[i].qs, q);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * static_cast<float>(b[i].scales[s] & 0x0F);
      const float ml = dmin * static_cast<float>(b[i].scales[s] >> 4);
      for (int l = 0; l < 16; ++l) dst[16 * s + l] = dl * static_cast<float>(q[16 * s + l]) - ml;
    }
  }
}

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ3_K*>(src);
  int8_t q[kQK_K];
  int sc[16];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d);
    unpack_q3(b[i], q);
    unpack_q3_scales(b[i].scales, sc);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * static_cast<float>(sc[s]);
      for (int l = 0; l < 16; ++l) dst[16 * s + l] = dl * static_cast<float>(q[16 * s + l]);
    }
  }
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_K*>(src);
  int8_t q[kQK_K];
  uint8_t sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    unpack_4bit(b[i].qs, q);
    unpack_k4_scales(b[i].scales, sc, mn);
    for (int s = 0; s < 8; ++s) {
      const float ds = d * static_cast<float>(sc[s]), ms = dmin * static_cast<float>(mn[s]);
      for (int l = 0; l < 32; ++l) dst[32 * s + l] = ds * static_cast<float>(q[32 * s + l]) - ms;
    }
  }
}

void dequantize_q5_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_K*>(src);
  int8_t q[kQK_K];
  uint8_t sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    unpack_q5(b[i], q);
    unpack_k4_scales(b[i].scales, sc, mn);
    for (int s = 0; s < 8; ++s) {
      const float ds = d * static_cast<float>(sc[s]), ms = dmin * static_cast<float>(mn[s]);
      for (int l = 0; l < 32; ++l) dst[32 * s + l] = ds * static_cast<float>(q[32 * s + l]) - ms;
    }
  }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ6_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d);
    unpack_q6(b[i], q);
    for (int s = 0; s < 16; ++s) {
      const float ds = d * static_cast<float>(b[i].scales[s]);
      for (int l = 0; l < 16; ++l) dst[16 * s + l] = ds * static_cast<float>(q[16 * s + l]);
    }
  }
}

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K)
    for (int l = 0; l < kQK_K; ++l) dst[l] = b[i].d * static_cast<float>(b[i].qs[l]);
}

// ---- Q8_K quantisation (GGML's reference: scale by the signed extreme, ties to even) ----

void quantize_q8_k(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, src += kQK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int l = 0; l < kQK_K; ++l) {
      if (std::fabs(src[l]) > amax) {
        amax = std::fabs(src[l]);
        max = src[l];
      }
    }
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof b[i]);
      continue;
    }
    // The extreme value maps to -127; +127 clamps the one value that could round to 128.
    const float iscale = -127.0f / max;
    for (int l = 0; l < kQK_K; ++l) b[i].qs[l] = static_cast<int8_t>(std::min(127, nearest_int(iscale * src[l])));
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * g + l];
      b[i].bsums[g] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

// ---- dot products against Q8_K ----

float vec_dot_q2_k_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_2bit(x[i].qs, q);
    int isum = 0, msum = 0;
    for (int s = 0; s < 16; ++s) {
      isum += (x[i].scales[s] & 0x0F) * dot_i8(q + 16 * s, y[i].qs + 16 * s, 16);
      msum += (x[i].scales[s] >> 4) * y[i].bsums[s];
    }
    const float dall = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
    sum += dall * static_cast<float>(isum) - dmin * static_cast<float>(msum);
  }
  return sum;
}

float vec_dot_q3_k_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ3_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  int sc[16];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_q3(x[i], q);
    unpack_q3_scales(x[i].scales, sc);
    int isum = 0;
    for (int s = 0; s < 16; ++s) isum += sc[s] * dot_i8(q + 16 * s, y[i].qs + 16 * s, 16);
    sum += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

namespace {

// Q4_K and Q5_K differ only in how the element integers are unpacked.
template <typename Block, void (*Unpack)(const Block&, int8_t*)>
float dot_k4_family(int64_t n, const Block* x, const BlockQ8_K* y) {
  int8_t q[kQK_K];
  uint8_t sc[8], mn[8];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    Unpack(x[i], q);
    unpack_k4_scales(x[i].scales, sc, mn);
    int isum = 0, msum = 0;
    for (int s = 0; s < 8; ++s) {
      isum += sc[s] * dot_i8(q + 32 * s, y[i].qs + 32 * s, 32);
      msum += mn[s] * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
    }
    sum += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum) -
           fp16_to_fp32(x[i].dmin) * y[i].d * static_cast<float>(msum);
  }
  return sum;
}

inline void unpack_q4_block(const BlockQ4_K& b, int8_t* q) { unpack_4bit(b.qs, q); }

}  // namespace

float vec_dot_q4_k_q8_k(int64_t n, const void* w, const void* a) {
  return dot_k4_family<BlockQ4_K, unpack_q4_block>(n, static_cast<const BlockQ4_K*>(w),
                                                   static_cast<const BlockQ8_K*>(a));
}

float vec_dot_q5_k_q8_k(int64_t n, const void* w, const void* a) {
  return dot_k4_family<BlockQ5_K, unpack_q5>(n, static_cast<const BlockQ5_K*>(w), static_cast<const BlockQ8_K*>(a));
}

float vec_dot_q6_k_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_q6(x[i], q);
    int isum = 0;
    for (int s = 0; s < 16; ++s) isum += x[i].scales[s] * dot_i8(q + 16 * s, y[i].qs + 16 * s, 16);
    sum += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

float vec_dot_q8_k_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i)
    sum += x[i].d * y[i].d * static_cast<float>(dot_i8(x[i].qs, y[i].qs, kQK_K));
  return sum;
}

}  // namespace etna::tensor::scalar
