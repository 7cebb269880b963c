// The per-type kernel table behind etna/tensor/tensor.h. Each supported GGML type has one
// TypeKernels entry; a table for a wider instruction set (AVX2, AVX-512) replaces the scalar
// one at run time without callers noticing. Entries do no argument checking: the public
// functions in tensor.cpp validate first.
//
// Kernel sets: "scalar" (portable C++), "avx2" (AVX2 + FMA + F16C), "avx512" (AVX-512
// F/BW/VL, VNNI used when present). At start-up the best set the CPU supports is chosen;
// the environment variable ETNA_KERNELS=scalar|avx2|avx512 forces one.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "etna/gguf/ggml_type.h"

namespace etna::tensor {

using gguf::GgmlType;

// dst[0..n) = decoded src. REQUIRES: n a multiple of the block size.
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);
// Encodes n floats into blocks at dst. REQUIRES: n a multiple of the block size.
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);
// Dot of n elements: weight row (this type) · activation row (vec_dot_type).
using VecDotFn = float (*)(int64_t n, const void* weight, const void* activation);
// A tile of dot products: y[t * ys + r] = dot(w + r * ws, a + t * as) for r < nr, t < nt,
// 1 <= nr <= kTileRows, 1 <= nt <= kTileTokens; n elements, strides in bytes (ys in floats).
// Each result must equal what vec_dot returns for the same pair, bit for bit.
using TileFn = void (*)(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys,
                        int nr, int nt);
constexpr int kTileRows = 8;
constexpr int kTileTokens = 4;
// A group of kPackRows interleaved rows (the layout repack_rows in tensor.h writes) x nt tokens:
// y[t * ys + r] for r < nr <= kPackRows, 1 <= nt <= kTileTokens. Each result must equal
// vec_dot on the original row, bit for bit.
using PackedTileFn = void (*)(int64_t n, const uint8_t* group, const uint8_t* a, size_t as, float* y, size_t ys,
                              int nr, int nt);
constexpr int kPackRows = 8;
// Two neighbouring groups (group g1 = g0 + 8 row_bytes, rows r..r+15) x nt tokens, 16 rows per
// 512-bit register: y[t * ys + r] for r < 16, 1 <= nt <= kPackedTile16Tokens. Each result must
// equal packed_tile's, bit for bit.
using PackedTile16Fn = void (*)(int64_t n, const uint8_t* g0, const uint8_t* g1, const uint8_t* a, size_t as, float* y,
                                size_t ys, int nt);
constexpr int kPackedTile16Tokens = 8;

// y[0..n) += a * x[0..n), x a row of this type (F32 and F16: attention's weighted sum of the
// cached V rows, read in place). Kernel sets may fuse the multiply-add: results agree with the
// scalar kernel to rounding, not bit for bit.
using AxpyFn = void (*)(int64_t n, float a, const void* x, float* y);

// A block product in F32 (attention's q.K and p.V over blocks of keys): for i < m, j < n,
// c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + sum over p = 0..k-1, in that order, of
// a[i * rsa + p * csa] * b[p * ldb + j]; strides in floats. Kernel sets may fuse each
// multiply-add: results agree with the scalar kernel to rounding, not bit for bit.
using GemmFn = void (*)(int m, int n, int k, const float* a, size_t rsa, size_t csa, const float* b, size_t ldb,
                        float* c, size_t ldc, bool accumulate);

struct TypeKernels {
  GgmlType type = GgmlType::F32;
  int block_size = 0;        // elements per block; 0 marks an empty (unsupported) entry
  size_t block_bytes = 0;
  GgmlType vec_dot_type = GgmlType::F32;
  DequantizeFn dequantize = nullptr;
  QuantizeFn quantize = nullptr;   // nullptr: this type cannot be produced
  VecDotFn vec_dot = nullptr;
  TileFn tile = nullptr;           // nullptr: matmul calls vec_dot per (row, token)
  PackedTileFn packed_tile = nullptr;  // nullptr: interleaved matrices are unpacked per group first
  // nullptr: packed_tile one group at a time. matmul uses it for batches of more than
  // kTileTokens tokens only (see matmul_rows).
  PackedTile16Fn packed_tile16 = nullptr;
  AxpyFn axpy = nullptr;           // nullptr: decode the row, then add (F32 and F16 only)
  GemmFn gemm = nullptr;           // F32 only
};

constexpr size_t kMaxTypeId = 40;  // type ids 0..kMaxTypeId-1 fit in a table
using KernelTable = std::array<TypeKernels, kMaxTypeId>;

// The portable scalar kernels, written after llama.cpp's reference C code.
const KernelTable& scalar_kernel_table();

// The table of a named kernel set ("scalar", "avx2", "avx512"), or nullptr when this binary
// lacks it or the CPU cannot run it.
const KernelTable* kernel_table_for(const std::string& name);

// Names of the kernel sets this CPU can run, portable first, best last.
std::vector<std::string> available_kernel_sets();

// The name of a table returned by kernel_table_for (or the scalar one); "custom" otherwise.
std::string kernel_table_name(const KernelTable& table);

// A tight loop of int8 multiply-adds on the widest registers a kernel set has (for `etna
// bench`'s compute peak): `rounds` rounds, returns the multiply-adds done. `sink` holds 3 ints:
// [0] and [1] seed the operands, [2] receives a checksum.
using Int8PeakFn = int64_t (*)(int64_t rounds, int32_t* sink);

// The peak loop of a named kernel set, or nullptr (scalar, or a set this CPU cannot run).
Int8PeakFn int8_peak_kernel(const std::string& name);

// The table the public functions use. On first use this is the best set for the CPU, or the
// one ETNA_KERNELS names (etna::Error when the name is unknown or the CPU lacks it). Never null.
const KernelTable& active_kernel_table();

// Makes `table` the active one (e.g. after CPU feature detection). `table` must outlive all
// later calls. Not thread-safe against concurrent kernel calls: call during start-up.
void set_active_kernel_table(const KernelTable& table);

// The active entry for `type`, or nullptr when the type has no kernels.
const TypeKernels* find_kernels(GgmlType type);

}  // namespace etna::tensor
