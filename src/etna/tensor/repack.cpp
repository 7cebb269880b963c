// Interleaving Q4_0 / Q8_0 rows in groups of 8 (see repack_rows in tensor.h). The layout of a
// group, per 32-element block i: 16 bytes of the 8 rows' fp16 scales, then the block's quants
// in 4-byte chunks (Q4_0: 4 chunks of packed nibbles, Q8_0: 8 chunks of int8), chunk c of row
// r at 16 + 32 c + 4 r. A group of 8 rows occupies the same bytes as the 8 rows did.
#include <cstring>
#include <vector>

#include "etna/base/error.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/kernels.h"
#include "etna/tensor/tensor.h"

namespace etna::tensor {
namespace {

size_t quant_bytes(GgmlType type) { return type == GgmlType::Q4_0 ? kQK / 2 : kQK; }

// Bytes of one block of a whole group: 8 scales and 8 rows of quants.
size_t group_block_bytes(GgmlType type) { return kPackRows * (2 + quant_bytes(type)); }

}  // namespace

bool can_repack(const Matrix& w) {
  if (w.interleaved || w.data == nullptr || w.rows <= 0 || w.rows % kPackRows != 0) return false;
  if (w.type != GgmlType::Q4_0 && w.type != GgmlType::Q8_0) return false;
  const TypeKernels* k = find_kernels(w.type);
  if (k == nullptr || k->packed_tile == nullptr || w.cols <= 0 || w.cols % kQK != 0) return false;
  return w.row_bytes == static_cast<size_t>(w.cols / kQK) * k->block_bytes;
}

void repack_rows(Matrix& w, uint8_t* data) {
  if (!can_repack(w) || data != w.data) fail(ErrorKind::invalid_argument, "repack_rows: this matrix cannot be repacked");
  const size_t qb = quant_bytes(w.type), bb = 2 + qb, gb = group_block_bytes(w.type);
  const int64_t nb = w.cols / kQK;
  const size_t group_bytes = kPackRows * w.row_bytes;
  std::vector<uint8_t> rows(group_bytes);
  for (int64_t g = 0; g < w.rows / kPackRows; ++g) {
    uint8_t* out = data + static_cast<size_t>(g) * group_bytes;
    std::memcpy(rows.data(), out, group_bytes);
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* ob = out + static_cast<size_t>(i) * gb;
      for (int r = 0; r < kPackRows; ++r) {
        const uint8_t* b = rows.data() + r * w.row_bytes + static_cast<size_t>(i) * bb;  // d, then the quants
        std::memcpy(ob + 2 * r, b, 2);
        for (size_t c = 0; c < qb / 4; ++c) std::memcpy(ob + 16 + 32 * c + 4 * r, b + 2 + 4 * c, 4);
      }
    }
  }
  w.interleaved = true;
}

void unpack_group(const Matrix& w, int64_t g, uint8_t* out) {
  const size_t qb = quant_bytes(w.type), bb = 2 + qb, gb = group_block_bytes(w.type);
  const int64_t nb = w.cols / kQK;
  const uint8_t* in = w.data + static_cast<size_t>(g) * kPackRows * w.row_bytes;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* ib = in + static_cast<size_t>(i) * gb;
    for (int r = 0; r < kPackRows; ++r) {
      uint8_t* b = out + r * w.row_bytes + static_cast<size_t>(i) * bb;
      std::memcpy(b, ib + 2 * r, 2);
      for (size_t c = 0; c < qb / 4; ++c) std::memcpy(b + 2 + 4 * c, ib + 16 + 32 * c + 4 * r, 4);
    }
  }
}

}  // namespace etna::tensor
