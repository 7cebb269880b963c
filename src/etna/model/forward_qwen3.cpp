// qwen3 and qwen3moe: the llama block with a per-head RMS norm of q and k before the (NeoX)
// rotary embedding, a head size of its own (attention.key_length), no biases; qwen3moe routes
// every layer's feed-forward to experts with renormalised top-k weights.
#include <cmath>
#include <vector>

#include "etna/model/blocks.h"
#include "etna/model/families.h"

namespace etna::model {
namespace {

using namespace blocks;

void configure_qwen3(ModelConfig& c, const Loader&) {
  c.rope = ModelConfig::neox;
  c.qk_norm = true;
}

void configure_qwen3moe(ModelConfig& c, const Loader& ld) {
  configure_qwen3(c, ld);
  configure_experts(c, ld, /*normalise_weights=*/true);
}

void load_layer(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  load_attention(c, ld, p, L);
  load_ffn(c, ld, p, L);
}

void forward(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out) {
  const ModelConfig& c = m.config();
  const Model::Weights& w = m.weights();
  const int n = static_cast<int>(batch.size());
  const int E = c.n_embd, D = c.head_dim;
  const Attention attn_params{1.0f / std::sqrt(static_cast<float>(D)), 0.0f, 0};

  std::vector<float> x(static_cast<size_t>(n) * E), cur(x.size()), q, k, v, attn, y;
  for (int t = 0; t < n; ++t) tensor::dequantize_row(w.token_embd.type, w.token_embd.row(batch.tokens[t]), &x[t * E], E);

  for (int l = 0; l < c.n_layer; ++l) {
    const Model::Layer& L = w.layers[l];
    const Rope rope = Rope::of(c, l, nullptr);

    // Attention: q and k normalised per head, then rotated.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.attn_norm), E, c.rms_eps);
    linear(L.attn_q, cur.data(), n, q);
    linear(L.attn_k, cur.data(), n, k);
    linear(L.attn_v, cur.data(), n, v);
    rms_norm_rows(q.data(), floats(L.attn_q_norm), n * c.n_head, D, c.rms_eps);
    rms_norm_rows(k.data(), floats(L.attn_k_norm), n * c.n_head_kv, D, c.rms_eps);
    rope_and_store(c, rope, batch, cache, l, q, k, v);
    attention(c, attn_params, batch, cache, l, q, attn);
    linear(L.attn_output, attn.data(), n, y);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];

    // Feed-forward: SwiGLU (qwen3) or the routed experts (qwen3moe).
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.ffn_norm), E, c.rms_eps);
    if (c.n_expert > 0)
      moe_ffn(L.moe, c.n_expert_used, c.expert_weights_norm, cur, n, y, m.expert_counter());
    else
      gated_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, Activation::silu, cur, n, y);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  }
  for (int t = 0; t < n; ++t) cache.mark_filled(batch.seq[t], batch.pos[t]);
  output_rows(c, w, batch, x, hidden, out);
}

}  // namespace

const Family kQwen3Family{"qwen3", configure_qwen3, nullptr, load_layer, forward};
const Family kQwen3MoeFamily{"qwen3moe", configure_qwen3moe, nullptr, load_layer, forward};

}  // namespace etna::model
