// gemma2 and gemma3: embeddings scaled by sqrt(n_embd), a head size of its own, RMS norms
// after attention and after the feed-forward as well as before, a GELU (tanh) gate, sliding-
// window attention on most layers. gemma2 soft-caps attention scores and output logits and
// slides on even layers; gemma3 normalises q and k per head and slides on five layers of six
// with their own rope base, the sixth global with linear rope scaling.
#include <cmath>
#include <vector>

#include "etna/model/blocks.h"
#include "etna/model/families.h"

namespace etna::model {
namespace {

using namespace blocks;

void configure_common(ModelConfig& c, const Loader& ld) {
  c.rope = ModelConfig::neox;
  c.embd_scale = std::sqrt(static_cast<float>(c.n_embd));
  c.sliding_window = ld.count("attention.sliding_window", 0);
}

void configure_gemma2(ModelConfig& c, const Loader& ld) {
  configure_common(c, ld);
  c.attn_softcap = static_cast<float>(ld.real("attn_logit_softcapping").value_or(50.0));
  c.final_softcap = static_cast<float>(ld.real("final_logit_softcapping").value_or(30.0));
  c.swa_pattern = 2;
  if (c.sliding_window == 0) c.sliding_window = 4096;
  // The 27B model (46 layers) scales queries by 1/sqrt(n_embd / n_head), the others by the
  // head size, as the peer does per model size.
  c.q_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer == 46 ? c.n_embd / c.n_head : c.head_dim));
}

void configure_gemma3(ModelConfig& c, const Loader& ld) {
  configure_common(c, ld);
  c.qk_norm = true;
  c.swa_pattern = 6;
  c.rope_freq_base_swa = 10000.0f;
  c.rope_freq_scale_swa = 1.0f;
  c.q_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer == 62 ? c.n_embd / c.n_head : c.head_dim));
  if (ld.has("attn_logit_softcapping") || ld.has("final_logit_softcapping"))
    fail(ErrorKind::unsupported, "{}: gemma3 with logit soft-capping is not handled", ld.file().path());
}

void load_layer(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  const auto E = static_cast<uint64_t>(c.n_embd);
  load_attention(c, ld, p, L);
  L.post_attention_norm = ld.tensor(p + "post_attention_norm.weight", {E});
  load_ffn(c, ld, p, L);
  L.post_ffw_norm = ld.tensor(p + "post_ffw_norm.weight", {E});
}

void forward(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out, Activation gelu) {
  const ModelConfig& c = m.config();
  const Model::Weights& w = m.weights();
  const int n = static_cast<int>(batch.size());
  const int E = c.n_embd, D = c.head_dim;

  std::vector<float> x(static_cast<size_t>(n) * E), cur(x.size()), q, k, v, attn, y;
  for (int t = 0; t < n; ++t) tensor::dequantize_row(w.token_embd.type, w.token_embd.row(batch.tokens[t]), &x[t * E], E);
  for (float& e : x) e *= c.embd_scale;

  for (int l = 0; l < c.n_layer; ++l) {
    const Model::Layer& L = w.layers[l];
    const Rope rope = Rope::of(c, l, nullptr);
    const Attention attn_params{1.0f, c.attn_softcap, c.is_swa(l) ? c.sliding_window : 0};

    // Attention, with the query scale applied to q after rope and the output normalised.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.attn_norm), E, c.rms_eps);
    linear(L.attn_q, cur.data(), n, q);
    linear(L.attn_k, cur.data(), n, k);
    linear(L.attn_v, cur.data(), n, v);
    if (c.qk_norm) {
      rms_norm_rows(q.data(), floats(L.attn_q_norm), n * c.n_head, D, c.rms_eps);
      rms_norm_rows(k.data(), floats(L.attn_k_norm), n * c.n_head_kv, D, c.rms_eps);
    }
    rope_and_store(c, rope, batch, cache, l, q, k, v);
    for (float& e : q) e *= c.q_scale;
    attention(c, attn_params, batch, cache, l, q, attn);
    linear(L.attn_output, attn.data(), n, y);
    rms_norm_rows(y.data(), floats(L.post_attention_norm), n, E, c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];

    // Feed-forward: down(gelu(gate(x)) * up(x)), normalised before it joins the stream.
    for (int t = 0; t < n; ++t) rms_norm(&cur[t * E], &x[t * E], floats(L.ffn_norm), E, c.rms_eps);
    gated_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, gelu, cur, n, y);
    rms_norm_rows(y.data(), floats(L.post_ffw_norm), n, E, c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  }
  for (int t = 0; t < n; ++t) cache.mark_filled(batch.seq[t], batch.pos[t]);
  output_rows(c, w, batch, x, hidden, out);
}

// The peers differ in GELU: the gemma2 reference's build evaluates it through GGML's F16 table
// (matched bit for bit at the first position), the gemma3 reference's build exactly.
void forward_gemma2(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out) {
  forward(m, batch, cache, hidden, out, Activation::gelu_f16_table);
}
void forward_gemma3(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out) {
  forward(m, batch, cache, hidden, out, Activation::gelu);
}

}  // namespace

const Family kGemma2Family{"gemma2", configure_gemma2, nullptr, load_layer, forward_gemma2};
const Family kGemma3Family{"gemma3", configure_gemma3, nullptr, load_layer, forward_gemma3};

}  // namespace etna::model
