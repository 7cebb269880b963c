// Loading a decoder model: hyperparameters from the metadata, weights checked for presence,
// shape and type, and the per-batch checks that forward() performs before any arithmetic.
#include "etna/model/model.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <string>
#include <unordered_map>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/model/families.h"
#include "etna/base/mapped_file.h"
#include "etna/model/loader.h"

namespace etna::model {
namespace {

const Family* const kFamilies[] = {&kLlamaFamily,  &kQwen2Family,  &kQwen3Family, &kQwen3MoeFamily,
                                    &kGemma2Family, &kGemma3Family, &kPhi3Family};

const Family& find_family(const gguf::GgufFile& file) {
  const std::string arch = file.architecture();
  std::string names;
  for (const Family* f : kFamilies) {
    if (arch == f->arch) return *f;
    names += std::string(names.empty() ? "" : ", ") + f->arch;
  }
  fail(ErrorKind::unsupported, "{}: architecture '{}' is not supported for text generation (supported: {})",
       file.path(), arch.empty() ? std::string("(none)") : arch, names);
}

// The hyperparameters every decoder family shares; the family's configure() adds its own.
ModelConfig read_config(const gguf::GgufFile& file, const Loader& ld) {
  ModelConfig c;
  c.arch = file.architecture();
  c.name = file.get_string("general.name").value_or("");
  c.n_embd = ld.count("embedding_length");
  c.n_layer = ld.count("block_count");
  c.n_ff = ld.count("feed_forward_length", 0);
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
  // A LayerNorm (with mean and bias) is a different norm kind from the RMS norm every family
  // here uses: refuse rather than normalise wrongly.
  if (ld.has("attention.layer_norm_epsilon"))
    fail(ErrorKind::unsupported, "{}: {}.attention.layer_norm_epsilon declares LayerNorm, which the {} graph does not "
         "compute (it uses RMS norm)", file.path(), c.arch, c.arch);
  c.rms_eps = static_cast<float>(ld.real("attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(ld.real("rope.freq_base").value_or(10000.0));
  c.n_ctx_orig = ld.count("rope.scaling.original_context_length", c.n_ctx_train);

  const std::string type = ld.string("rope.scaling.type").value_or("none");
  double factor = ld.real("rope.scaling.factor").value_or(0.0);
  if (factor == 0.0) factor = ld.real("rope.scale_linear").value_or(0.0);
  if (type == "none" || type == "linear") {
    c.rope_scaling = type == "none" && factor == 0.0 ? ModelConfig::rope_none : ModelConfig::rope_linear;
  } else if (type == "yarn") {
    c.rope_scaling = ModelConfig::rope_yarn;
    if (!(factor > 1.0))
      fail(ErrorKind::corrupt, "{}: YaRN rope scaling needs rope.scaling.factor > 1 (got {})", file.path(), factor);
    if (ld.has("rope.scaling.yarn_log_multiplier") || ld.has("rope.scaling.yarn_beta_fast") ||
        ld.has("rope.scaling.yarn_beta_slow") || ld.has("rope.scaling.yarn_ext_factor"))
      fail(ErrorKind::unsupported, "{}: YaRN parameters other than factor and original_context_length are not "
           "supported", file.path());
  } else {
    fail(ErrorKind::unsupported, "{}: rope scaling type '{}' is not supported (supported: none, linear, yarn)",
         file.path(), type);
  }
  c.rope_freq_scale = factor == 0.0 ? 1.0f : static_cast<float>(1.0 / factor);
  // The peer multiplies every family's rope magnitude by this (LongRoPE files carry it).
  c.rope_attn_factor = static_cast<float>(ld.real("rope.scaling.attn_factor").value_or(1.0));
  if (!(c.rope_freq_base > 0) || !(c.rope_freq_scale > 0) || !std::isfinite(c.rope_freq_scale) || !(c.rms_eps >= 0) ||
      !(c.rope_attn_factor > 0))
    fail(ErrorKind::corrupt, "{}: rope or norm parameters are out of range", file.path());
  // An expert count on a family without an expert block is a layout the graph does not handle.
  if (ld.has("expert_count") && c.arch != "llama" && c.arch != "qwen3moe")
    fail(ErrorKind::unsupported, "{}: {} with experts ({}.expert_count) is an expert layout Etna does not handle",
         file.path(), c.arch, c.arch);
  return c;
}

}  // namespace

void configure_experts(ModelConfig& c, const Loader& ld, bool normalise_weights) {
  const std::string& path = ld.file().path();
  c.n_expert = ld.count("expert_count");
  c.n_expert_used = ld.count("expert_used_count");
  if (c.n_expert_used > c.n_expert)
    fail(ErrorKind::corrupt, "{}: expert_used_count {} exceeds expert_count {}", path, c.n_expert_used, c.n_expert);
  if (ld.has("expert_shared_count") || ld.has("expert_gating_func") || ld.has("expert_weights_scale") ||
      ld.has("expert_group_count"))
    fail(ErrorKind::unsupported, "{}: shared experts, expert groups, non-softmax gating or expert weight scaling are "
         "an expert layout Etna does not handle", path);
  c.n_ff_exp = ld.count("expert_feed_forward_length", c.n_ff);
  c.expert_weights_norm = normalise_weights;
}

void load_attention(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  const auto E = static_cast<uint64_t>(c.n_embd);
  const auto Q = static_cast<uint64_t>(c.n_head) * c.head_dim, KV = static_cast<uint64_t>(c.n_embd_kv());
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
  if (c.qk_norm) {
    L.attn_q_norm = ld.tensor(p + "attn_q_norm.weight", {static_cast<uint64_t>(c.head_dim)});
    L.attn_k_norm = ld.tensor(p + "attn_k_norm.weight", {static_cast<uint64_t>(c.head_dim)});
  }
}

void load_ffn(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L) {
  const auto E = static_cast<uint64_t>(c.n_embd);
  L.ffn_norm = ld.tensor(p + "ffn_norm.weight", {E});
  if (c.n_expert == 0) {
    const auto F = static_cast<uint64_t>(c.n_ff);
    if (F == 0) fail(ErrorKind::corrupt, "{}: metadata key {}.feed_forward_length is missing", ld.file().path(), c.arch);
    if (ld.has_tensor(p + "ffn_gate_inp.weight"))
      fail(ErrorKind::unsupported, "{}: tensor {}ffn_gate_inp.weight (an expert router) without {}.expert_count is an "
           "expert layout Etna does not handle", ld.file().path(), p, c.arch);
    L.ffn_gate = ld.tensor(p + "ffn_gate.weight", {E, F});
    L.ffn_up = ld.tensor(p + "ffn_up.weight", {E, F});
    L.ffn_down = ld.tensor(p + "ffn_down.weight", {F, E});
    return;
  }
  const auto F = static_cast<uint64_t>(c.n_ff_exp), X = static_cast<uint64_t>(c.n_expert);
  if (!ld.has_tensor(p + "ffn_gate_exps.weight") || ld.has_tensor(p + "ffn_gate.weight"))
    fail(ErrorKind::unsupported, "{}: layer {} does not hold stacked experts ({}ffn_gate_exps.weight), an expert layout "
         "Etna does not handle", ld.file().path(), p, p);
  Model::Experts& x = L.moe;
  x.n_expert = c.n_expert;
  x.gate_inp = ld.tensor(p + "ffn_gate_inp.weight", {E, X});
  x.gate = ld.experts(p + "ffn_gate_exps.weight", {E, F, X});
  x.up = ld.experts(p + "ffn_up_exps.weight", {E, F, X});
  x.down = ld.experts(p + "ffn_down_exps.weight", {F, E, X});
}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = gguf::GgufFile::open(path);
  const gguf::GgufFile& f = *m->file_;
  const Family& family = find_family(f);
  m->family_ = &family;
  Loader ld(f);
  ModelConfig& c = m->config_;
  c = read_config(f, ld);
  family.configure(c, ld);

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (embd == nullptr) fail(ErrorKind::corrupt, "{}: missing tensor token_embd.weight", path);
  if (embd->dims.size() < 2 || embd->dims[1] == 0 || embd->dims[1] > (1u << 30))
    fail(ErrorKind::corrupt, "{}: tensor token_embd.weight has a bad shape", path);
  c.n_vocab = static_cast<int>(embd->dims[1]);
  const auto E = static_cast<uint64_t>(c.n_embd), V = static_cast<uint64_t>(c.n_vocab);

  Weights& w = m->w_;
  w.token_embd = ld.tensor("token_embd.weight", {E, V});
  w.output_norm = ld.tensor("output_norm.weight", {E});
  w.output = ld.tensor("output.weight", {E, V}, /*required=*/false);
  c.tied_output = w.output.data == nullptr;
  if (c.tied_output) w.output = w.token_embd;
  // Llama 3.1+ frequency factors: one divisor per rotated pair, the same in every layer.
  w.rope_freqs = ld.tensor("rope_freqs.weight", {static_cast<uint64_t>(c.n_rot / 2)}, /*required=*/false);
  c.rope_freq_factors = w.rope_freqs.data != nullptr;

  if (family.load_model != nullptr) family.load_model(c, ld, w);

  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    // Known and intentionally unused: old llama conversions store each layer's rotary inverse
    // frequencies, which the rope block computes itself (the peer ignores them too).
    if (ld.has_tensor(p + "attn_rot_embd")) ld.ignore(p + "attn_rot_embd");
    family.load_layer(c, ld, p, w.layers[i]);
  }
  for (const auto& t : f.tensors()) {
    const std::string& n = t.name;
    if (n.size() > 10 && n.compare(n.size() - 10, 10, "_norm.bias") == 0 && !ld.used(n))
      fail(ErrorKind::unsupported, "{}: tensor {} makes that norm a LayerNorm with bias, a norm kind the {} graph does "
           "not compute (it uses RMS norm)", path, n, c.arch);
  }
  ld.refuse_unknown_tensors();
  // Repacking first: it changes protections page by page, which would split huge pages.
  if (repack_enabled()) m->repack_weights();
  m->move_weights_to_huge_pages();
  log::debug("loaded {}: {} n_embd={} n_layer={} n_head={}/{} n_ff={} n_vocab={} n_expert={}/{}", path, c.arch,
             c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.n_expert_used, c.n_expert);
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

namespace {
// MemAvailable from /proc/meminfo in bytes, or 0 when unknown.
uint64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (f >> key >> kib) {
    if (key == "MemAvailable:") return kib * 1024;
    std::getline(f, unit);
  }
  return 0;
}
}  // namespace

// Generation streams every weight once per token; from 4 KiB file pages that costs a TLB miss
// per 4 KiB (a nested page walk on a virtual machine), from huge pages one per 2 MiB.
void Model::move_weights_to_huge_pages() {
  const char* env = std::getenv("ETNA_HUGE_PAGES");
  if (env && std::string(env) == "0") return;
  const gguf::GgufFile& f = *file_;
  if (f.tensors().empty() || f.data_offset() >= f.file_size()) return;
  const uint64_t bytes = f.file_size() - f.data_offset();
  if (bytes > available_memory() / 4 * 3) {
    log::debug("{}: weights stay paged from the file ({} bytes; not enough free memory for huge pages)", f.path(), bytes);
    return;
  }
  huge_page_bytes_ = MappedFile::move_to_huge_pages(f.bytes() + f.data_offset(), bytes);
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
  // Expert matrices are 3-D (one slice per expert) and stay as the file lays them out.
  for (Layer& L : w_.layers)
    for (tensor::Matrix* w : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_qkv, &L.attn_output, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      if (w->data != nullptr) repack(*w);
  if (!config_.tied_output) repack(w_.output);
}

std::unique_ptr<KvCache> Model::make_cache(int n_seq, int n_ctx, KvType type, int max_batch) const {
  return std::make_unique<KvCache>(config_, n_seq, n_ctx, type, max_batch);
}

void Model::forward(const Batch& batch, KvCache& cache, std::vector<float>& logits) const {
  check_batch(batch, cache);
  family_->forward(*this, batch, cache, /*hidden=*/false, logits);
}

void Model::forward_hidden(const Batch& batch, KvCache& cache, std::vector<float>& hidden) const {
  check_batch(batch, cache);
  family_->forward(*this, batch, cache, /*hidden=*/true, hidden);
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
  // A sliding-window ring only has room for max_batch new cells of a sequence per pass.
  if (cache.has_window_layers())
    for (const auto& [s, end] : next)
      if (end - cache.length(s) > cache.max_batch())
        fail(ErrorKind::invalid_argument, "the batch adds {} tokens to sequence {}; this cache takes at most {} per pass",
             end - cache.length(s), s, cache.max_batch());
}

}  // namespace etna::model
