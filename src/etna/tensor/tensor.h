// The narrow kernel interface every layer above uses. A weight matrix is a GGUF tensor used in
// place: `rows` rows of `cols` elements, each row `row_bytes` bytes of GGML blocks.
//
// Numerics follow llama.cpp: before a dot product with quantised weights the activations are
// converted to the weight type's "vec_dot type" (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1,
// Q8_K for the K-quants, F16 for F16, BF16 for BF16, F32 for F32) and the products are summed
// in integers per block, so results agree with llama.cpp to float rounding.
//
// The implementations behind these functions may be replaced per instruction set; callers
// must not depend on how they are computed, only on these contracts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "etna/gguf/ggml_type.h"

namespace etna::tensor {

using gguf::GgmlType;

struct Matrix {
  GgmlType type = GgmlType::F32;
  int64_t cols = 0;          // elements per row (ne[0])
  int64_t rows = 0;          // ne[1] (times ne[2], ne[3] for higher ranks)
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  // False: GGML's row-major rows. True: rows in groups of 8, interleaved by repack_rows; only
  // matmul reads such a matrix (row() does not apply).
  bool interleaved = false;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// True when dequantize_row / matmul support `type`.
bool is_supported(GgmlType type);

// The format activations are converted to before a dot product with weights of `type`.
GgmlType vec_dot_type(GgmlType type);

// Bytes of one row of n elements. REQUIRES: n a multiple of the block size.
size_t row_bytes(GgmlType type, int64_t n);

// dst[0..n) = the n values stored at src. REQUIRES: n a multiple of the block size.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes n floats into `type` blocks at dst (row_bytes(type, n) bytes), rounding as GGML's
// reference quantisers do. Supported: F32, F16, BF16, Q8_0, Q8_1, Q8_K, Q4_0, Q4_1, Q5_0, Q5_1.
// Throws etna::Error (unsupported) for other types.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// Dot product of one weight row (type `type`) with one activation row already encoded in
// vec_dot_type(type). n elements.
float vec_dot(GgmlType type, int64_t n, const void* weight_row, const void* activation_row);

// y[t * w.rows + r] = dot(w.row(r), x[t * w.cols ...]) for t < n_tokens, r < w.rows.
// x is F32, row-major, n_tokens × w.cols; y is n_tokens × w.rows. Activations are converted
// once per token, then every weight row is dotted with them. Weight rows are split across
// the tensor thread pool; every y value equals vec_dot on the same operands, bit for bit,
// whatever the thread count. Safe to call from several threads at once (the pool serves one
// caller at a time; the others compute on their own thread).
void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y);

// Several matrices applied to the same x (e.g. a layer's q, k and v projections) in one
// dispatch of the thread pool: y of each equals matmul(*w, x, n_tokens, y) bit for bit.
// Matrices with the same cols and vec_dot_type share one conversion of the activations.
struct MatmulOut {
  const Matrix* w = nullptr;
  float* y = nullptr;  // n_tokens x w->rows
};
void matmul_many(const MatmulOut* outs, int count, const float* x, int64_t n_tokens);

// The types repack_rows has a layout for: Q4_0, Q8_0 and the K-quants Q2_K .. Q6_K.
bool is_packable_type(GgmlType type);

// True when repack_rows can interleave `w` and the active kernel set has a kernel for the
// result: a packable type, rows a positive multiple of 8, rows packed back to back.
bool can_repack(const Matrix& w);

// Rearranges w in place into groups of 8 rows and sets w.interleaved. Q4_0 / Q8_0, per
// 32-element block: the 8 fp16 scales, then the quants in 4-byte chunks, chunk c of the 8 rows
// side by side, so that one vector load feeds 8 rows. Q4_K / Q6_K: per super-block the 8 rows'
// d (dmin), their sub-block scales regrouped by row, then the quants in 4-byte chunks likewise
// (repack.cpp). Other K-quants: the 8 rows' super-blocks i side by side, so that the 8-row
// kernel reads one contiguous stream. `data` is w.data, writable.
// matmul on the result equals matmul on the original bit for bit. REQUIRES: can_repack(w).
void repack_rows(Matrix& w, uint8_t* data);

// Writes the 8 original rows of group g (rows 8g..8g+7) of an interleaved matrix to out
// (8 * w.row_bytes bytes).
void unpack_group(const Matrix& w, int64_t g, uint8_t* out);

// Calls fn(i) for every i in [0, n_tasks) on the tensor thread pool (the caller takes part)
// and returns when all are done; runs them in order on the calling thread when `work` (the
// caller's estimate of multiply-adds in all tasks) is too small to pay for waking the pool.
void parallel_for(int64_t n_tasks, int64_t work, const std::function<void(int64_t)>& fn);

// Threads matmul uses (the caller included). n < 1 means the default: physical cores.
void set_num_threads(int n);
int num_threads();

// The active kernel set, e.g. "avx2" or "avx512+vnni" (for `etna info --cpu` and benches).
std::string active_kernels_name();

}  // namespace etna::tensor
