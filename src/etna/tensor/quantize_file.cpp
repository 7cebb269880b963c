// Dispatch of the file quantisers. The 32-element formats and the float formats use the scalar
// kernels' encoders, which already round as GGML's reference ones do; the active (SIMD) kernel
// set is deliberately not used, so files do not depend on the CPU.
#include "etna/base/error.h"
#include "etna/tensor/quantize.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor {
namespace {

using QuantizeFn = void (*)(const float*, void*, int64_t);

QuantizeFn file_quantizer(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return scalar::quantize_f32;
    case GgmlType::F16: return scalar::quantize_f16;
    case GgmlType::BF16: return scalar::quantize_bf16;
    case GgmlType::Q4_0: return scalar::quantize_q4_0;
    case GgmlType::Q4_1: return scalar::quantize_q4_1;
    case GgmlType::Q5_0: return scalar::quantize_q5_0;
    case GgmlType::Q5_1: return scalar::quantize_q5_1;
    case GgmlType::Q8_0: return scalar::quantize_q8_0;
    case GgmlType::Q2_K: return quantize_q2_k_ref;
    case GgmlType::Q3_K: return quantize_q3_k_ref;
    case GgmlType::Q4_K: return quantize_q4_k_ref;
    case GgmlType::Q5_K: return quantize_q5_k_ref;
    case GgmlType::Q6_K: return quantize_q6_k_ref;
    case GgmlType::IQ4_NL: return scalar::quantize_iq4_nl;  // GGML's reference search, no importance matrix
    case GgmlType::IQ4_XS: return scalar::quantize_iq4_xs;
    case GgmlType::IQ3_S: return quantize_iq3_s_ref;
    default: return nullptr;
  }
}

}  // namespace

bool can_quantize_for_file(GgmlType type) { return file_quantizer(type) != nullptr; }

namespace {
using WeightedFn = void (*)(const float*, void*, int64_t, const float*);
WeightedFn weighted_quantizer(GgmlType type) {
  switch (type) {
    case GgmlType::IQ4_NL: return scalar::quantize_iq4_nl_weighted;
    case GgmlType::IQ4_XS: return scalar::quantize_iq4_xs_weighted;
    case GgmlType::IQ3_S: return quantize_iq3_s_weighted;
    case GgmlType::Q4_0: return quantize_q4_0_weighted;
    case GgmlType::Q4_1: return quantize_q4_1_weighted;
    case GgmlType::Q5_0: return quantize_q5_0_weighted;
    case GgmlType::Q2_K: return quantize_q2_k_weighted;
    case GgmlType::Q3_K: return quantize_q3_k_weighted;
    case GgmlType::Q4_K: return quantize_q4_k_weighted;
    case GgmlType::Q5_K: return quantize_q5_k_weighted;
    case GgmlType::Q6_K: return quantize_q6_k_weighted;
    case GgmlType::Q8_0:  // GGML quantises Q8_0 the same with or without importance
      return [](const float* x, void* dst, int64_t n, const float*) { scalar::quantize_q8_0(x, dst, n); };
    default: return nullptr;
  }
}
}  // namespace

bool can_weight_for_file(GgmlType type) { return weighted_quantizer(type) != nullptr; }

void quantize_for_file_weighted(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols, const float* qw) {
  const WeightedFn fn = weighted_quantizer(type);
  if (!fn) fail(ErrorKind::unsupported, "importance-weighted quantisation to {} is not supported", gguf::ggml_type_name(type));
  const auto info = gguf::ggml_type_info(static_cast<uint32_t>(type));
  if (cols <= 0 || rows < 0 || cols % info->block_size != 0)
    fail(ErrorKind::invalid_argument, "quantize_for_file_weighted: rows of {} values are not whole {} blocks", cols,
         gguf::ggml_type_name(type));
  const size_t row_bytes = gguf::ggml_row_bytes(type, static_cast<uint64_t>(cols));
  for (int64_t r = 0; r < rows; ++r)
    fn(src + r * cols, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * row_bytes, cols, qw);
}

void quantize_for_file(GgmlType type, const float* src, void* dst, int64_t n) {
  const QuantizeFn fn = file_quantizer(type);
  if (!fn) fail(ErrorKind::unsupported, "quantising to {} is not supported", gguf::ggml_type_name(type));
  const auto info = gguf::ggml_type_info(static_cast<uint32_t>(type));
  if (n < 0 || n % info->block_size != 0)
    fail(ErrorKind::invalid_argument, "quantize_for_file: {} values are not a whole number of {} blocks ({})", n,
         gguf::ggml_type_name(type), info->block_size);
  fn(src, dst, n);
}

}  // namespace etna::tensor
