// Assembles the kernel tables (scalar, and the x86 SIMD sets where the CPU has them) and holds
// the active-table pointer.
#include "etna/tensor/kernels.h"

#include <atomic>
#include <cstdlib>

#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/scalar_kernels.h"
#if defined(__x86_64__)
#include "etna/tensor/x86_kernels.h"
#endif

namespace etna::tensor {
namespace {

void add(KernelTable& t, GgmlType type, int block_size, size_t block_bytes, GgmlType vd, DequantizeFn dq,
         QuantizeFn q, VecDotFn dot) {
  t[static_cast<size_t>(type)] = TypeKernels{type, block_size, block_bytes, vd, dq, q, dot, nullptr, nullptr, nullptr};
}

KernelTable build_scalar_table() {
  namespace s = scalar;
  using T = GgmlType;
  KernelTable t{};
  add(t, T::F32, 1, 4, T::F32, s::dequantize_f32, s::quantize_f32, s::vec_dot_f32);
  add(t, T::F16, 1, 2, T::F16, s::dequantize_f16, s::quantize_f16, s::vec_dot_f16);
  add(t, T::BF16, 1, 2, T::BF16, s::dequantize_bf16, s::quantize_bf16, s::vec_dot_bf16);
  t[static_cast<size_t>(T::F32)].axpy = s::axpy_f32;
  t[static_cast<size_t>(T::F16)].axpy = s::axpy_f16;
  t[static_cast<size_t>(T::F32)].gemm = s::gemm_f32;
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
  // The IQ formats take the activation types llama.cpp pairs them with.
  add(t, T::IQ4_NL, kQK, sizeof(BlockIQ4_NL), T::Q8_0, s::dequantize_iq4_nl, s::quantize_iq4_nl, s::vec_dot_iq4_nl_q8_0);
  add(t, T::IQ4_XS, kQK_K, sizeof(BlockIQ4_XS), T::Q8_K, s::dequantize_iq4_xs, s::quantize_iq4_xs, s::vec_dot_iq4_xs_q8_k);
  add(t, T::IQ3_S, kQK_K, sizeof(BlockIQ3_S), T::Q8_K, s::dequantize_iq3_s, nullptr, s::vec_dot_iq3_s_q8_k);
  return t;
}

#if defined(__x86_64__)
// The scalar table with every kernel the x86 set `ns` provides swapped in.
#define ETNA_X86_TABLE(ns)                                                  \
  [] {                                                                      \
    using T = GgmlType;                                                     \
    KernelTable t = build_scalar_table();                                   \
    auto set = [&t](T type, VecDotFn dot, TileFn tile) {                    \
      t[static_cast<size_t>(type)].vec_dot = dot;                           \
      t[static_cast<size_t>(type)].tile = tile;                             \
    };                                                                      \
    set(T::F32, ns::vec_dot_f32, ns::tile_f32);                             \
    set(T::F16, ns::vec_dot_f16, ns::tile_f16);                             \
    set(T::BF16, ns::vec_dot_bf16, ns::tile_bf16);                          \
    set(T::Q4_0, ns::vec_dot_q4_0, ns::tile_q4_0);                          \
    set(T::Q5_0, ns::vec_dot_q5_0, ns::tile_q5_0);                          \
    set(T::Q8_0, ns::vec_dot_q8_0, ns::tile_q8_0);                          \
    set(T::Q4_1, ns::vec_dot_q4_1, ns::tile_q4_1);                          \
    set(T::Q5_1, ns::vec_dot_q5_1, ns::tile_q5_1);                          \
    set(T::Q2_K, ns::vec_dot_q2_k, ns::tile_q2_k);                          \
    set(T::Q3_K, ns::vec_dot_q3_k, ns::tile_q3_k);                          \
    set(T::Q4_K, ns::vec_dot_q4_k, ns::tile_q4_k);                          \
    set(T::Q5_K, ns::vec_dot_q5_k, ns::tile_q5_k);                          \
    set(T::Q6_K, ns::vec_dot_q6_k, ns::tile_q6_k);                          \
    t[static_cast<size_t>(T::Q4_0)].packed_tile = ns::packed_tile_q4_0;     \
    t[static_cast<size_t>(T::Q8_0)].packed_tile = ns::packed_tile_q8_0;     \
    t[static_cast<size_t>(T::Q2_K)].packed_tile = ns::packed_tile_q2_k;     \
    t[static_cast<size_t>(T::Q3_K)].packed_tile = ns::packed_tile_q3_k;     \
    t[static_cast<size_t>(T::Q4_K)].packed_tile = ns::packed_tile_q4_k;     \
    t[static_cast<size_t>(T::Q5_K)].packed_tile = ns::packed_tile_q5_k;     \
    t[static_cast<size_t>(T::Q6_K)].packed_tile = ns::packed_tile_q6_k;     \
    set(T::IQ4_NL, ns::vec_dot_iq4_nl, ns::tile_iq4_nl);                    \
    set(T::IQ4_XS, ns::vec_dot_iq4_xs, ns::tile_iq4_xs);                    \
    set(T::IQ3_S, ns::vec_dot_iq3_s, ns::tile_iq3_s);                       \
    t[static_cast<size_t>(T::Q8_K)].vec_dot = ns::vec_dot_q8_k;             \
    t[static_cast<size_t>(T::Q8_0)].quantize = ns::quantize_q8_0;           \
    t[static_cast<size_t>(T::Q8_1)].quantize = ns::quantize_q8_1;           \
    t[static_cast<size_t>(T::Q8_K)].quantize = ns::quantize_q8_k;           \
    t[static_cast<size_t>(T::F16)].quantize = ns::quantize_f16;             \
    t[static_cast<size_t>(T::F16)].dequantize = ns::dequantize_f16;         \
    t[static_cast<size_t>(T::F32)].axpy = ns::axpy_f32;                     \
    t[static_cast<size_t>(T::F16)].axpy = ns::axpy_f16;                     \
    t[static_cast<size_t>(T::F32)].gemm = ns::gemm_f32;                     \
    return t;                                                               \
  }()

bool cpu_has_avx2() {
  const auto& f = base::cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
// The AVX-512 sets' 16-row packed tiles.
KernelTable with_packed16(KernelTable t, PackedTile16Fn q4_0, PackedTile16Fn q8_0) {
  t[static_cast<size_t>(gguf::GgmlType::Q4_0)].packed_tile16 = q4_0;
  t[static_cast<size_t>(gguf::GgmlType::Q8_0)].packed_tile16 = q8_0;
  return t;
}

bool cpu_has_avx512() {
  const auto& f = base::cpu_features();
  return cpu_has_avx2() && f.avx512f && f.avx512bw && f.avx512vl;
}
#endif

std::atomic<const KernelTable*> g_active{nullptr};

const KernelTable& startup_table() {
  static const KernelTable* table = [] {
    const char* env = std::getenv("ETNA_KERNELS");
    if (env && *env) {
      const std::string name = env;
      if (name != "scalar" && name != "avx2" && name != "avx512")
        fail(ErrorKind::invalid_argument, "ETNA_KERNELS={} is not a kernel set (scalar, avx2 or avx512)", name);
      const KernelTable* t = kernel_table_for(name);
      if (!t)
        fail(ErrorKind::unsupported, "ETNA_KERNELS={}: this CPU or build cannot run it (CPU: {})", name,
             base::cpu_features_string());
      return t;
    }
    return kernel_table_for(available_kernel_sets().back());
  }();
  return *table;
}

}  // namespace

const KernelTable& scalar_kernel_table() {
  static const KernelTable table = build_scalar_table();
  return table;
}

const KernelTable* kernel_table_for(const std::string& name) {
  if (name == "scalar") return &scalar_kernel_table();
#if defined(__x86_64__)
  if (name == "avx2" && cpu_has_avx2()) {
    static const KernelTable table = ETNA_X86_TABLE(avx2);
    return &table;
  }
  if (name == "avx512" && cpu_has_avx512()) {
    if (base::cpu_features().avx512vnni) {
      static const KernelTable table = [] {
        KernelTable t = with_packed16(ETNA_X86_TABLE(avx512vnni), avx512vnni::packed_tile16_q4_0,
                                      avx512vnni::packed_tile16_q8_0);
        t[static_cast<size_t>(gguf::GgmlType::Q4_K)].packed_tile16 = avx512vnni::packed_tile16_q4_k;
        t[static_cast<size_t>(gguf::GgmlType::Q6_K)].packed_tile16 = avx512vnni::packed_tile16_q6_k;
        return t;
      }();
      return &table;
    }
    static const KernelTable table =
        with_packed16(ETNA_X86_TABLE(avx512), avx512::packed_tile16_q4_0, avx512::packed_tile16_q8_0);
    return &table;
  }
#endif
  return nullptr;
}

Int8PeakFn int8_peak_kernel(const std::string& name) {
#if defined(__x86_64__)
  if (!kernel_table_for(name)) return nullptr;
  if (name == "avx2") return avx2::int8_madd_peak;
  if (name == "avx512") return base::cpu_features().avx512vnni ? avx512vnni::int8_madd_peak : avx512::int8_madd_peak;
#else
  (void)name;
#endif
  return nullptr;
}

std::vector<std::string> available_kernel_sets() {
  std::vector<std::string> names = {"scalar"};
  for (const char* n : {"avx2", "avx512"})
    if (kernel_table_for(n)) names.push_back(n);
  return names;
}

std::string kernel_table_name(const KernelTable& table) {
  for (const std::string& n : available_kernel_sets())
    if (kernel_table_for(n) == &table) return n;
  return "custom";
}

const KernelTable& active_kernel_table() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  if (t) return *t;
  const KernelTable& chosen = startup_table();
  const KernelTable* expected = nullptr;
  g_active.compare_exchange_strong(expected, &chosen, std::memory_order_acq_rel);
  return *g_active.load(std::memory_order_acquire);
}

void set_active_kernel_table(const KernelTable& table) { g_active.store(&table, std::memory_order_release); }

const TypeKernels* find_kernels(GgmlType type) {
  const auto id = static_cast<size_t>(type);
  if (id >= kMaxTypeId) return nullptr;
  const TypeKernels& k = active_kernel_table()[id];
  return k.block_size == 0 ? nullptr : &k;
}

}  // namespace etna::tensor
