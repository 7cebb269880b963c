// The bert encoder: loading (hyperparameters, weights checked for shape and type) and the
// forward pass of one sequence, read top to bottom. Order of operations and precision follow
// llama.cpp's bert graph on the CPU backend: LayerNorm sums in double (as ggml_norm does),
// softmax sums in double, GELU through GGML's half-precision table, weight products through
// tensor::matmul.
#include "etna/base/vector_ops.h"
#include "etna/model/bert.h"

#include <algorithm>
#include <cmath>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/base/log.h"
#include "etna/model/loader.h"

namespace etna::model {
namespace {

using tensor::Matrix;

const float* floats(const Matrix& m) { return reinterpret_cast<const float*>(m.data); }

// y = (x - mean(x)) / sqrt(var(x) + eps) * w + b, as ggml_norm followed by ggml_mul, ggml_add.
void layer_norm(float* y, const float* x, const Matrix& w, const Matrix& b, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  double sum2 = 0.0;
  for (int i = 0; i < n; ++i) {
    const float v = x[i] - mean;
    y[i] = v;
    sum2 += static_cast<double>(v * v);
  }
  const float variance = static_cast<float>(sum2 / n);
  const float scale = 1.0f / std::sqrt(variance + eps);
  const float* wv = floats(w);
  const float* bv = floats(b);
  for (int i = 0; i < n; ++i) y[i] = (y[i] * scale) * wv[i] + bv[i];
}

// GELU, tanh approximation, exactly as GGML's CPU backend evaluates it: the input rounded to
// half precision, the result looked up in (here: computed as) a half-precision table, with
// the tails cut off at +-10.
float gelu(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  const float h = fp16_to_fp32(fp32_to_fp16(x));
  const float g = 0.5f * h * (1.0f + std::tanh(kSqrt2OverPi * h * (1.0f + kCoef * h * h)));
  return fp16_to_fp32(fp32_to_fp16(g));
}

// y (n_tokens x w.rows) = x (n_tokens x w.cols) . w^T + bias.
void linear(const Matrix& w, const Matrix& bias, const std::vector<float>& x, int n_tokens, std::vector<float>& y) {
  y.resize(static_cast<size_t>(n_tokens) * w.rows);
  tensor::matmul(w, x.data(), n_tokens, y.data());
  const float* b = floats(bias);
  for (int t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] += b[r];
}

// Bidirectional multi-head attention of n tokens: out[t, head h] = softmax(q_t . K_h * scale) . V_h.
// q, k, v, out are n x (n_head * head_dim), head h at offset h * head_dim.
void attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int n,
               int n_head, int head_dim, std::vector<float>& out) {
  const int E = n_head * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  out.assign(static_cast<size_t>(n) * E, 0.0f);
  std::vector<float> p(n);
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < n_head; ++h) {
      const float* qh = &q[static_cast<size_t>(t) * E + h * head_dim];
      float max = -INFINITY;
      for (int j = 0; j < n; ++j) {
        p[j] = base::dot_f32(qh, &k[static_cast<size_t>(j) * E + h * head_dim], head_dim) * scale;
        max = std::max(max, p[j]);
      }
      double sum = 0.0;
      for (int j = 0; j < n; ++j) {
        p[j] = std::exp(p[j] - max);
        sum += p[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = &out[static_cast<size_t>(t) * E + h * head_dim];
      for (int j = 0; j < n; ++j) {
        const float w = p[j] * inv;
        const float* vj = &v[static_cast<size_t>(j) * E + h * head_dim];
        for (int d = 0; d < head_dim; ++d) o[d] += w * vj[d];
      }
    }
  }
}

}  // namespace

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::none: return "none";
    case Pooling::mean: return "mean";
    case Pooling::cls: return "cls";
    case Pooling::last: return "last";
    case Pooling::rank: return "rank";
  }
  return "unknown";
}

BertModel::~BertModel() = default;

std::unique_ptr<BertModel> BertModel::load(const std::string& path) {
  std::unique_ptr<BertModel> m(new BertModel());
  m->file_ = gguf::GgufFile::open(path);
  const gguf::GgufFile& f = *m->file_;
  BertConfig& c = m->config_;
  c.arch = f.architecture();
  c.name = f.get_string("general.name").value_or("");
  if (c.arch != "bert")
    fail(ErrorKind::unsupported, "{}: architecture '{}' is not a supported encoder (supported: bert)", path,
         c.arch.empty() ? std::string("(none)") : c.arch);
  Loader ld(f);
  c.n_embd = ld.count("embedding_length");
  c.n_layer = ld.count("block_count");
  c.n_ff = ld.count("feed_forward_length");
  c.n_head = ld.count("attention.head_count");
  c.n_ctx_train = ld.count("context_length");
  if (c.n_embd % c.n_head != 0)
    fail(ErrorKind::corrupt, "{}: embedding_length {} is not a multiple of head_count {}", path, c.n_embd, c.n_head);
  c.head_dim = c.n_embd / c.n_head;
  c.norm_eps = static_cast<float>(ld.real("attention.layer_norm_epsilon").value_or(1e-12));
  if (!(c.norm_eps >= 0) || !std::isfinite(c.norm_eps))
    fail(ErrorKind::corrupt, "{}: attention.layer_norm_epsilon is out of range", path);
  if (f.get_bool(c.arch + ".attention.causal").value_or(false))
    fail(ErrorKind::unsupported, "{}: causal bert encoders are not supported", path);
  const uint64_t pooling = f.get_uint(c.arch + ".pooling_type").value_or(0);
  if (pooling > static_cast<uint64_t>(Pooling::rank))
    fail(ErrorKind::unsupported, "{}: pooling_type {} is unknown", path, pooling);
  c.pooling = static_cast<Pooling>(pooling);

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) fail(ErrorKind::corrupt, "{}: missing tensor token_embd.weight", path);
  if (embd->dims.size() < 2 || embd->dims[1] == 0 || embd->dims[1] > (1u << 30))
    fail(ErrorKind::corrupt, "{}: tensor token_embd.weight has a bad shape", path);
  c.n_vocab = static_cast<int>(embd->dims[1]);
  const gguf::TensorInfo* types = f.find_tensor("token_types.weight");
  if (types == nullptr) fail(ErrorKind::corrupt, "{}: missing tensor token_types.weight", path);
  if (types->dims.size() < 2 || types->dims[1] == 0)
    fail(ErrorKind::corrupt, "{}: tensor token_types.weight has a bad shape", path);

  const auto E = static_cast<uint64_t>(c.n_embd), F = static_cast<uint64_t>(c.n_ff);
  m->token_embd_ = ld.tensor("token_embd.weight", {E, static_cast<uint64_t>(c.n_vocab)});
  m->token_types_ = ld.tensor("token_types.weight", {E, types->dims[1]});
  m->position_embd_ = ld.tensor("position_embd.weight", {E, static_cast<uint64_t>(c.n_ctx_train)});
  m->embd_norm_ = ld.tensor("token_embd_norm.weight", {E});
  m->embd_norm_bias_ = ld.tensor("token_embd_norm.bias", {E});
  m->layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& L = m->layers_[i];
    L.attn_q = ld.tensor(p + "attn_q.weight", {E, E});
    L.attn_q_bias = ld.tensor(p + "attn_q.bias", {E});
    L.attn_k = ld.tensor(p + "attn_k.weight", {E, E});
    L.attn_k_bias = ld.tensor(p + "attn_k.bias", {E});
    L.attn_v = ld.tensor(p + "attn_v.weight", {E, E});
    L.attn_v_bias = ld.tensor(p + "attn_v.bias", {E});
    L.attn_output = ld.tensor(p + "attn_output.weight", {E, E});
    L.attn_output_bias = ld.tensor(p + "attn_output.bias", {E});
    L.attn_output_norm = ld.tensor(p + "attn_output_norm.weight", {E});
    L.attn_output_norm_bias = ld.tensor(p + "attn_output_norm.bias", {E});
    L.ffn_up = ld.tensor(p + "ffn_up.weight", {E, F});
    L.ffn_up_bias = ld.tensor(p + "ffn_up.bias", {F});
    L.ffn_down = ld.tensor(p + "ffn_down.weight", {F, E});
    L.ffn_down_bias = ld.tensor(p + "ffn_down.bias", {E});
    L.layer_output_norm = ld.tensor(p + "layer_output_norm.weight", {E});
    L.layer_output_norm_bias = ld.tensor(p + "layer_output_norm.bias", {E});
  }
  // The classification head of cross-encoders (rerankers): cls (n_embd -> n_embd, tanh), then
  // optionally cls.output (n_embd -> n_cls_out).
  if (f.find_tensor("cls.weight") != nullptr) {
    m->cls_ = ld.tensor("cls.weight", {E, E});
    m->cls_bias_ = ld.tensor("cls.bias", {E});
    c.n_cls_out = c.n_embd;
    if (const gguf::TensorInfo* out = f.find_tensor("cls.output.weight")) {
      if (out->dims.size() < 2 || out->dims[1] == 0 || out->dims[1] > 65536)
        fail(ErrorKind::corrupt, "{}: tensor cls.output.weight has a bad shape", path);
      c.n_cls_out = static_cast<int>(out->dims[1]);
      m->cls_out_ = ld.tensor("cls.output.weight", {E, out->dims[1]});
      m->cls_out_bias_ = ld.tensor("cls.output.bias", {out->dims[1]});
    }
  } else if (f.find_tensor("cls.output.weight") != nullptr) {
    fail(ErrorKind::corrupt, "{}: cls.output.weight without cls.weight: the classification head is incomplete", path);
  }
  if (c.pooling == Pooling::rank && m->cls_.data == nullptr)
    fail(ErrorKind::corrupt, "{}: pooling_type rank (a reranker) needs the classification head cls.weight", path);
  log::debug("loaded {}: {} n_embd={} n_layer={} n_head={} n_ff={} n_vocab={} pooling={}", path, c.arch, c.n_embd,
             c.n_layer, c.n_head, c.n_ff, c.n_vocab, pooling_name(c.pooling));
  return m;
}

void BertModel::forward(const std::vector<int32_t>& tokens, std::vector<float>& hidden) const {
  const BertConfig& c = config_;
  const int n = static_cast<int>(tokens.size());
  if (n == 0) fail(ErrorKind::invalid_argument, "cannot embed an empty token sequence");
  if (n > c.n_ctx_train)
    fail(ErrorKind::limit, "input is too long for the model ({} tokens > {})", n, c.n_ctx_train);
  for (int32_t t : tokens)
    if (t < 0 || t >= c.n_vocab)
      fail(ErrorKind::invalid_argument, "token id {} is out of range (vocabulary of {})", t, c.n_vocab);
  const int E = c.n_embd;

  // Embeddings: token + token type 0 ("sentence A") + absolute position, then LayerNorm.
  std::vector<float> x(static_cast<size_t>(n) * E), row(E), type0(E);
  tensor::dequantize_row(token_types_.type, token_types_.row(0), type0.data(), E);
  for (int t = 0; t < n; ++t) {
    float* xt = &x[static_cast<size_t>(t) * E];
    tensor::dequantize_row(token_embd_.type, token_embd_.row(tokens[t]), xt, E);
    tensor::dequantize_row(position_embd_.type, position_embd_.row(t), row.data(), E);
    for (int i = 0; i < E; ++i) xt[i] = (xt[i] + type0[i]) + row[i];
    layer_norm(xt, xt, embd_norm_, embd_norm_bias_, E, c.norm_eps);
  }

  std::vector<float> q, k, v, attn, out, up;
  for (int l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[l];

    // Self-attention over the whole sequence, residual add, LayerNorm (post-norm).
    linear(L.attn_q, L.attn_q_bias, x, n, q);
    linear(L.attn_k, L.attn_k_bias, x, n, k);
    linear(L.attn_v, L.attn_v_bias, x, n, v);
    attention(q, k, v, n, c.n_head, c.head_dim, attn);
    linear(L.attn_output, L.attn_output_bias, attn, n, out);
    for (size_t i = 0; i < x.size(); ++i) x[i] = out[i] + x[i];
    for (int t = 0; t < n; ++t)
      layer_norm(&x[static_cast<size_t>(t) * E], &x[static_cast<size_t>(t) * E], L.attn_output_norm,
                 L.attn_output_norm_bias, E, c.norm_eps);

    // Feed-forward: down(gelu(up(x))), residual add, LayerNorm.
    linear(L.ffn_up, L.ffn_up_bias, x, n, up);
    for (float& u : up) u = gelu(u);
    linear(L.ffn_down, L.ffn_down_bias, up, n, out);
    for (size_t i = 0; i < x.size(); ++i) x[i] = out[i] + x[i];
    for (int t = 0; t < n; ++t)
      layer_norm(&x[static_cast<size_t>(t) * E], &x[static_cast<size_t>(t) * E], L.layer_output_norm,
                 L.layer_output_norm_bias, E, c.norm_eps);
  }
  hidden = std::move(x);
}

std::vector<float> BertModel::classify(const std::vector<int32_t>& tokens) const {
  if (cls_.data == nullptr)
    fail(ErrorKind::unsupported, "{}: this model has no classification head (it is not a reranker)", file_->path());
  std::vector<float> hidden, h;
  forward(tokens, hidden);
  hidden.resize(static_cast<size_t>(config_.n_embd));  // the first token ([CLS])
  linear(cls_, cls_bias_, hidden, 1, h);
  for (float& v : h) v = std::tanh(v);
  if (cls_out_.data == nullptr) return h;
  std::vector<float> out;
  linear(cls_out_, cls_out_bias_, h, 1, out);
  return out;
}

}  // namespace etna::model
