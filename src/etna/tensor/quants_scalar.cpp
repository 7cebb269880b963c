// Scalar kernels for the 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
// Quantisers round exactly as GGML's reference quantisers do; dot products sum integer
// products per block and scale once per block, like llama.cpp's reference dot products.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "etna/base/half.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor::scalar {
namespace {

constexpr int kHalf = kQK / 2;

// The value of largest magnitude (the first one on ties), keeping its sign.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, int n, float* lo, float* hi) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < n; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  *lo = mn;
  *hi = mx;
}

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof v);
  return v;
}

// The 5-bit value of element j (0..31) of a Q5 block.
inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
  const int nibble = j < kHalf ? (qs[j] & 0x0F) : (qs[j - kHalf] >> 4);
  return nibble | static_cast<int>(((qh >> j) & 1u) << 4);
}

// Sum over a block of the 4-bit weight values times the int8 activations.
inline int dot_nibbles(const uint8_t* qs, const int8_t* y, int offset) {
  int lo = 0, hi = 0;
  for (int j = 0; j < kHalf; ++j) {
    lo += ((qs[j] & 0x0F) - offset) * y[j];
    hi += ((qs[j] >> 4) - offset) * y[j + kHalf];
  }
  return lo + hi;
}

inline int dot_q5(const uint8_t* qs, uint32_t qh, const int8_t* y, int offset) {
  int sum = 0;
  for (int j = 0; j < kQK; ++j) sum += (q5_value(qs, qh, j) - offset) * y[j];
  return sum;
}

// Packs 32 values of 0..15 (or the low nibbles of 0..31) two per byte: j low, j+16 high.
void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < kHalf; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kHalf] & 0x0F) << 4));
}

uint32_t pack_fifth_bits(const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1u) << j;
  return qh;
}

}  // namespace

// ---- dequantisation ----

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = static_cast<float>((b[i].qs[j] & 0x0F) - 8) * d;
      dst[j + kHalf] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
      dst[j + kHalf] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q5_value(b[i].qs, qh, j) - 16) * d;
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q5_value(b[i].qs, qh, j)) * d + m;
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

// ---- quantisation (GGML reference rounding) ----

void quantize_q4_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    // The extreme value maps to -8 exactly, so the full range -8..7 is used.
    const float d = signed_absmax(src, kQK) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(src[j] * id + 8.5f)));
    pack_nibbles(q, b[i].qs);
  }
}

void quantize_q4_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    float lo, hi;
    min_max(src, kQK, &lo, &hi);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].m = fp32_to_fp16(lo);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>((src[j] - lo) * id + 0.5f)));
    pack_nibbles(q, b[i].qs);
  }
}

void quantize_q5_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float d = signed_absmax(src, kQK) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(src[j] * id + 16.5f)));
    pack_nibbles(q, b[i].qs);
    const uint32_t qh = pack_fifth_bits(q);
    std::memcpy(b[i].qh, &qh, sizeof qh);
  }
}

void quantize_q5_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    float lo, hi;
    min_max(src, kQK, &lo, &hi);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].m = fp32_to_fp16(lo);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>((src[j] - lo) * id + 0.5f)));
    pack_nibbles(q, b[i].qs);
    const uint32_t qh = pack_fifth_bits(q);
    std::memcpy(b[i].qh, &qh, sizeof qh);
  }
}

namespace {

// Q8_0 and Q8_1 share the rounding: d = amax / 127, q = round-half-away(x / d).
float quantize_q8_block(const float* x, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  return d;
}

}  // namespace

void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) b[i].d = fp32_to_fp16(quantize_q8_block(src, b[i].qs));
}

void quantize_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float d = quantize_q8_block(src, b[i].qs);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += b[i].qs[j];
    b[i].d = fp32_to_fp16(d);
    b[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

// ---- dot products ----

float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i)
    sum += static_cast<float>(dot_nibbles(x[i].qs, y[i].qs, 8)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  return sum;
}

float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    // sum_j (d q_j + m) * dy y_j = d dy sum_j q_j y_j + m * s, with s = dy * sum_j y_j.
    const int sumi = dot_nibbles(x[i].qs, y[i].qs, 0);
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int sumi = dot_q5(x[i].qs, load_qh(x[i].qh), y[i].qs, 16);
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi);
  }
  return sum;
}

float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int sumi = dot_q5(x[i].qs, load_qh(x[i].qh), y[i].qs, 0);
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

namespace {

inline int dot_int8(const int8_t* x, const int8_t* y) {
  int sum = 0;
  for (int j = 0; j < kQK; ++j) sum += x[j] * y[j];
  return sum;
}

}  // namespace

float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i)
    sum += static_cast<float>(dot_int8(x[i].qs, y[i].qs)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  return sum;
}

float vec_dot_q8_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i)
    sum += static_cast<float>(dot_int8(x[i].qs, y[i].qs)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  return sum;
}

}  // namespace etna::tensor::scalar
