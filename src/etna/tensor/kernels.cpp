// Assembles the scalar kernel table and holds the active-table pointer.
#include "etna/tensor/kernels.h"

#include <atomic>

#include "etna/tensor/blocks.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor {
namespace {

void add(KernelTable& t, GgmlType type, int block_size, size_t block_bytes, GgmlType vd, DequantizeFn dq,
         QuantizeFn q, VecDotFn dot) {
  t[static_cast<size_t>(type)] = TypeKernels{type, block_size, block_bytes, vd, dq, q, dot};
}

KernelTable build_scalar_table() {
  namespace s = scalar;
  using T = GgmlType;
  KernelTable t{};
  add(t, T::F32, 1, 4, T::F32, s::dequantize_f32, s::quantize_f32, s::vec_dot_f32);
  add(t, T::F16, 1, 2, T::F16, s::dequantize_f16, s::quantize_f16, s::vec_dot_f16);
  add(t, T::BF16, 1, 2, T::BF16, s::dequantize_bf16, s::quantize_bf16, s::vec_dot_bf16);
  add(t, T::Q4_0, kQK, sizeof(BlockQ4_0), T::Q8_0, s::dequantize_q4_0, s::quantize_q4_0, s::vec_dot_q4_0_q8_0);
  add(t, T::Q4_1, kQK, sizeof(BlockQ4_1), T::Q8_1, s::dequantize_q4_1, s::quantize_q4_1, s::vec_dot_q4_1_q8_1);
  add(t, T::Q5_0, kQK, sizeof(BlockQ5_0), T::Q8_0, s::dequantize_q5_0, s::quantize_q5_0, s::vec_dot_q5_0_q8_0);
  add(t, T::Q5_1, kQK, sizeof(BlockQ5_1), T::Q8_1, s::dequantize_q5_1, s::quantize_q5_1, s::vec_dot_q5_1_q8_1);
  add(t, T::Q8_0, kQK, sizeof(BlockQ8_0), T::Q8_0, s::dequantize_q8_0, s::quantize_q8_0, s::vec_dot_q8_0_q8_0);
  add(t, T::Q8_1, kQK, sizeof(BlockQ8_1), T::Q8_1, s::dequantize_q8_1, s::quantize_q8_1, s::vec_dot_q8_1_q8_1);
  add(t, T::Q2_K, kQK_K, sizeof(BlockQ2_K), T::Q8_K, s::dequantize_q2_k, nullptr, s::vec_dot_q2_k_q8_k);
  add(t, T::Q3_K, kQK_K, sizeof(BlockQ3_K), T::Q8_K, s::dequantize_q3_k, nullptr, s::vec_dot_q3_k_q8_k);
  add(t, T::Q4_K, kQK_K, sizeof(BlockQ4_K), T::Q8_K, s::dequantize_q4_k, nullptr, s::vec_dot_q4_k_q8_k);
  add(t, T::Q5_K, kQK_K, sizeof(BlockQ5_K), T::Q8_K, s::dequantize_q5_k, nullptr, s::vec_dot_q5_k_q8_k);
  add(t, T::Q6_K, kQK_K, sizeof(BlockQ6_K), T::Q8_K, s::dequantize_q6_k, nullptr, s::vec_dot_q6_k_q8_k);
  add(t, T::Q8_K, kQK_K, sizeof(BlockQ8_K), T::Q8_K, s::dequantize_q8_k, s::quantize_q8_k, s::vec_dot_q8_k_q8_k);
  return t;
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

const KernelTable& scalar_kernel_table() {
  static const KernelTable table = build_scalar_table();
  return table;
}

const KernelTable& active_kernel_table() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  return t ? *t : scalar_kernel_table();
}

void set_active_kernel_table(const KernelTable& table) { g_active.store(&table, std::memory_order_release); }

const TypeKernels* find_kernels(GgmlType type) {
  const auto id = static_cast<size_t>(type);
  if (id >= kMaxTypeId) return nullptr;
  const TypeKernels& k = active_kernel_table()[id];
  return k.block_size == 0 ? nullptr : &k;
}

}  // namespace etna::tensor
