// Loading a decoder model: hyperparameters from the metadata, weights checked for presence,
// shape and type, and the per-batch checks that forward() performs before any arithmetic.
#include "etna/model/model.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cmath>
#include <unordered_map>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/base/mapped_file.h"
#include "etna/model/loader.h"

namespace etna::model {
namespace {

using tensor::Matrix;

ModelConfig read_config(const gguf::GgufFile& file, const Loader& ld) {
  ModelConfig c;
  c.arch = file.architecture();
  c.name = file.get_string("general.name").value_or("");
  if (c.arch == "qwen2") {
    c.rope = ModelConfig::neox;
    c.attn_bias = true;
  } else if (c.arch != "llama") {
    fail(ErrorKind::unsupported, "{}: architecture '{}' is not supported for text generation (supported: llama, qwen2)",
         file.path(), c.arch.empty() ? std::string("(none)") : c.arch);
  }
  c.n_embd = ld.count("embedding_length");
  c.n_layer = ld.count("block_count");
  c.n_ff = ld.count("feed_forward_length");
  c.n_head = ld.count("attention.head_count");
  c.n_head_kv = ld.count("attention.head_count_kv", c.n_head);
  c.n_ctx_train = ld.count("context_length");
  if (c.n_embd % c.n_head != 0 && !file.has(c.arch + ".attention.key_length"))
    fail(ErrorKind::corrupt, "{}: embedding_length {} is not a multiple of head_count {}", file.path(), c.n_embd, c.n_head);
  c.head_dim = ld.count("attention.key_length", c.n_embd / c.n_head);
  if (ld.count("attention.value_length", c.head_dim) != c.head_dim)
    fail(ErrorKind::unsupported, "{}: key and value head sizes differ", file.path());
  if (c.n_head % c.n_head_kv != 0)
    fail(ErrorKind::corrupt, "{}: head_count {} is not a multiple of head_count_kv {}", file.path(), c.n_head,
         c.n_head_kv);
  c.n_rot = ld.count("rope.dimension_count", c.head_dim);
  if (c.n_rot > c.head_dim || c.n_rot % 2 != 0)
    fail(ErrorKind::corrupt, "{}: rope.dimension_count {} does not fit head size {}", file.path(), c.n_rot, c.head_dim);
  c.rms_eps = static_cast<float>(ld.real("attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(ld.real("rope.freq_base").value_or(10000.0));
  if (auto type = file.get_string(c.arch + ".rope.scaling.type"); type && *type != "none" && *type != "linear")
    fail(ErrorKind::unsupported, "{}: rope scaling '{}' is not supported (only linear)", file.path(), *type);
  double factor = ld.real("rope.scaling.factor").value_or(0.0);
  if (factor == 0.0) factor = ld.real("rope.scale_linear").value_or(0.0);
  c.rope_freq_scale = factor == 0.0 ? 1.0f : static_cast<float>(1.0 / factor);
  if (!(c.rope_freq_base > 0) || !(c.rope_freq_scale > 0) || !std::isfinite(c.rope_freq_scale) || !(c.rms_eps >= 0))
    fail(ErrorKind::corrupt, "{}: rope or norm parameters are out of range", file.path());
  return c;
}

}  // namespace

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = gguf::GgufFile::open(path);
  const gguf::GgufFile& f = *m->file_;
  Loader ld(f);
  ModelConfig& c = m->config_;
  c = read_config(f, ld);

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) fail(ErrorKind::corrupt, "{}: missing tensor token_embd.weight", path);
  if (embd->dims.size() < 2 || embd->dims[1] == 0 || embd->dims[1] > (1u << 30))
    fail(ErrorKind::corrupt, "{}: tensor token_embd.weight has a bad shape", path);
  c.n_vocab = static_cast<int>(embd->dims[1]);
  const auto E = static_cast<uint64_t>(c.n_embd), V = static_cast<uint64_t>(c.n_vocab);
  const auto Q = static_cast<uint64_t>(c.n_head) * c.head_dim, KV = static_cast<uint64_t>(c.n_embd_kv());
  const auto F = static_cast<uint64_t>(c.n_ff);

  m->token_embd_ = ld.tensor("token_embd.weight", {E, V});
  m->output_norm_ = ld.tensor("output_norm.weight", {E});
  m->output_ = ld.tensor("output.weight", {E, V}, /*required=*/false);
  c.tied_output = m->output_.data == nullptr;
  if (c.tied_output) m->output_ = m->token_embd_;

  m->layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& L = m->layers_[i];
    L.attn_norm = ld.tensor(p + "attn_norm.weight", {E});
    L.attn_q = ld.tensor(p + "attn_q.weight", {E, Q});
    L.attn_k = ld.tensor(p + "attn_k.weight", {E, KV});
    L.attn_v = ld.tensor(p + "attn_v.weight", {E, KV});
    L.attn_output = ld.tensor(p + "attn_output.weight", {Q, E});
    if (c.attn_bias) {
      L.attn_q_bias = ld.tensor(p + "attn_q.bias", {Q});
      L.attn_k_bias = ld.tensor(p + "attn_k.bias", {KV});
      L.attn_v_bias = ld.tensor(p + "attn_v.bias", {KV});
    }
    L.ffn_norm = ld.tensor(p + "ffn_norm.weight", {E});
    L.ffn_gate = ld.tensor(p + "ffn_gate.weight", {E, F});
    L.ffn_up = ld.tensor(p + "ffn_up.weight", {E, F});
    L.ffn_down = ld.tensor(p + "ffn_down.weight", {F, E});
  }
  if (repack_enabled()) m->repack_weights();
  log::debug("loaded {}: {} n_embd={} n_layer={} n_head={}/{} n_ff={} n_vocab={}", path, c.arch, c.n_embd, c.n_layer,
             c.n_head, c.n_head_kv, c.n_ff, c.n_vocab);
  return m;
}

namespace {
std::atomic<int> g_repack{-1};  // -1: not set, read ETNA_REPACK
}  // namespace

void Model::set_repack(bool on) { g_repack.store(on ? 1 : 0); }

bool Model::repack_enabled() {
  int v = g_repack.load();
  if (v < 0) {
    const char* env = std::getenv("ETNA_REPACK");
    v = env && std::string(env) == "0" ? 0 : 1;
    g_repack.store(v);
  }
  return v == 1;
}

// The matrices only matmul reads (not token_embd, whose rows are looked up; nor a tied
// output, which is token_embd) are interleaved where the kernels can use it.
void Model::repack_weights() {
  auto repack = [this](tensor::Matrix& w) {
    if (!tensor::can_repack(w)) return;
    const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
    uint8_t* data = MappedFile::make_writable(w.data, bytes);
    tensor::repack_rows(w, data);
    MappedFile::make_read_only(w.data, bytes);
    ++repacked_matrices_;
    repacked_bytes_ += bytes;
  };
  for (Layer& L : layers_)
    for (tensor::Matrix* w : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      repack(*w);
  if (!config_.tied_output) repack(output_);
}

std::unique_ptr<KvCache> Model::make_cache(int n_seq, int n_ctx, KvType type) const {
  return std::make_unique<KvCache>(config_, n_seq, n_ctx, type);
}

void Model::forward(const Batch& batch, KvCache& cache, std::vector<float>& logits) const {
  check_batch(batch, cache);
  forward_llama(batch, cache, Output::logits, logits);
}

void Model::forward_hidden(const Batch& batch, KvCache& cache, std::vector<float>& hidden) const {
  check_batch(batch, cache);
  forward_llama(batch, cache, Output::hidden, hidden);
}

void Model::check_batch(const Batch& batch, const KvCache& cache) const {
  const size_t n = batch.tokens.size();
  if (n == 0) fail(ErrorKind::invalid_argument, "empty batch");
  if (batch.pos.size() != n || batch.seq.size() != n || (!batch.want_logits.empty() && batch.want_logits.size() != n))
    fail(ErrorKind::invalid_argument, "batch vectors differ in length");
  if (cache.n_layer() != config_.n_layer || cache.n_embd_kv() != config_.n_embd_kv())
    fail(ErrorKind::invalid_argument, "the KV cache was made for a different model");
  // Every token must extend its sequence by exactly one cell, so that attention never reads a
  // cell that holds nothing (use KvCache::truncate to rewind a sequence).
  int max_pos = -1;
  for (size_t i = 0; i < n; ++i) max_pos = std::max(max_pos, batch.pos[i]);
  if (max_pos >= cache.n_ctx())
    fail(ErrorKind::limit,
         "prompt is longer than the context ({} tokens > n_ctx {}); use a shorter prompt or a larger --ctx", max_pos + 1,
         cache.n_ctx());
  std::unordered_map<int, int> next;
  for (size_t i = 0; i < n; ++i) {
    const int t = batch.tokens[i], p = batch.pos[i], s = batch.seq[i];
    if (t < 0 || t >= config_.n_vocab)
      fail(ErrorKind::invalid_argument, "token id {} is out of range (vocabulary of {})", t, config_.n_vocab);
    if (s < 0 || s >= cache.n_seq())
      fail(ErrorKind::invalid_argument, "sequence {} is out of range (the cache holds {})", s, cache.n_seq());
    auto it = next.try_emplace(s, cache.length(s)).first;
    if (p != it->second)
      fail(ErrorKind::invalid_argument, "position {} of sequence {} does not follow its {} cached cells", p, s,
           it->second);
    ++it->second;
  }
}

}  // namespace etna::model
