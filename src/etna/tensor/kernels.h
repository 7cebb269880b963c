// The per-type kernel table behind etna/tensor/tensor.h. Each supported GGML type has one
// TypeKernels entry; a table for a wider instruction set (AVX2, AVX-512) can replace the
// scalar one at run time without callers noticing. Entries do no argument checking: the
// public functions in tensor.cpp validate first.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "etna/gguf/ggml_type.h"

namespace etna::tensor {

using gguf::GgmlType;

// dst[0..n) = decoded src. REQUIRES: n a multiple of the block size.
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);
// Encodes n floats into blocks at dst. REQUIRES: n a multiple of the block size.
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);
// Dot of n elements: weight row (this type) · activation row (vec_dot_type).
using VecDotFn = float (*)(int64_t n, const void* weight, const void* activation);

struct TypeKernels {
  GgmlType type = GgmlType::F32;
  int block_size = 0;        // elements per block; 0 marks an empty (unsupported) entry
  size_t block_bytes = 0;
  GgmlType vec_dot_type = GgmlType::F32;
  DequantizeFn dequantize = nullptr;
  QuantizeFn quantize = nullptr;   // nullptr: this type cannot be produced
  VecDotFn vec_dot = nullptr;
};

constexpr size_t kMaxTypeId = 40;  // type ids 0..kMaxTypeId-1 fit in a table
using KernelTable = std::array<TypeKernels, kMaxTypeId>;

// The portable scalar kernels, written after llama.cpp's reference C code.
const KernelTable& scalar_kernel_table();

// The table the public functions use (today the scalar one). Never null.
const KernelTable& active_kernel_table();

// Makes `table` the active one (e.g. after CPU feature detection). `table` must outlive all
// later calls. Not thread-safe against concurrent kernel calls: call during start-up.
void set_active_kernel_table(const KernelTable& table);

// The active entry for `type`, or nullptr when the type has no kernels.
const TypeKernels* find_kernels(GgmlType type);

}  // namespace etna::tensor
