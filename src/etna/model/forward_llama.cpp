// The llama-family forward pass (llama, qwen2), read top to bottom like llama2.c's forward().
// Order of operations and precision follow llama.cpp's graph: norms, softmax and attention in
// F32 (softmax sums in double, as GGML does), weight products through tensor::matmul, which
// quantises activations to the weight type's vec_dot type as GGML does.
#include <algorithm>
#include <cmath>
#include <vector>

#include "etna/base/vector_ops.h"
#include "etna/model/model.h"

namespace etna::model {
namespace {

using tensor::Matrix;

// y = x / sqrt(mean(x^2) + eps) * w, as ggml_rms_norm followed by ggml_mul.
void rms_norm(float* y, const float* x, const float* w, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / n);
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

const float* floats(const Matrix& m) { return reinterpret_cast<const float*>(m.data); }

// y (n_tokens x w.rows) = x (n_tokens x w.cols) . w^T, plus the bias row when present.
void linear(const Matrix& w, const Matrix& bias, const std::vector<float>& x, int n_tokens, std::vector<float>& y) {
  y.resize(static_cast<size_t>(n_tokens) * w.rows);
  tensor::matmul(w, x.data(), n_tokens, y.data());
  if (bias.data != nullptr) {
    const float* b = floats(bias);
    for (int t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] += b[r];
  }
}

// cos/sin of theta_i = pos * freq_scale * base^(-2i/n_rot) for i < n_rot/2, computed the way
// GGML's rope cache does (the power taken step by step in float).
void rope_angles(int pos, const ModelConfig& c, std::vector<float>& cs, std::vector<float>& sn) {
  const int half = c.n_rot / 2;
  cs.resize(half);
  sn.resize(half);
  const float theta_scale = std::pow(c.rope_freq_base, -2.0f / static_cast<float>(c.n_rot));
  float theta = static_cast<float>(pos);
  for (int i = 0; i < half; ++i) {
    const float angle = c.rope_freq_scale * theta;
    cs[i] = std::cos(angle);
    sn[i] = std::sin(angle);
    theta *= theta_scale;
  }
}

// Rotates the first n_rot dims of each of `n_heads` heads of `x` (head_dim apart).
// normal: pairs (x[2i], x[2i+1]); neox: pairs (x[i], x[i + n_rot/2]).
void rope(float* x, int n_heads, const ModelConfig& c, const std::vector<float>& cs, const std::vector<float>& sn) {
  const int half = c.n_rot / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * c.head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = c.rope == ModelConfig::neox ? i : 2 * i;
      const int b = c.rope == ModelConfig::neox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

// For query heads h0 <= h < h1 of one token: out_h = softmax(q_h . K[0..n_kv) * scale) . V[0..n_kv),
// over the cache cells of one sequence and layer; head h reads K/V head h / group. Each cached
// row is decoded once (F32 rows are read in place) and used by all heads of the range. `out`
// and `q` point at head 0 of the token.
void attend(float* out, const float* q, const KvCache& cache, int seq, int layer, int n_kv, const ModelConfig& c,
            float scale, int h0, int h1, std::vector<float>& p, std::vector<float>& row) {
  const int D = c.head_dim, group = c.n_head / c.n_head_kv, KV = c.n_embd_kv();
  const int H = h1 - h0;
  q += static_cast<size_t>(h0) * D;
  out += static_cast<size_t>(h0) * D;
  const bool in_place = cache.type() == KvType::f32;
  const gguf::GgmlType type = kv_ggml_type(cache.type());
  row.resize(KV);
  auto decode = [&](const uint8_t* r) -> const float* {
    if (in_place) return reinterpret_cast<const float*>(r);
    tensor::dequantize_row(type, r, row.data(), KV);
    return row.data();
  };
  p.resize(static_cast<size_t>(H) * n_kv);
  for (int j = 0; j < n_kv; ++j) {
    const float* k = decode(cache.k_row(seq, layer, j));
    for (int h = 0; h < H; ++h)
      p[static_cast<size_t>(h) * n_kv + j] = base::dot_f32(q + h * D, k + ((h0 + h) / group) * D, D) * scale;
  }
  for (int h = 0; h < H; ++h) {
    float* ph = &p[static_cast<size_t>(h) * n_kv];
    float max = -INFINITY;
    for (int j = 0; j < n_kv; ++j) max = std::max(max, ph[j]);
    double sum = 0.0;
    for (int j = 0; j < n_kv; ++j) {
      ph[j] = std::exp(ph[j] - max);
      sum += ph[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = 0; j < n_kv; ++j) ph[j] *= inv;
  }
  std::fill(out, out + static_cast<size_t>(H) * D, 0.0f);
  for (int j = 0; j < n_kv; ++j) {
    const float* v = decode(cache.v_row(seq, layer, j));
    for (int h = 0; h < H; ++h) {
      const float pj = p[static_cast<size_t>(h) * n_kv + j];
      const float* vh = v + ((h0 + h) / group) * D;
      float* oh = out + h * D;
      for (int d = 0; d < D; ++d) oh[d] += pj * vh[d];
    }
  }
}

}  // namespace

void Model::forward_llama(const Batch& batch, KvCache& cache, Output what, std::vector<float>& out_rows) const {
  const ModelConfig& c = config_;
  const int n = static_cast<int>(batch.tokens.size());
  const int E = c.n_embd, D = c.head_dim, KV = c.n_embd_kv(), Q = c.n_head * D;
  const float kq_scale = 1.0f / std::sqrt(static_cast<float>(D));

  std::vector<float> x(static_cast<size_t>(n) * E);  // the residual stream, one row per token
  std::vector<float> cur(x.size()), q, k, v, attn(static_cast<size_t>(n) * Q), out, gate, up;
  std::vector<float> cs, sn;

  // Token embeddings: rows of token_embd, decoded from whatever type they are stored in.
  for (int t = 0; t < n; ++t) tensor::dequantize_row(token_embd_.type, token_embd_.row(batch.tokens[t]), &x[t * E], E);

  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];

    // Attention: norm, projections, rotary embedding, keys/values into the cache.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.attn_norm), E, c.rms_eps);
    linear(L.attn_q, L.attn_q_bias, cur, n, q);
    linear(L.attn_k, L.attn_k_bias, cur, n, k);
    linear(L.attn_v, L.attn_v_bias, cur, n, v);
    for (int t = 0; t < n; ++t) {
      rope_angles(batch.pos[t], c, cs, sn);
      rope(&q[static_cast<size_t>(t) * Q], c.n_head, c, cs, sn);
      rope(&k[static_cast<size_t>(t) * KV], c.n_head_kv, c, cs, sn);
      cache.store_k(batch.seq[t], l, batch.pos[t], &k[static_cast<size_t>(t) * KV]);
      cache.store_v(batch.seq[t], l, batch.pos[t], &v[static_cast<size_t>(t) * KV]);
    }

    // Grouped-query attention: query head h reads key/value head h / group, causally. Tokens
    // (and, for fewer tokens than threads, ranges of heads) are independent tasks on the pool.
    {
      const int splits = std::min(c.n_head, n < tensor::num_threads() ? tensor::num_threads() : 1);
      int64_t work = 0;
      for (int t = 0; t < n; ++t) work += static_cast<int64_t>(batch.pos[t] + 1) * Q * 2;
      tensor::parallel_for(static_cast<int64_t>(n) * splits, work, [&](int64_t task) {
        thread_local std::vector<float> p_scratch, row_scratch;
        const int t = static_cast<int>(task / splits), s = static_cast<int>(task % splits);
        const int h0 = c.n_head * s / splits, h1 = c.n_head * (s + 1) / splits;
        attend(&attn[static_cast<size_t>(t) * Q], &q[static_cast<size_t>(t) * Q], cache, batch.seq[t], l,
               batch.pos[t] + 1, c, kq_scale, h0, h1, p_scratch, row_scratch);
      });
    }

    linear(L.attn_output, Matrix{}, attn, n, out);
    for (size_t i = 0; i < x.size(); ++i) x[i] += out[i];

    // Feed-forward (SwiGLU): down(silu(gate(x)) * up(x)).
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.ffn_norm), E, c.rms_eps);
    linear(L.ffn_gate, Matrix{}, cur, n, gate);
    linear(L.ffn_up, Matrix{}, cur, n, up);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    linear(L.ffn_down, Matrix{}, gate, n, out);
    for (size_t i = 0; i < x.size(); ++i) x[i] += out[i];
  }
  for (int t = 0; t < n; ++t) cache.mark_filled(batch.seq[t], batch.pos[t]);

  // Embeddings: the final norm of every token, no projection.
  if (what == Output::hidden) {
    out_rows.resize(x.size());
    for (int t = 0; t < n; ++t) rms_norm(&out_rows[t * E], &x[t * E], floats(output_norm_), E, c.rms_eps);
    return;
  }

  // Final norm and output projection, only for the tokens whose logits were asked for.
  std::vector<float> rows;
  int n_out = 0;
  for (int t = 0; t < n; ++t) {
    const bool want = batch.want_logits.empty() ? t == n - 1 : batch.want_logits[t] != 0;
    if (!want) continue;
    rows.resize(static_cast<size_t>(n_out + 1) * E);
    rms_norm(&rows[static_cast<size_t>(n_out) * E], &x[t * E], floats(output_norm_), E, c.rms_eps);
    ++n_out;
  }
  out_rows.resize(static_cast<size_t>(n_out) * c.n_vocab);
  if (n_out > 0) tensor::matmul(output_, rows.data(), n_out, out_rows.data());
}

}  // namespace etna::model
