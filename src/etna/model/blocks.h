// The named building blocks every family's forward pass is written with: norms, linear maps,
// rotary embeddings (plain, frequency factors, YaRN, LongRoPE), attention over the KV cache with
// its causal mask, sliding window and soft-capping, gated feed-forwards and the expert router.
// Each computes what the matching GGML operation computes, in the same order and precision.
// Internal to model/ (not part of the public API).
#pragma once
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "etna/model/model.h"
#include "etna/tensor/tensor.h"

namespace etna::model::blocks {

using tensor::Matrix;

inline const float* floats(const Matrix& m) { return reinterpret_cast<const float*>(m.data); }

// y = x / sqrt(mean(x^2) + eps) * w over n values, as ggml_rms_norm followed by ggml_mul.
void rms_norm(float* y, const float* x, const float* w, int n, float eps);
// rms_norm of each of `rows` consecutive n-value rows of x, in place.
void rms_norm_rows(float* x, const float* w, int rows, int n, float eps);

// y (n_tokens x w.rows) = x (n_tokens x w.cols) . w^T, plus the bias row when bias.data is set.
void linear(const Matrix& w, const Matrix& bias, const float* x, int n_tokens, std::vector<float>& y);
inline void linear(const Matrix& w, const float* x, int n_tokens, std::vector<float>& y) {
  linear(w, Matrix{}, x, n_tokens, y);
}

// Several linear() on the same x in one thread-pool dispatch (q, k, v; gate and up), the
// activations converted once: each y exactly as linear() computes it.
struct LinearOut {
  const Matrix* w;
  const Matrix* bias;  // nullptr or a Matrix without data: no bias
  std::vector<float>* y;
};
void linear_same_input(std::initializer_list<LinearOut> outs, const float* x, int n_tokens);

// x = tanh(x / cap) * cap elementwise (Gemma 2's logit soft-capping).
void soft_cap(float* x, size_t n, float cap);

// Rotary position embedding of one layer: the angles theta_i = pos * base^(-2i/n_rot) / factor_i
// (RoFormer), interpolated by `scale` (linear or YaRN ramp, Peng et al. 2023) and with cos/sin
// multiplied by attn_factor (the YaRN / LongRoPE magnitude correction).
struct Rope {
  int n_rot = 0, head_dim = 0;
  bool neox = false;            // pairs (x[i], x[i + n_rot/2]) instead of (x[2i], x[2i+1])
  float base = 10000.0f;
  float scale = 1.0f;           // 1 / scaling factor
  const float* factors = nullptr;  // n_rot/2 frequency divisors (rope_freqs, LongRoPE), or null
  float ext_factor = 0.0f;      // YaRN extrapolation mix (1 for YaRN, 0 otherwise)
  float attn_factor = 1.0f;
  float corr_low = 0.0f, corr_high = 0.0f;  // YaRN ramp ends, in rotated-pair index units

  // The rope of `layer` as the config describes it (the sliding-window layers of gemma3 use
  // their own base and scale), with `factors` as given.
  static Rope of(const ModelConfig& c, int layer, const float* factors);
  // cos/sin of each pair's angle at `pos` (n_rot/2 each), as GGML's rope cache computes them.
  void angles(int pos, std::vector<float>& cs, std::vector<float>& sn) const;
  // Rotates the first n_rot dims of each of n_heads heads of x (head_dim apart).
  void rotate(float* x, int n_heads, const std::vector<float>& cs, const std::vector<float>& sn) const;
};

// Causal scaled-dot-product attention (Vaswani et al. 2017) with grouped-query heads over the KV
// cache, for every token of the batch: token t attends to the cells of its sequence at positions
// max(0, pos - window + 1) .. pos (window 0: all), scores = (q . k) * scale, soft-capped when
// softcap > 0. The batch's keys and values must already be in the cache. `attn` gets n_head x
// head_dim values per token.
struct Attention {
  float scale = 1.0f;
  float softcap = 0.0f;
  int window = 0;
};
// How attention() evaluates: per token (one query at a time, every key read once per query;
// decode and small batches) or tiled (the query heads of one KV head times a block of a
// sequence's tokens against blocks of keys, each block decoded once and reused by all of them,
// through the kernel set's F32 gemm). `automatic` tiles the sequences with at least
// kTiledAttentionMinTokens tokens in the batch. Both compute the same softmax over the same
// scores with the same roundings; only the q.k summation order differs.
enum class AttentionPath { automatic, per_token, tiled };
constexpr int kTiledAttentionMinTokens = 16;
void attention(const ModelConfig& c, const Attention& a, const Batch& batch, const KvCache& cache, int layer,
               const std::vector<float>& q, std::vector<float>& attn, AttentionPath path = AttentionPath::automatic);

// Rotates q and k of every token by its position and stores k and v in the cache.
void rope_and_store(const ModelConfig& c, const Rope& rope, const Batch& batch, KvCache& cache, int layer,
                    std::vector<float>& q, std::vector<float>& k, const std::vector<float>& v);

// Gated linear units (Shazeer 2020): gate[i] = act(gate[i]) * up[i].
void swiglu(std::vector<float>& gate, const std::vector<float>& up);
// GELU with the tanh approximation (Hendrycks & Gimpel 2016), exactly or (f16_table) through
// GGML's table over every F16 input, as mainline GGML evaluates it.
void geglu(std::vector<float>& gate, const std::vector<float>& up, bool f16_table);

// down(act(gate(x)) * up(x)) for n tokens.
enum class Activation { silu, gelu, gelu_f16_table };
void gated_ffn(const Matrix& gate, const Matrix& up, const Matrix& down, Activation act, const std::vector<float>& x,
               int n, std::vector<float>& out);

// Mixture of experts (Shazeer et al. 2017; Mixtral): router logits = gate_inp . x, softmax over
// the experts, the expert_used_count largest chosen (weights renormalised to sum 1 when
// `normalise`), out = sum over chosen e of w_e * down_e(silu(gate_e(x)) * up_e(x)). Tokens are
// grouped by expert so each chosen expert's weights are read once per batch and the others
// not at all; `bytes_read` (when set) grows by the expert weight bytes each product reads.
void moe_ffn(const Model::Experts& ex, int n_used, bool normalise, const std::vector<float>& x, int n,
             std::vector<float>& out, std::atomic<uint64_t>* bytes_read);

// The final norm and the output projection of the tokens whose logits are asked for
// (want_logits, or the last token when it is empty), or the normalised hidden state of every
// token when `hidden`.
void output_rows(const ModelConfig& c, const Model::Weights& w, const Batch& batch, const std::vector<float>& x,
                 bool hidden, std::vector<float>& out);

}  // namespace etna::model::blocks
