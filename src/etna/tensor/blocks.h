// GGML's on-disk block layouts, byte for byte (little-endian). A row of a quantised tensor is
// an array of these blocks; every field order and size here is fixed by the GGUF format.
#pragma once
#include <cstddef>
#include <cstdint>

namespace etna::tensor {

constexpr int kQK = 32;    // elements per block of the *_0 / *_1 formats
constexpr int kQK_K = 256;  // elements per super-block of the K-quants
constexpr int kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// Halves (fp16) are stored as raw uint16_t bits; see etna/base/half.h for conversion.

struct BlockQ4_0 {   // x = d * (q - 8), q in 0..15; element j in low nibble of qs[j], j+16 in high
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {   // x = d * q + m
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {   // x = d * (q - 16); bit 4 of element j is bit j of qh
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {   // x = d * q + m
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {   // x = d * q
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ8_1 {   // x = d * q; s = d * sum(q), used by the Q4_1 / Q5_1 dot products
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

// 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q 2 bits.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (s - 32) * (q - 4 * !hbit), 6-bit s packed in 12 bytes.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, 6-bit sc / m packed in 12 bytes, q 4 bits.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
// As Q4_K with a fifth bit per element in qh.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q 6 bits (4 in ql, 2 in qh).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
// Activations for the K-quant dot products: x = d * q; bsums[i] = sum of q over 16 elements.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

// ---- the imatrix-era "IQ" formats: non-linear value tables and lattice grids ----

// 32 elements: x = d * kIQ4NLValues[q], q 4 bits; element j in the low nibble of qs[j], j+16
// in the high one (the Q4_0 packing with a non-uniform value table instead of q - 8).
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// 8 sub-blocks of 32 as IQ4_NL, each scaled by d * (ls - 32) with a 6-bit ls: low 4 bits in
// the nibbles of scales_l (sub-block s: byte s/2, high nibble when s is odd), top 2 bits at
// bits 2s..2s+1 of scales_h. Sub-block s packs its 32 values in qs[16s..16s+15].
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};
// 64 groups of 4: x = d * (1 + 2 * sc) * sign * grid[index][k]. A group's 9-bit index into the
// 512-point IQ3_S grid is qs[g] with bit 8 taken from bit g%8 of qh[g/8]; the sign of element
// e is bit e%8 of signs[e/8] (set: negative); the 4-bit sc of 32-element sub-block s is the
// nibble s%2 of scales[s/2].
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[kQK_K / 4];
  uint8_t qh[kQK_K / 32];
  uint8_t signs[kQK_K / 8];
  uint8_t scales[kQK_K / 64];
};

static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136 && sizeof(BlockIQ3_S) == 110);

}  // namespace etna::tensor
