// The llama family (llama, Llama 3.1+ with rope frequency factors, Mixtral-style experts) and
// qwen2 (q/k/v biases, NeoX rope, YaRN): pre-norm blocks of rotary GQA attention and a SwiGLU
// feed-forward or a routed expert block, read top to bottom like llama2.c's forward().
#include <cmath>
#include <vector>

#include "etna/model/blocks.h"
#include "etna/model/families.h"

namespace etna::model {
namespace {

using namespace blocks;

void configure_llama(ModelConfig& c, const Loader& ld) {
  if (ld.has("expert_count")) configure_experts(c, ld, /*normalise_weights=*/true);
}

void configure_qwen2(ModelConfig& c, const Loader&) {
  c.rope = ModelConfig::neox;
  c.attn_bias = true;
}

void load_layer(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  load_attention(c, ld, p, L);
  load_ffn(c, ld, p, L);
}

void forward(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out) {
  const ModelConfig& c = m.config();
  const Model::Weights& w = m.weights();
  const int n = static_cast<int>(batch.size());
  const int E = c.n_embd;
  const Attention attn_params{1.0f / std::sqrt(static_cast<float>(c.head_dim)), 0.0f, 0};

  std::vector<float> x(static_cast<size_t>(n) * E);  // the residual stream, one row per token
  std::vector<float> cur(x.size()), q, k, v, attn, y;

  // Token embeddings: rows of token_embd, decoded from whatever type they are stored in.
  for (int t = 0; t < n; ++t) tensor::dequantize_row(w.token_embd.type, w.token_embd.row(batch.tokens[t]), &x[t * E], E);

  for (int l = 0; l < c.n_layer; ++l) {
    const Model::Layer& L = w.layers[l];
    const Rope rope = Rope::of(c, l, c.rope_freq_factors ? floats(w.rope_freqs) : nullptr);

    // Attention: norm, projections, rotary embedding, keys/values into the cache, GQA.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.attn_norm), E, c.rms_eps);
    linear_same_input({{&L.attn_q, &L.attn_q_bias, &q}, {&L.attn_k, &L.attn_k_bias, &k}, {&L.attn_v, &L.attn_v_bias, &v}},
                      cur.data(), n);
    rope_and_store(c, rope, batch, cache, l, q, k, v);
    attention(c, attn_params, batch, cache, l, q, attn);
    linear(L.attn_output, attn.data(), n, y);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];

    // Feed-forward: SwiGLU, down(silu(gate(x)) * up(x)), or the experts the router picks.
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

const Family kLlamaFamily{"llama", configure_llama, nullptr, load_layer, forward};
const Family kQwen2Family{"qwen2", configure_qwen2, nullptr, load_layer, forward};

}  // namespace etna::model
