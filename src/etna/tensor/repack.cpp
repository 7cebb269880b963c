// Interleaving rows in groups of 8 (see repack_rows in tensor.h). Two layouts:
// - Q4_0 / Q8_0, per 32-element block i of the group: 16 bytes of the 8 rows' fp16 scales,
//   then the block's quants in 4-byte chunks (Q4_0: 4 chunks of packed nibbles, Q8_0: 8 chunks
//   of int8), chunk c of row r at 16 + 32 c + 4 r: one vector load feeds 8 rows.
// - K-quants (Q2_K .. Q6_K): whole super-blocks, block i of row r at (8 i + r) * block bytes:
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

// Moves the 8 rows at `rows` (row-major, row_bytes apart) into the group layout at `group`
// (pack) or back (!pack).
void convert_group(const Matrix& w, size_t block_bytes, const uint8_t* from, uint8_t* to, bool pack) {
  const int64_t nb = w.cols / find_kernels(w.type)->block_size;
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
