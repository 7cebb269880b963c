// Scalar kernels for the float formats F32, F16 and BF16.
#include <cstring>
#include <vector>

#include "etna/base/half.h"
#include "etna/tensor/scalar_kernels.h"

namespace etna::tensor::scalar {
namespace {

// Independent partial sums let the compiler vectorise without reassociating a single sum.
constexpr int kLanes = 16;

// Tail is the type the leftover (n % kLanes) products are summed in: float for F32, double for
// F16 and BF16, as GGML's ggml_vec_dot_f32 (float leftovers) and ggml_vec_dot_f16/_bf16
// (leftovers in ggml_float, i.e. double) do. With an F16 KV cache and head_dim < 16 the whole
// q.k product is leftovers: products of two halves are exact in float, so the double sum is the
// exact dot product rounded once, the value GGML's AVX-512 build computes there.
template <typename Tail = float, typename Load>
float lane_dot(int64_t n, Load load) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += load(i + l);
  Tail tail = 0;
  for (; i < n; ++i) tail += load(i);
  double sum = tail;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return static_cast<float>(sum);
}

// fp16 -> fp32 by table (256 KiB, built once): much cheaper than the bit arithmetic in the
// scalar dot loop, and bit-identical to it.
const float* fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_fp32(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

}  // namespace

void dequantize_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void quantize_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

float vec_dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  return lane_dot(n, [x, y](int64_t i) { return x[i] * y[i]; });
}

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(src);
  const float* table = fp16_table();
  for (int64_t i = 0; i < n; ++i) dst[i] = table[h[i]];
}

void quantize_f16(const float* src, void* dst, int64_t n) {
  uint16_t* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
}

float vec_dot_f16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const uint16_t* y = static_cast<const uint16_t*>(a);
  const float* table = fp16_table();
  return lane_dot<double>(n, [x, y, table](int64_t i) { return table[x[i]] * table[y[i]]; });
}

void axpy_f32(int64_t n, float a, const void* x, float* y) {
  const float* v = static_cast<const float*>(x);
  for (int64_t i = 0; i < n; ++i) y[i] += a * v[i];
}

void axpy_f16(int64_t n, float a, const void* x, float* y) {
  const uint16_t* h = static_cast<const uint16_t*>(x);
  const float* table = fp16_table();
  for (int64_t i = 0; i < n; ++i) y[i] += a * table[h[i]];
}

void gemm_f32(int m, int n, int k, const float* a, size_t rsa, size_t csa, const float* b, size_t ldb, float* c,
              size_t ldc, bool accumulate) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float s = accumulate ? c[i * ldc + j] : 0.0f;
      for (int p = 0; p < k; ++p) s += a[i * rsa + p * csa] * b[p * ldb + j];
      c[i * ldc + j] = s;
    }
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
}

void quantize_bf16(const float* src, void* dst, int64_t n) {
  uint16_t* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
}

float vec_dot_bf16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const uint16_t* y = static_cast<const uint16_t*>(a);
  return lane_dot<double>(n, [x, y](int64_t i) { return bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]); });
}

}  // namespace etna::tensor::scalar
