// Quantising weights for model files: the encoders GGML's reference quantisers define, which
// llama.cpp's quantize tool uses when no importance matrix is given. Every scale search, every
// float operation and its order follow those reference encoders, so a row quantised here has
// the same bytes as the peer's (tests/unit/hub/quantize_test.cpp compares whole files).
//
// These are slower than the activation quantisers behind tensor.h's quantize_row (which may be
// SIMD and round differently); use them to write files, not in forward passes.
#pragma once
#include <cstdint>

#include "etna/gguf/ggml_type.h"

namespace etna::tensor {

using gguf::GgmlType;

// True when quantize_for_file can produce `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, IQ3_S.
bool can_quantize_for_file(GgmlType type);

// Encodes n floats (one or more whole rows) into `type` blocks at dst (ggml_row_bytes(type, n)
// bytes). Deterministic and independent of the CPU's kernel set.
// REQUIRES: can_quantize_for_file(type); n a multiple of the type's block size.
// Throws etna::Error (unsupported) for other types, (invalid_argument) for a bad n.
void quantize_for_file(GgmlType type, const float* src, void* dst, int64_t n);

// The K-quant reference encoders (quantize_kquants.cpp). REQUIRES: n a multiple of 256.
void quantize_q2_k_ref(const float* x, void* dst, int64_t n);
void quantize_q3_k_ref(const float* x, void* dst, int64_t n);
void quantize_q4_k_ref(const float* x, void* dst, int64_t n);
void quantize_q5_k_ref(const float* x, void* dst, int64_t n);
void quantize_q6_k_ref(const float* x, void* dst, int64_t n);
// Their importance-weighted forms (GGML's *_impl encoders): qw holds one weight per value of x.
void quantize_q2_k_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q3_k_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q4_k_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q5_k_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q6_k_weighted(const float* x, void* dst, int64_t n, const float* qw);
// The 32-block types' weighted forms (one row of n values per call: the weighting's scale is
// the row's mean square). REQUIRES: n a multiple of 32.
void quantize_q4_0_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q4_1_weighted(const float* x, void* dst, int64_t n, const float* qw);
void quantize_q5_0_weighted(const float* x, void* dst, int64_t n, const float* qw);

// The IQ3_S reference encoder without an importance matrix (quantize_iq3s.cpp): a scale
// search over 19 trial scales per 32-group with snapping to the 512-point grid.
// REQUIRES: n a multiple of 256.
void quantize_iq3_s_ref(const float* x, void* dst, int64_t n);
void quantize_iq3_s_weighted(const float* x, void* dst, int64_t n, const float* qw);

// True when quantize_for_file_weighted can use importance weights for `type` (Q4_0, Q4_1,
// Q5_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS, IQ3_S; Q8_0, which GGML never weights, too). Q5_1 has no
// weighted form here.
bool can_weight_for_file(GgmlType type);

// As quantize_for_file, for `rows` rows of `cols` values, each value's error weighted by the
// importance of its column: qw holds `cols` values (GGML's quant_weights, an importance
// matrix's mean squared activations). REQUIRES: can_weight_for_file(type); cols a multiple of
// the block size. Throws etna::Error (unsupported) for other types.
void quantize_for_file_weighted(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols, const float* qw);

}  // namespace etna::tensor
