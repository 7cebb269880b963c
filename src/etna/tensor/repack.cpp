// Interleaving rows in groups of 8 (see repack_rows in tensor.h). Two layouts:
// - Q4_0 / Q8_0, per 32-element block i of the group: 16 bytes of the 8 rows' fp16 scales,
//   then the block's quants in 4-byte chunks (Q4_0: 4 chunks of packed nibbles, Q8_0: 8 chunks
//   of int8), chunk c of row r at 16 + 32 c + 4 r: one vector load feeds 8 rows.
// - Q4_K, per super-block i of the group (1152 bytes, as the 8 rows' blocks): the 8 rows' fp16
//   d (16 bytes) and dmin (16 bytes); the 6-bit sub-block scales and mins split so that 8 rows
//   unpack with a few vector operations: bytes 32..63 hold the scales' low 4 bits, byte
//   8 s + r (s < 4) with sub-block s of row r in its low nibble and sub-block s + 4 in its high
//   one; bytes 64..95 the mins' the same way; bytes 96..127 the top 2 bits, byte 8 s + r: bits
//   0-1 scale s, 2-3 scale s + 4, 4-5 min s, 6-7 min s + 4. Then the quants in 4-byte chunks as
//   for Q4_0: chunk c (of 32) of row r at 128 + 32 c + 4 r.
// - Q6_K, per super-block i of the group (1680 bytes): the 8 rows' fp16 d (16 bytes), their
//   int8 group scales (byte 16 + 8 g + r), then ql in 4-byte chunks (chunk c of row r at
//   144 + 32 c + 4 r) and qh likewise (at 1168 + 32 c + 4 r).
// - Other K-quants (Q2_K, Q3_K, Q5_K): whole super-blocks, block i of row r at (8 i + r) * block bytes:
//   the 8 rows' blocks side by side, so the kernel reading 8 rows at once walks one contiguous
//   stream instead of 8 rows a row apart.
// Either way a group of 8 rows occupies the same bytes as the 8 rows did.
#include <cstring>
#include <vector>

#include "etna/base/error.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"

namespace etna::tensor {
namespace {

bool chunked(GgmlType type) { return type == GgmlType::Q4_0 || type == GgmlType::Q8_0; }

bool packable_type(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q8_0:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

size_t quant_bytes(GgmlType type) { return type == GgmlType::Q4_0 ? kQK / 2 : kQK; }

// Bytes of one block of a whole group: 8 scales and 8 rows of quants.
size_t group_block_bytes(GgmlType type) { return kPackRows * (2 + quant_bytes(type)); }

constexpr size_t kQ4KGroupBlock = kPackRows * sizeof(BlockQ4_K);

// One super-block of 8 Q4_K rows (`rows[r]`: d, dmin, scales[12], qs[128]) into the group
// layout at `g`, and back. The 12 scale bytes hold exactly 16 six-bit values, so the split
// is a bijection.
void pack_q4_k(const uint8_t* const* rows, uint8_t* g) {
  static_assert(sizeof(BlockQ4_K) == 144);
  for (int r = 0; r < kPackRows; ++r) {
    const uint8_t* b = rows[r];
    std::memcpy(g + 2 * r, b, 2);
    std::memcpy(g + 16 + 2 * r, b + 2, 2);
    const uint8_t* s = b + 4;
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 4; ++j) {
      sc[j] = s[j] & 63;
      mn[j] = s[j + 4] & 63;
      sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
      mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
    for (int j = 0; j < 4; ++j) {
      g[32 + 8 * j + r] = static_cast<uint8_t>((sc[j] & 0x0F) | ((sc[j + 4] & 0x0F) << 4));
      g[64 + 8 * j + r] = static_cast<uint8_t>((mn[j] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
      g[96 + 8 * j + r] =
          static_cast<uint8_t>((sc[j] >> 4) | ((sc[j + 4] >> 4) << 2) | ((mn[j] >> 4) << 4) | ((mn[j + 4] >> 4) << 6));
    }
    for (int c = 0; c < 32; ++c) std::memcpy(g + 128 + 32 * c + 4 * r, b + 16 + 4 * c, 4);
  }
}

void unpack_q4_k(const uint8_t* g, uint8_t* const* rows) {
  for (int r = 0; r < kPackRows; ++r) {
    uint8_t* b = rows[r];
    std::memcpy(b, g + 2 * r, 2);
    std::memcpy(b + 2, g + 16 + 2 * r, 2);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 4; ++j) {
      const int lo_s = g[32 + 8 * j + r], lo_m = g[64 + 8 * j + r], hi = g[96 + 8 * j + r];
      sc[j] = static_cast<uint8_t>((lo_s & 0x0F) | ((hi & 3) << 4));
      sc[j + 4] = static_cast<uint8_t>((lo_s >> 4) | (((hi >> 2) & 3) << 4));
      mn[j] = static_cast<uint8_t>((lo_m & 0x0F) | (((hi >> 4) & 3) << 4));
      mn[j + 4] = static_cast<uint8_t>((lo_m >> 4) | (((hi >> 6) & 3) << 4));
    }
    uint8_t* s = b + 4;
    for (int j = 0; j < 4; ++j) {
      s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
    for (int c = 0; c < 32; ++c) std::memcpy(b + 16 + 4 * c, g + 128 + 32 * c + 4 * r, 4);
  }
}

// One super-block of 8 Q6_K rows (ql[128], qh[64], scales[16], d) into the group layout at
// `g` (pack) or back (!pack).
void convert_q6_k(uint8_t* const* rows, const uint8_t* const* crows, uint8_t* g_out, const uint8_t* g_in, bool pack) {
  static_assert(sizeof(BlockQ6_K) == 210);
  for (int r = 0; r < kPackRows; ++r) {
    if (pack) {
      const uint8_t* b = crows[r];
      std::memcpy(g_out + 2 * r, b + 208, 2);
      for (int k = 0; k < 16; ++k) g_out[16 + 8 * k + r] = b[192 + k];
      for (int c = 0; c < 32; ++c) std::memcpy(g_out + 144 + 32 * c + 4 * r, b + 4 * c, 4);
      for (int c = 0; c < 16; ++c) std::memcpy(g_out + 1168 + 32 * c + 4 * r, b + 128 + 4 * c, 4);
    } else {
      uint8_t* b = rows[r];
      std::memcpy(b + 208, g_in + 2 * r, 2);
      for (int k = 0; k < 16; ++k) b[192 + k] = g_in[16 + 8 * k + r];
      for (int c = 0; c < 32; ++c) std::memcpy(b + 4 * c, g_in + 144 + 32 * c + 4 * r, 4);
      for (int c = 0; c < 16; ++c) std::memcpy(b + 128 + 4 * c, g_in + 1168 + 32 * c + 4 * r, 4);
    }
  }
}

// Moves the 8 rows at `rows` (row-major, row_bytes apart) into the group layout at `group`
// (pack) or back (!pack).
void convert_group(const Matrix& w, size_t block_bytes, const uint8_t* from, uint8_t* to, bool pack) {
  const int64_t nb = w.cols / find_kernels(w.type)->block_size;
  if (w.type == GgmlType::Q4_K) {
    for (int64_t i = 0; i < nb; ++i) {
      const size_t at = static_cast<size_t>(i) * block_bytes, g = static_cast<size_t>(i) * kQ4KGroupBlock;
      if (pack) {
        const uint8_t* rows[kPackRows];
        for (int r = 0; r < kPackRows; ++r) rows[r] = from + r * w.row_bytes + at;
        pack_q4_k(rows, to + g);
      } else {
        uint8_t* rows[kPackRows];
        for (int r = 0; r < kPackRows; ++r) rows[r] = to + r * w.row_bytes + at;
        unpack_q4_k(from + g, rows);
      }
    }
    return;
  }
  if (w.type == GgmlType::Q6_K) {
    const size_t gb = kPackRows * sizeof(BlockQ6_K);
    for (int64_t i = 0; i < nb; ++i) {
      const size_t at = static_cast<size_t>(i) * block_bytes, g = static_cast<size_t>(i) * gb;
      uint8_t* rows[kPackRows] = {};
      const uint8_t* crows[kPackRows] = {};
      for (int r = 0; r < kPackRows; ++r) {
        if (pack) crows[r] = from + r * w.row_bytes + at;
        else rows[r] = to + r * w.row_bytes + at;
      }
      convert_q6_k(rows, crows, pack ? to + g : nullptr, pack ? nullptr : from + g, pack);
    }
    return;
  }
  if (!chunked(w.type)) {
    for (int64_t i = 0; i < nb; ++i)
      for (int r = 0; r < kPackRows; ++r) {
        const size_t row_major = r * w.row_bytes + static_cast<size_t>(i) * block_bytes;
        const size_t grouped = (static_cast<size_t>(i) * kPackRows + r) * block_bytes;
        std::memcpy(to + (pack ? grouped : row_major), from + (pack ? row_major : grouped), block_bytes);
      }
    return;
  }
  const size_t qb = quant_bytes(w.type), gb = group_block_bytes(w.type);
  for (int64_t i = 0; i < nb; ++i)
    for (int r = 0; r < kPackRows; ++r) {
      const size_t b = r * w.row_bytes + static_cast<size_t>(i) * block_bytes;  // d, then the quants
      const size_t g = static_cast<size_t>(i) * gb;
      if (pack) {
        std::memcpy(to + g + 2 * r, from + b, 2);
        for (size_t c = 0; c < qb / 4; ++c) std::memcpy(to + g + 16 + 32 * c + 4 * r, from + b + 2 + 4 * c, 4);
      } else {
        std::memcpy(to + b, from + g + 2 * r, 2);
        for (size_t c = 0; c < qb / 4; ++c) std::memcpy(to + b + 2 + 4 * c, from + g + 16 + 32 * c + 4 * r, 4);
      }
    }
}

}  // namespace

bool can_repack(const Matrix& w) {
  if (w.interleaved || w.data == nullptr || w.rows <= 0 || w.rows % kPackRows != 0) return false;
  if (!packable_type(w.type)) return false;
  const TypeKernels* k = find_kernels(w.type);
  if (k == nullptr || k->packed_tile == nullptr || w.cols <= 0 || w.cols % k->block_size != 0) return false;
  return w.row_bytes == static_cast<size_t>(w.cols / k->block_size) * k->block_bytes;
}

void repack_rows(Matrix& w, uint8_t* data) {
  if (!can_repack(w) || data != w.data) fail(ErrorKind::invalid_argument, "repack_rows: this matrix cannot be repacked");
  const size_t block_bytes = find_kernels(w.type)->block_bytes;
  const size_t group_bytes = kPackRows * w.row_bytes;
  std::vector<uint8_t> rows(group_bytes);
  for (int64_t g = 0; g < w.rows / kPackRows; ++g) {
    uint8_t* out = data + static_cast<size_t>(g) * group_bytes;
    std::memcpy(rows.data(), out, group_bytes);
    convert_group(w, block_bytes, rows.data(), out, /*pack=*/true);
  }
  w.interleaved = true;
}

void unpack_group(const Matrix& w, int64_t g, uint8_t* out) {
  const TypeKernels* k = find_kernels(w.type);
  if (!w.interleaved || k == nullptr || !packable_type(w.type))
    fail(ErrorKind::invalid_argument, "unpack_group: not an interleaved matrix");
  convert_group(w, k->block_bytes, w.data + static_cast<size_t>(g) * kPackRows * w.row_bytes, out, /*pack=*/false);
}

bool is_packable_type(GgmlType type) { return packable_type(type); }

}  // namespace etna::tensor
