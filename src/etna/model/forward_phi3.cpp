// phi3 (Phi-3, Phi-3.5, Phi-4-mini): the llama block with q|k|v fused in one projection, gate|up
// fused in ffn_up, LongRoPE (per-dimension frequency factors, the short or the long set chosen
// by the context size against the original context, and an attention factor on cos/sin), and
// sliding-window attention when the file declares a window.
#include <algorithm>
#include <cmath>
#include <vector>

#include "etna/model/blocks.h"
#include "etna/model/families.h"

namespace etna::model {
namespace {

using namespace blocks;

void configure(ModelConfig& c, const Loader& ld) {
  c.rope = ModelConfig::neox;
  c.sliding_window = ld.count("attention.sliding_window", 0);
}

void load_model(const ModelConfig& c, const Loader& ld, Model::Weights& w) {
  const std::vector<uint64_t> half{static_cast<uint64_t>(c.n_rot / 2)};
  w.rope_factors_long = ld.tensor("rope_factors_long.weight", half, /*required=*/false);
  w.rope_factors_short = ld.tensor("rope_factors_short.weight", half, /*required=*/false);
  if ((w.rope_factors_long.data == nullptr) != (w.rope_factors_short.data == nullptr))
    fail(ErrorKind::corrupt, "{}: LongRoPE needs both rope_factors_long and rope_factors_short", ld.file().path());
}

void load_layer(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  const auto E = static_cast<uint64_t>(c.n_embd), F = static_cast<uint64_t>(c.n_ff);
  const auto Q = static_cast<uint64_t>(c.n_head) * c.head_dim, KV = static_cast<uint64_t>(c.n_embd_kv());
  L.attn_norm = ld.tensor(p + "attn_norm.weight", {E});
  L.attn_qkv = ld.tensor(p + "attn_qkv.weight", {E, Q + 2 * KV});
  L.attn_output = ld.tensor(p + "attn_output.weight", {Q, E});
  L.ffn_norm = ld.tensor(p + "ffn_norm.weight", {E});
  L.ffn_up = ld.tensor(p + "ffn_up.weight", {E, 2 * F});
  L.ffn_down = ld.tensor(p + "ffn_down.weight", {F, E});
}

void forward(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out) {
  const ModelConfig& c = m.config();
  const Model::Weights& w = m.weights();
  const int n = static_cast<int>(batch.size());
  const int E = c.n_embd, F = c.n_ff, Q = c.n_head * c.head_dim, KV = c.n_embd_kv();
  // LongRoPE: the long factors once the context outgrows the original one.
  const Matrix& factors = cache.n_ctx() > c.n_ctx_orig ? w.rope_factors_long : w.rope_factors_short;
  const Attention attn_params{1.0f, 0.0f, c.sliding_window};
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  std::vector<float> x(static_cast<size_t>(n) * E), cur(x.size()), qkv, q, k, v, attn, y, gu, g, u;
  for (int t = 0; t < n; ++t) tensor::dequantize_row(w.token_embd.type, w.token_embd.row(batch.tokens[t]), &x[t * E], E);

  for (int l = 0; l < c.n_layer; ++l) {
    const Model::Layer& L = w.layers[l];
    const Rope rope = Rope::of(c, l, factors.data ? floats(factors) : nullptr);

    // Attention: one fused projection split into q, k and v.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.attn_norm), E, c.rms_eps);
    linear(L.attn_qkv, cur.data(), n, qkv);
    q.resize(static_cast<size_t>(n) * Q);
    k.resize(static_cast<size_t>(n) * KV);
    v.resize(static_cast<size_t>(n) * KV);
    for (int t = 0; t < n; ++t) {
      const float* r = &qkv[static_cast<size_t>(t) * (Q + 2 * KV)];
      std::copy_n(r, Q, &q[static_cast<size_t>(t) * Q]);
      std::copy_n(r + Q, KV, &k[static_cast<size_t>(t) * KV]);
      std::copy_n(r + Q + KV, KV, &v[static_cast<size_t>(t) * KV]);
    }
    rope_and_store(c, rope, batch, cache, l, q, k, v);
    for (float& e : q) e *= q_scale;
    attention(c, attn_params, batch, cache, l, q, attn);
    linear(L.attn_output, attn.data(), n, y);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];

    // Feed-forward: ffn_up gives gate|up; down(silu(gate) * up).
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.ffn_norm), E, c.rms_eps);
    linear(L.ffn_up, cur.data(), n, gu);
    g.resize(static_cast<size_t>(n) * F);
    u.resize(g.size());
    for (int t = 0; t < n; ++t) {
      std::copy_n(&gu[static_cast<size_t>(t) * 2 * F], F, &g[static_cast<size_t>(t) * F]);
      std::copy_n(&gu[static_cast<size_t>(t) * 2 * F + F], F, &u[static_cast<size_t>(t) * F]);
    }
    swiglu(g, u);
    linear(L.ffn_down, g.data(), n, y);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  }
  for (int t = 0; t < n; ++t) cache.mark_filled(batch.seq[t], batch.pos[t]);
  output_rows(c, w, batch, x, hidden, out);
}

}  // namespace

const Family kPhi3Family{"phi3", configure, load_model, load_layer, forward};

}  // namespace etna::model
