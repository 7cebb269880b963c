// The public tensor functions: argument checks, then the active kernel table.
#include "etna/tensor/tensor.h"

#include <vector>

#include "etna/base/error.h"
#include "etna/tensor/kernels.h"

namespace etna::tensor {
namespace {

const TypeKernels& kernels_or_throw(GgmlType type) {
  const TypeKernels* k = find_kernels(type);
  if (!k) fail(ErrorKind::unsupported, "tensor type {} is not supported yet", gguf::ggml_type_name(type));
  return *k;
}

void check_length(const TypeKernels& k, int64_t n, const char* what) {
  if (n < 0 || n % k.block_size != 0)
    fail(ErrorKind::invalid_argument, "{}: {} elements is not a multiple of the {} block size {}", what, n,
         gguf::ggml_type_name(k.type), k.block_size);
}

size_t bytes_for(const TypeKernels& k, int64_t n) {
  return static_cast<size_t>(n / k.block_size) * k.block_bytes;
}

}  // namespace

bool is_supported(GgmlType type) { return find_kernels(type) != nullptr; }

GgmlType vec_dot_type(GgmlType type) { return kernels_or_throw(type).vec_dot_type; }

size_t row_bytes(GgmlType type, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "row_bytes");
  return bytes_for(k, n);
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "dequantize_row");
  k.dequantize(src, dst, n);
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  if (!k.quantize) fail(ErrorKind::unsupported, "quantising to {} is not supported", gguf::ggml_type_name(type));
  check_length(k, n, "quantize_row");
  k.quantize(src, dst, n);
}

float vec_dot(GgmlType type, int64_t n, const void* weight_row, const void* activation_row) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "vec_dot");
  return k.vec_dot(n, weight_row, activation_row);
}

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
  const TypeKernels& k = kernels_or_throw(w.type);
  check_length(k, w.cols, "matmul");
  if (w.rows < 0 || n_tokens < 0) fail(ErrorKind::invalid_argument, "matmul: negative shape");
  if (w.row_bytes < bytes_for(k, w.cols))
    fail(ErrorKind::invalid_argument, "matmul: row_bytes {} is less than the {} bytes of {} {} elements", w.row_bytes,
         bytes_for(k, w.cols), w.cols, gguf::ggml_type_name(w.type));
  if (w.rows == 0 || n_tokens == 0) return;

  // Convert every token's activations once (F32 weights use x as it is).
  const TypeKernels& act = kernels_or_throw(k.vec_dot_type);
  check_length(act, w.cols, "matmul activations");
  const size_t act_bytes = bytes_for(act, w.cols);
  const uint8_t* acts = reinterpret_cast<const uint8_t*>(x);
  thread_local std::vector<uint8_t> scratch;
  if (k.vec_dot_type != GgmlType::F32) {
    scratch.resize(act_bytes * static_cast<size_t>(n_tokens));
    for (int64_t t = 0; t < n_tokens; ++t)
      act.quantize(x + t * w.cols, scratch.data() + static_cast<size_t>(t) * act_bytes, w.cols);
    acts = scratch.data();
  }

  // Rows outside, tokens inside: each weight row is read from memory once for all tokens.
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* row = w.row(r);
    for (int64_t t = 0; t < n_tokens; ++t)
      y[t * w.rows + r] = k.vec_dot(w.cols, row, acts + static_cast<size_t>(t) * act_bytes);
  }
}

}  // namespace etna::tensor
