// Scalar kernels for the IQ formats: IQ4_NL (32-element blocks, Q8_0 activations), IQ4_XS and
// IQ3_S (256-element super-blocks, Q8_K activations). As for the K-quants, each block is first
// unpacked into one small signed integer per element plus integer sub-block scales, so a dot
// product is an exact integer sum per block scaled once by the two block scales.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "etna/base/half.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/iquants_tables.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor::scalar {
namespace {

// The 32 table levels of a 16-byte nibble array: element j from the low nibble of qs[j],
// element j + 16 from its high nibble.
inline void unpack_nl32(const uint8_t* qs, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = kIQ4NLValues[qs[j] & 0x0F];
    q[j + 16] = kIQ4NLValues[qs[j] >> 4];
  }
}

// IQ4_XS: the 6-bit scale of sub-block s, minus its offset of 32.
inline int iq4xs_scale(const BlockIQ4_XS& b, int s) {
  const int lo = (b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0F;
  const int hi = (b.scales_h >> (2 * s)) & 3;
  return (lo | (hi << 4)) - 32;
}

// IQ3_S: the signed grid values of all 256 elements (|q| odd, 1..15).
inline void unpack_iq3s(const BlockIQ3_S& b, int8_t* q) {
  for (int g = 0; g < kQK_K / 4; ++g) {
    const int index = b.qs[g] | (((b.qh[g / 8] >> (g % 8)) & 1) << 8);
    const uint32_t point = kIQ3SGrid[index];
    for (int k = 0; k < 4; ++k) {
      const int e = 4 * g + k;
      const int v = static_cast<int>((point >> (8 * k)) & 0xFF);
      q[e] = static_cast<int8_t>(((b.signs[e / 8] >> (e % 8)) & 1) ? -v : v);
    }
  }
}

// IQ3_S: the odd multiplier 1 + 2 * sc of 32-element sub-block s.
inline int iq3s_scale(const BlockIQ3_S& b, int s) { return 1 + 2 * ((b.scales[s / 2] >> (4 * (s % 2))) & 0x0F); }

// The level nearest to v; on an exact tie the upper one (GGML's choice).
inline int nearest_level(float v) {
  if (v <= kIQ4NLValues[0]) return 0;
  if (v >= kIQ4NLValues[15]) return 15;
  int hi = 1;
  while (v >= kIQ4NLValues[hi]) ++hi;  // kIQ4NLValues[hi - 1] <= v < kIQ4NLValues[hi]
  return v - kIQ4NLValues[hi - 1] < kIQ4NLValues[hi] - v ? hi - 1 : hi;
}

// Round to nearest, ties to even (GGML's nearest_int; |x| < 2^22).
inline int nearest_int(float x) {
  float v = x + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

// The scale of one 32-element group for the IQ4 levels, by weighted least squares with the
// weights w = x^2 (no importance matrix) or, given importance qw, w = qw * sqrt(sigma2 + x^2)
// (sigma2: twice the mean square of the super-block): for a trial scale the levels are the nearest ones,
// and the scale that best fits them (sum w q x / sum w q^2) is kept when it explains more of
// the group (larger (sum w q x)^2 / sum w q^2). The trials put the group's extreme value at
// the outermost level and at 7 steps on either side of it.
float fit_iq4_group(const float* x, const float* qw = nullptr, float sigma2 = 0.0f) {
  float weight[32];
  for (int j = 0; j < 32; ++j) weight[j] = qw ? qw[j] * std::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < 1e-15f) return 0.0f;
  auto fit = [x, &weight](float inv_scale, float& sumqx, float& sumq2) {
    sumqx = sumq2 = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float q = kIQ4NLValues[nearest_level(inv_scale * x[j])];
      const float w = weight[j];
      sumqx += w * q * x[j];
      sumq2 += w * q * q;
    }
  };
  const float levels0 = kIQ4NLValues[0];
  float sumqx, sumq2;
  fit(1.0f / (-max / levels0), sumqx, sumq2);
  float d = sumqx / sumq2;
  float best = d * sumqx;
  for (int step = -7; step <= 7; ++step) {
    fit((static_cast<float>(step) + levels0) / max, sumqx, sumq2);
    if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// The 32 level indices for the scale d, packed as in IQ4_NL (low nibbles: elements 0..15).
void pack_iq4_group(const float* x, float d, uint8_t* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>(nearest_level(id * x[j]) | (nearest_level(id * x[j + 16]) << 4));
}

inline int dot_i8(const int8_t* x, const int8_t* y, int len) {
  int sum = 0;
  for (int l = 0; l < len; ++l) sum += x[l] * y[l];
  return sum;
}

}  // namespace

// ---- dequantisation ----

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4_NL*>(src);
  int8_t q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    unpack_nl32(b[i].qs, q);
    for (int j = 0; j < kQK; ++j) dst[j] = d * static_cast<float>(q[j]);
  }
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ4_XS*>(src);
  int8_t q[32];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int s = 0; s < 8; ++s, dst += 32) {
      const float dl = d * static_cast<float>(iq4xs_scale(b[i], s));
      unpack_nl32(b[i].qs + 16 * s, q);
      for (int j = 0; j < 32; ++j) dst[j] = dl * static_cast<float>(q[j]);
    }
  }
}

void dequantize_iq3_s(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockIQ3_S*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16_to_fp32(b[i].d);
    unpack_iq3s(b[i], q);
    for (int s = 0; s < 8; ++s) {
      const float dl = d * static_cast<float>(iq3s_scale(b[i], s));
      for (int j = 0; j < 32; ++j) dst[32 * s + j] = dl * static_cast<float>(q[32 * s + j]);
    }
  }
}

// ---- quantisation (GGML's reference quantizers without an importance matrix) ----

namespace {
// Twice the mean square of n values (the scale of the importance weighting).
float sigma2_of(const float* x, int n) {
  float s = 0.0f;
  for (int j = 0; j < n; ++j) s += x[j] * x[j];
  return s * (2.0f / static_cast<float>(n));
}
}  // namespace

void quantize_iq4_nl(const float* src, void* dst, int64_t n) { quantize_iq4_nl_weighted(src, dst, n, nullptr); }

void quantize_iq4_nl_weighted(const float* src, void* dst, int64_t n, const float* qw) {
  auto* b = static_cast<BlockIQ4_NL*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const float d = qw ? fit_iq4_group(src, qw + i * kQK, sigma2_of(src, kQK)) : fit_iq4_group(src);
    b[i].d = fp32_to_fp16(d);
    pack_iq4_group(src, d, b[i].qs);
  }
}

void quantize_iq4_xs(const float* src, void* dst, int64_t n) { quantize_iq4_xs_weighted(src, dst, n, nullptr); }

void quantize_iq4_xs_weighted(const float* src, void* dst, int64_t n, const float* qw) {
  auto* b = static_cast<BlockIQ4_XS*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, src += kQK_K) {
    const float sigma2 = qw ? sigma2_of(src, kQK_K) : 0.0f;
    // Each group's own best scale, then one 6-bit multiple of a super-block scale per group
    // (the scale of largest magnitude, with its sign, maps to -32).
    float scales[8], max_scale = 0.0f, amax_scale = 0.0f;
    for (int s = 0; s < 8; ++s) {
      scales[s] = qw ? fit_iq4_group(src + 32 * s, qw + i * kQK_K + 32 * s, sigma2) : fit_iq4_group(src + 32 * s);
      if (std::fabs(scales[s]) > amax_scale) {
        amax_scale = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    const float d = -max_scale / 32.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].scales_h = 0;
    std::memset(b[i].scales_l, 0, sizeof b[i].scales_l);
    for (int s = 0; s < 8; ++s) {
      const int l = std::clamp(nearest_int(id * scales[s]), -32, 31);
      pack_iq4_group(src + 32 * s, d * static_cast<float>(l), b[i].qs + 16 * s);
      const int u = l + 32;
      b[i].scales_l[s / 2] = static_cast<uint8_t>(b[i].scales_l[s / 2] | ((u & 0x0F) << (4 * (s % 2))));
      b[i].scales_h = static_cast<uint16_t>(b[i].scales_h | ((u >> 4) << (2 * s)));
    }
  }
}

// ---- dot products ----

float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4_NL*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  int8_t q[kQK];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK; ++i) {
    unpack_nl32(x[i].qs, q);
    const float d = fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d);
    sum += d * static_cast<float>(dot_i8(q, y[i].qs, kQK));
  }
  return sum;
}

float vec_dot_iq4_xs_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ4_XS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[32];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    // |isum| <= 8 * 32 * 127 * 127 * 32 < 2^31.
    int isum = 0;
    for (int s = 0; s < 8; ++s) {
      unpack_nl32(x[i].qs + 16 * s, q);
      isum += iq4xs_scale(x[i], s) * dot_i8(q, y[i].qs + 32 * s, 32);
    }
    sum += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

float vec_dot_iq3_s_q8_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ3_S*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_iq3s(x[i], q);
    int isum = 0;
    for (int s = 0; s < 8; ++s) isum += iq3s_scale(x[i], s) * dot_i8(q + 32 * s, y[i].qs + 32 * s, 32);
    sum += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

}  // namespace etna::tensor::scalar
