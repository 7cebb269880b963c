#include "etna/hub/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/hub/convert_vocab.h"
#include "etna/hub/safetensors.h"
#include "etna/tensor/quantize.h"

namespace etna::hub {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;
using gguf::Value;
using gguf::ValueType;
using nlohmann::json;

enum class Family { llama, qwen2, qwen3, gemma2, gemma3, phi3, bert };

constexpr unsigned bit(Family f) { return 1u << static_cast<unsigned>(f); }
constexpr unsigned kAllDecoders = bit(Family::llama) | bit(Family::qwen2) | bit(Family::qwen3) | bit(Family::gemma2) |
                                  bit(Family::gemma3) | bit(Family::phi3);
constexpr unsigned kGemma = bit(Family::gemma2) | bit(Family::gemma3);

Value u32(uint64_t v) { return Value::unsigned_int(ValueType::UINT32, v); }
Value f32(double v) { return Value::floating(ValueType::FLOAT32, v); }
Value str(std::string s) { return Value::string(std::move(s)); }

uint64_t req_uint(const json& cfg, const char* key, const fs::path& where) {
  if (!cfg.contains(key) || !cfg[key].is_number_unsigned())
    fail(ErrorKind::corrupt, "{}: '{}' is missing or not a non-negative integer", where.string(), key);
  return cfg[key].get<uint64_t>();
}

double num_or(const json& cfg, const char* key, double fallback) {
  return cfg.contains(key) && cfg[key].is_number() ? cfg[key].get<double>() : fallback;
}

// One mapped tensor: where it comes from, what it is called in GGUF, how its rows move.
struct Planned {
  const StTensor* src = nullptr;
  std::string name;
  int layer = -1;      // -1 for the tensors outside blocks
  int order = 0;       // position in the family's table (keeps the peer's per-block order)
  int permute_heads = 0;  // > 0: llama q/k rotary-half interleave with this many heads
  std::vector<float> synthetic;  // a tensor computed here (rope_freqs.weight, LongRoPE factors)
  std::vector<uint64_t> shape;   // row-major
  std::vector<const StTensor*> experts;  // stacked along a new first dimension, expert 0 first
  bool norm_shift = false;       // gemma: HF norms scale by (1 + w); GGUF stores 1 + w
  uint64_t keep_rows = 0;        // > 0: only the first rows (gemma3's embedding past the vocabulary)
};

// HF stores each head's rotary dimensions as [first halves..., second halves...]; llama.cpp's
// rope pairs neighbours, so rows are interleaved: out row h*d + 2j + i = in row h*d + i*d/2 + j.
void permute_rows(std::vector<float>& w, uint64_t rows, uint64_t cols, int n_head) {
  const uint64_t d = rows / n_head, half = d / 2;
  std::vector<float> out(w.size());
  for (int h = 0; h < n_head; ++h)
    for (uint64_t i = 0; i < 2; ++i)
      for (uint64_t j = 0; j < half; ++j)
        std::memcpy(&out[(h * d + 2 * j + i) * cols], &w[(h * d + i * half + j) * cols], cols * sizeof(float));
  w.swap(out);
}

struct NameRule {
  const char* hf;    // suffix after the layer prefix (or the whole name for globals)
  const char* gguf;  // without "blk.N."
  int permute = 0;   // 1: query heads, 2: key/value heads
  unsigned families = kAllDecoders | bit(Family::bert);  // where the rule applies
};

// The decoder families (HF "model.layers.N." prefix). A name may map differently per family
// (gemma's post_attention_layernorm follows attention; llama's precedes the feed-forward).
const NameRule kDecoderGlobals[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
constexpr unsigned kSplitQkv = kAllDecoders & ~bit(Family::phi3);
constexpr unsigned kQkvBias = bit(Family::llama) | bit(Family::qwen2);
const NameRule kDecoderBlock[] = {
    {"input_layernorm.weight", "attn_norm.weight", 0, kAllDecoders},
    {"self_attn.q_proj.weight", "attn_q.weight", 1, kSplitQkv},
    {"self_attn.q_proj.bias", "attn_q.bias", 1, kQkvBias},
    {"self_attn.k_proj.weight", "attn_k.weight", 2, kSplitQkv},
    {"self_attn.k_proj.bias", "attn_k.bias", 2, kQkvBias},
    {"self_attn.v_proj.weight", "attn_v.weight", 0, kSplitQkv},
    {"self_attn.v_proj.bias", "attn_v.bias", 0, kQkvBias},
    {"self_attn.qkv_proj.weight", "attn_qkv.weight", 0, bit(Family::phi3)},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", 0, bit(Family::qwen3) | bit(Family::gemma3)},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", 0, bit(Family::qwen3) | bit(Family::gemma3)},
    {"self_attn.o_proj.weight", "attn_output.weight", 0, kAllDecoders},
    {"post_attention_layernorm.weight", "post_attention_norm.weight", 0, kGemma},
    {"post_attention_layernorm.weight", "ffn_norm.weight", 0, kAllDecoders & ~kGemma},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", 0, kGemma},
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight", 0, bit(Family::llama)},  // Mixtral's router
    {"mlp.gate.weight", "ffn_gate_inp.weight", 0, bit(Family::qwen3)},               // Qwen3-MoE's router
    {"mlp.gate_proj.weight", "ffn_gate.weight", 0, kSplitQkv},
    {"mlp.up_proj.weight", "ffn_up.weight", 0, kSplitQkv},
    {"mlp.gate_up_proj.weight", "ffn_up.weight", 0, bit(Family::phi3)},  // gate and up halves, fused
    {"mlp.down_proj.weight", "ffn_down.weight", 0, kAllDecoders},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", 0, kGemma},
};
// bert (prefix "bert." removed first; old checkpoints say gamma/beta for LayerNorm).
const NameRule kBertGlobals[] = {
    {"embeddings.word_embeddings.weight", "token_embd.weight"},
    {"embeddings.token_type_embeddings.weight", "token_types.weight"},
    {"embeddings.position_embeddings.weight", "position_embd.weight"},
    {"embeddings.LayerNorm.weight", "token_embd_norm.weight"},
    {"embeddings.LayerNorm.bias", "token_embd_norm.bias"},
};
const NameRule kBertBlock[] = {
    {"attention.self.query.weight", "attn_q.weight"},
    {"attention.self.query.bias", "attn_q.bias"},
    {"attention.self.key.weight", "attn_k.weight"},
    {"attention.self.key.bias", "attn_k.bias"},
    {"attention.self.value.weight", "attn_v.weight"},
    {"attention.self.value.bias", "attn_v.bias"},
    {"attention.output.dense.weight", "attn_output.weight"},
    {"attention.output.dense.bias", "attn_output.bias"},
    {"attention.output.LayerNorm.weight", "attn_output_norm.weight"},
    {"attention.output.LayerNorm.bias", "attn_output_norm.bias"},
    {"intermediate.dense.weight", "ffn_up.weight"},
    {"intermediate.dense.bias", "ffn_up.bias"},
    {"output.dense.weight", "ffn_down.weight"},
    {"output.dense.bias", "ffn_down.bias"},
    {"output.LayerNorm.weight", "layer_output_norm.weight"},
    {"output.LayerNorm.bias", "layer_output_norm.bias"},
};

bool skipped(Family f, const std::string& name) {
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  if (ends("rotary_emb.inv_freq")) return true;
  if (f == Family::bert)
    return name == "embeddings.position_ids" || name.rfind("pooler.", 0) == 0 || name.rfind("cls.", 0) == 0;
  return false;
}

Planned planned(std::string name, int layer, int order, int permute) {
  Planned p;
  p.name = std::move(name);
  p.layer = layer;
  p.order = order;
  p.permute_heads = permute;
  return p;
}

// "model.layers.N.rest" -> (N, rest); nullopt for other names.
std::optional<std::pair<uint64_t, std::string>> split_layer(const std::string& in, const std::string& block_prefix) {
  if (in.rfind(block_prefix, 0) != 0) return std::nullopt;
  size_t pos = block_prefix.size(), end = pos;
  while (end < in.size() && std::isdigit(static_cast<unsigned char>(in[end]))) ++end;
  if (end == pos || end >= in.size() || in[end] != '.' || end - pos > 6) return std::nullopt;
  return std::make_pair(static_cast<uint64_t>(std::stoull(in.substr(pos, end - pos))), in.substr(end + 1));
}

template <size_t NG, size_t NB>
std::optional<Planned> map_name(const std::string& in, const std::string& block_prefix, const NameRule (&globals)[NG],
                                const NameRule (&block)[NB], uint64_t n_layer, Family family) {
  for (size_t i = 0; i < NG; ++i)
    if (in == globals[i].hf && (globals[i].families & bit(family)))
      return planned(globals[i].gguf, -1, static_cast<int>(i), 0);
  const auto split = split_layer(in, block_prefix);
  if (!split) return std::nullopt;
  const auto& [layer, rest] = *split;
  for (size_t i = 0; i < NB; ++i)
    if (rest == block[i].hf && (block[i].families & bit(family))) {
      if (layer >= n_layer) fail(ErrorKind::corrupt, "tensor '{}': layer {} but the config has {} layers", in, layer, n_layer);
      return planned("blk." + std::to_string(layer) + "." + block[i].gguf, static_cast<int>(layer), static_cast<int>(i),
                     block[i].permute);
    }
  return std::nullopt;
}

// One expert's projection: Mixtral's "block_sparse_moe.experts.E.w1|w2|w3.weight" or Qwen3-MoE's
// "mlp.experts.E.gate_proj|down_proj|up_proj.weight" -> (E, GGUF name of the stacked tensor).
std::optional<std::pair<uint64_t, std::string>> expert_part(const std::string& rest) {
  static const std::pair<const char*, std::pair<const char*, const char*>> kForms[] = {
      {"block_sparse_moe.experts.", {"w1.weight", "w3.weight"}}, {"mlp.experts.", {"gate_proj.weight", "up_proj.weight"}}};
  static const char* const kDown[] = {"w2.weight", "down_proj.weight"};
  for (size_t f = 0; f < 2; ++f) {
    const std::string prefix = kForms[f].first;
    if (rest.rfind(prefix, 0) != 0) continue;
    size_t end = prefix.size();
    while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
    if (end == prefix.size() || end >= rest.size() || rest[end] != '.' || end - prefix.size() > 5) return std::nullopt;
    const uint64_t e = std::stoull(rest.substr(prefix.size(), end - prefix.size()));
    const std::string part = rest.substr(end + 1);
    if (part == kForms[f].second.first) return std::make_pair(e, std::string("ffn_gate_exps.weight"));
    if (part == kForms[f].second.second) return std::make_pair(e, std::string("ffn_up_exps.weight"));
    if (part == kDown[f]) return std::make_pair(e, std::string("ffn_down_exps.weight"));
  }
  return std::nullopt;
}

// The peer's choice of stored type: F32 for vectors, norms, position/token-type embeddings
// and non-".weight" tensors; otherwise the requested type, Q8_0 falling back to F16 for rows
// that are not whole blocks.
GgmlType output_type(const std::string& name, size_t n_dims, uint64_t ne0, GgmlType want) {
  if (want == GgmlType::F32) return want;
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  if (n_dims <= 1 || ends("_norm.weight") || !ends(".weight") || name == "position_embd.weight" ||
      name == "token_types.weight")
    return GgmlType::F32;
  if (want == GgmlType::Q8_0 && ne0 % 32 != 0) return GgmlType::F16;
  return want;
}

std::vector<uint8_t> encode(const std::vector<float>& x, GgmlType type) {
  std::vector<uint8_t> out(gguf::ggml_row_bytes(type, x.size()));
  switch (type) {
    case GgmlType::F32: std::memcpy(out.data(), x.data(), out.size()); break;
    case GgmlType::F16:
      for (size_t i = 0; i < x.size(); ++i) { const uint16_t h = fp32_to_fp16(x[i]); std::memcpy(&out[2 * i], &h, 2); }
      break;
    case GgmlType::BF16:
      for (size_t i = 0; i < x.size(); ++i) { const uint16_t h = fp32_to_bf16(x[i]); std::memcpy(&out[2 * i], &h, 2); }
      break;
    default: tensor::quantize_for_file(type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  }
  return out;
}

// Llama 3.1's "llama3" rope scaling as the peer's converter turns it into per-dimension
// frequency divisors (rope_freqs.weight), in float32 as it computes them.
std::vector<float> llama3_rope_factors(const json& rs, double theta, uint64_t head_dim) {
  const float factor = static_cast<float>(num_or(rs, "factor", 8.0));
  const float low = static_cast<float>(num_or(rs, "low_freq_factor", 1.0));
  const float high = static_cast<float>(num_or(rs, "high_freq_factor", 4.0));
  const float old_ctx = static_cast<float>(num_or(rs, "original_max_position_embeddings", 8192));
  const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (uint64_t i = 0; i < head_dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(i) / static_cast<float>(head_dim));
    const float wavelen = static_cast<float>(2.0 * M_PI) / freq;
    if (wavelen < high_wavelen) out.push_back(1.0f);
    else if (wavelen > low_wavelen) out.push_back(factor);
    else {
      const float smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

// Model-card front matter: `key: value` lines and `- item` lists between the leading '---'s.
std::map<std::string, std::vector<std::string>> read_model_card(const fs::path& readme) {
  std::map<std::string, std::vector<std::string>> out;
  std::ifstream in(readme);
  std::string line, key;
  if (!in || !std::getline(in, line) || line.rfind("---", 0) != 0) return out;
  auto trim = [](std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t b = 0;
    while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    s = s.substr(b);
    if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) s = s.substr(1, s.size() - 2);
    return s;
  };
  while (std::getline(in, line) && line.rfind("---", 0) != 0) {
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (t[0] == '-' && !key.empty()) {
      out[key].push_back(trim(t.substr(1)));
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(line[0]))) continue;
    const auto colon = t.find(':');
    if (colon == std::string::npos) continue;
    key = trim(t.substr(0, colon));
    const std::string v = trim(t.substr(colon + 1));
    out[key];
    if (!v.empty() && v != "[]") {
      if (v.front() == '[' && v.back() == ']') {
        std::stringstream ss(v.substr(1, v.size() - 2));
        std::string item;
        while (std::getline(ss, item, ',')) out[key].push_back(trim(item));
      } else {
        out[key].push_back(v);
      }
    }
  }
  return out;
}

void add_provenance(gguf::GgufWriter& w, const fs::path& dir, const json& cfg) {
  const auto card = read_model_card(dir / "README.md");
  auto first = [&](const char* k) -> std::string {
    auto it = card.find(k);
    return it == card.end() || it->second.empty() ? "" : it->second[0];
  };
  std::string license = first("license");
  if (license.empty() && cfg.contains("license") && cfg["license"].is_string()) license = cfg["license"].get<std::string>();
  if (!license.empty()) w.set("general.license", str(license));
  if (const auto n = first("license_name"); !n.empty()) w.set("general.license.name", str(n));
  if (const auto l = first("license_link"); !l.empty()) w.set("general.license.link", str(l));
  auto it = card.find("base_model");
  if (it != card.end() && !it->second.empty()) {
    w.set("general.base_model.count", u32(it->second.size()));
    for (size_t i = 0; i < it->second.size(); ++i) {
      const std::string& id = it->second[i];
      const std::string p = "general.base_model." + std::to_string(i) + ".";
      const auto slash = id.find('/');
      if (slash != std::string::npos && id.find("://") == std::string::npos) {
        w.set(p + "name", str(id.substr(slash + 1)));
        w.set(p + "organization", str(id.substr(0, slash)));
        w.set(p + "repo_url", str("https://huggingface.co/" + id));
      } else {
        w.set(p + "name", str(id));
      }
    }
  }
}

// The HF architectures etna convert knows: family, GGUF architecture, mixture of experts.
struct ArchInfo {
  const char* hf;
  Family family;
  const char* arch;
  bool moe;
};
const ArchInfo kArchs[] = {
    {"LlamaForCausalLM", Family::llama, "llama", false},    {"MistralForCausalLM", Family::llama, "llama", false},
    {"MixtralForCausalLM", Family::llama, "llama", true},   {"Qwen2ForCausalLM", Family::qwen2, "qwen2", false},
    {"Qwen3ForCausalLM", Family::qwen3, "qwen3", false},    {"Qwen3MoeForCausalLM", Family::qwen3, "qwen3moe", true},
    {"Gemma2ForCausalLM", Family::gemma2, "gemma2", false}, {"Gemma3ForCausalLM", Family::gemma3, "gemma3", false},
    {"Phi3ForCausalLM", Family::phi3, "phi3", false},       {"BertModel", Family::bert, "bert", false},
    {"BertForMaskedLM", Family::bert, "bert", false},       {"BertForSequenceClassification", Family::bert, "bert", false},
    {"BertForPreTraining", Family::bert, "bert", false},
};

std::string known_architectures() {
  std::string s;
  for (const auto& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.hf);
  return s;
}

std::vector<float> float_list(const json& j, const char* key, const fs::path& where) {
  if (!j.contains(key) || !j[key].is_array()) fail(ErrorKind::corrupt, "{}: rope_scaling lacks the list '{}'", where.string(), key);
  std::vector<float> out;
  for (const auto& v : j[key]) {
    if (!v.is_number()) fail(ErrorKind::corrupt, "{}: rope_scaling.{} holds a non-number", where.string(), key);
    out.push_back(static_cast<float>(v.get<double>()));
  }
  return out;
}

// The value after adding 1 in the checkpoint's own precision, as the peer's converter adds it
// to the tensor before widening it.
float shifted(float w, StDtype dtype) {
  const float v = w + 1.0f;
  if (dtype == StDtype::BF16) return bf16_to_fp32(fp32_to_bf16(v));
  if (dtype == StDtype::F16) return fp16_to_fp32(fp32_to_fp16(v));
  return v;
}

}  // namespace

ConvertSummary convert_hf_model(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& options,
                                const std::function<void(const ConvertProgress&)>& progress) {
  const fs::path dir(hf_dir);
  if (!fs::is_directory(dir)) fail(ErrorKind::not_found, "{}: not a folder (etna convert takes a Hugging Face checkpoint folder)", hf_dir);
  GgmlType want;
  uint32_t file_type;
  if (options.outtype == "f32") want = GgmlType::F32, file_type = 0;
  else if (options.outtype == "f16") want = GgmlType::F16, file_type = 1;
  else if (options.outtype == "bf16") want = GgmlType::BF16, file_type = 32;
  else if (options.outtype == "q8_0") want = GgmlType::Q8_0, file_type = 7;
  else fail(ErrorKind::invalid_argument, "--outtype '{}': use f32, f16, bf16 or q8_0", options.outtype);

  const fs::path cfg_path = dir / "config.json";
  const json cfg = read_json_file(cfg_path, true);
  if (!cfg.is_object()) fail(ErrorKind::corrupt, "{}: not a JSON object", cfg_path.string());
  std::string hf_arch;
  if (cfg.contains("architectures") && cfg["architectures"].is_array() && !cfg["architectures"].empty() &&
      cfg["architectures"][0].is_string())
    hf_arch = cfg["architectures"][0].get<std::string>();
  const ArchInfo* info = nullptr;
  for (const auto& a : kArchs)
    if (hf_arch == a.hf) info = &a;
  if (!info)
    fail(ErrorKind::unsupported, "{}: architecture '{}' is not one etna convert knows ({})", cfg_path.string(),
         hf_arch.empty() ? "(none)" : hf_arch, known_architectures());
  const Family family = info->family;
  const std::string arch = info->arch;
  const bool gemma = family == Family::gemma2 || family == Family::gemma3;

  const uint64_t n_layer = req_uint(cfg, "num_hidden_layers", cfg_path);
  const uint64_t n_embd = req_uint(cfg, "hidden_size", cfg_path);
  const uint64_t n_head = req_uint(cfg, "num_attention_heads", cfg_path);
  const uint64_t n_ff = req_uint(cfg, "intermediate_size", cfg_path);
  const uint64_t n_ctx = req_uint(cfg, "max_position_embeddings", cfg_path);
  const uint64_t n_head_kv = cfg.contains("num_key_value_heads") ? req_uint(cfg, "num_key_value_heads", cfg_path) : n_head;
  if (n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_layer == 0 || n_layer > 4096 ||
      (n_embd % n_head != 0 && !cfg.contains("head_dim")))
    fail(ErrorKind::corrupt, "{}: inconsistent shape (hidden_size {}, heads {}, kv heads {}, layers {})", cfg_path.string(),
         n_embd, n_head, n_head_kv, n_layer);
  const uint64_t head_dim = cfg.contains("head_dim") ? req_uint(cfg, "head_dim", cfg_path) : n_embd / n_head;

  // Mixture of experts: every layer routes to num_experts (Mixtral: num_local_experts).
  uint64_t n_expert = 0, n_expert_used = 0;
  if (info->moe) {
    n_expert = req_uint(cfg, family == Family::llama ? "num_local_experts" : "num_experts", cfg_path);
    n_expert_used = req_uint(cfg, "num_experts_per_tok", cfg_path);
    if (n_expert == 0 || n_expert > 1024 || n_expert_used == 0 || n_expert_used > n_expert)
      fail(ErrorKind::corrupt, "{}: {} experts with {} used per token", cfg_path.string(), n_expert, n_expert_used);
    if (family == Family::qwen3) {
      // Etna (as the peer) renormalises the chosen experts' weights and routes every layer.
      if (cfg.contains("norm_topk_prob") && cfg["norm_topk_prob"].is_boolean() && !cfg["norm_topk_prob"].get<bool>())
        fail(ErrorKind::unsupported, "{}: norm_topk_prob false (unnormalised expert weights) is not supported", cfg_path.string());
      const bool dense_layers = cfg.contains("mlp_only_layers") && cfg["mlp_only_layers"].is_array() && !cfg["mlp_only_layers"].empty();
      if (dense_layers || num_or(cfg, "decoder_sparse_step", 1) != 1)
        fail(ErrorKind::unsupported, "{}: dense layers between expert layers (mlp_only_layers, decoder_sparse_step) are "
             "not supported", cfg_path.string());
    }
  }
  if (gemma) {
    // The attention scale Etna and the peer apply: 1/sqrt(head_dim), or 1/sqrt(n_embd/n_head)
    // for the 27B models (46 / 62 layers).
    const bool big = n_layer == (family == Family::gemma2 ? 46u : 62u);
    const double scalar = static_cast<double>(big ? n_embd / n_head : head_dim);
    if (cfg.contains("query_pre_attn_scalar") && num_or(cfg, "query_pre_attn_scalar", scalar) != scalar)
      fail(ErrorKind::unsupported, "{}: query_pre_attn_scalar {} is not the {} this layout implies", cfg_path.string(),
           num_or(cfg, "query_pre_attn_scalar", 0), scalar);
  }
  if (family == Family::gemma3) {
    if (num_or(cfg, "rope_local_base_freq", 10000.0) != 10000.0)
      fail(ErrorKind::unsupported, "{}: gemma3 with rope_local_base_freq {} (only 10000 is supported)", cfg_path.string(),
           num_or(cfg, "rope_local_base_freq", 0));
    if (num_or(cfg, "sliding_window_pattern", 6) != 6)
      fail(ErrorKind::unsupported, "{}: gemma3 with sliding_window_pattern {} (only 6 is supported)", cfg_path.string(),
           num_or(cfg, "sliding_window_pattern", 0));
    if (cfg.contains("attn_logit_softcapping") && !cfg["attn_logit_softcapping"].is_null())
      fail(ErrorKind::unsupported, "{}: gemma3 with attention soft-capping is not supported", cfg_path.string());
  }

  Vocab vocab = family == Family::bert ? load_wordpiece_vocab(dir, cfg) : load_decoder_vocab(dir, cfg, arch);
  if (gemma && vocab.model == "llama") vocab.add_space_prefix = false;  // Gemma's SentencePiece adds no dummy prefix

  gguf::GgufWriter w;
  w.set("general.architecture", str(arch));
  w.set("general.type", str("model"));
  w.set("general.name", str(!options.name.empty() ? options.name : fs::absolute(dir).lexically_normal().filename().string()));
  add_provenance(w, dir, cfg);
  const std::string a = arch + ".";
  w.set(a + "block_count", u32(n_layer));
  w.set(a + "context_length", u32(n_ctx));
  w.set(a + "embedding_length", u32(n_embd));
  w.set(a + "feed_forward_length", u32(n_ff));
  w.set(a + "attention.head_count", u32(n_head));
  std::vector<float> rope_factors, long_factors, short_factors;
  if (family == Family::bert) {
    w.set(a + "attention.layer_norm_epsilon", f32(num_or(cfg, "layer_norm_eps", 1e-12)));
    w.set(a + "attention.causal", Value::boolean(false));
    if (const auto pooling = sentence_transformers_pooling(dir)) w.set(a + "pooling_type", u32(*pooling));
  } else {
    w.set(a + "attention.head_count_kv", u32(n_head_kv));
    if (cfg.contains("rope_theta")) w.set(a + "rope.freq_base", f32(num_or(cfg, "rope_theta", 10000.0)));
    else if (family == Family::gemma3) w.set(a + "rope.freq_base", f32(1000000.0));  // the global layers' default
    w.set(a + "attention.layer_norm_rms_epsilon", f32(num_or(cfg, "rms_norm_eps", 1e-6)));
    if (cfg.contains("head_dim")) {
      w.set(a + "attention.key_length", u32(head_dim));
      w.set(a + "attention.value_length", u32(head_dim));
    }
    w.set(a + "vocab_size", u32(vocab.tokens.size()));
    uint64_t n_rot = head_dim;
    if (family == Family::phi3) {
      const double partial = num_or(cfg, "partial_rotary_factor", 1.0);
      n_rot = static_cast<uint64_t>(partial * static_cast<double>(n_embd)) / n_head;
      if (n_rot == 0 || n_rot > head_dim || n_rot % 2 != 0)
        fail(ErrorKind::corrupt, "{}: partial_rotary_factor {} gives {} rotary dimensions", cfg_path.string(), partial, n_rot);
    }
    w.set(a + "rope.dimension_count", u32(n_rot));
    if (info->moe) {
      w.set(a + "expert_count", u32(n_expert));
      w.set(a + "expert_used_count", u32(n_expert_used));
      if (family == Family::qwen3) w.set(a + "expert_feed_forward_length", u32(req_uint(cfg, "moe_intermediate_size", cfg_path)));
    }
    if (family == Family::gemma2) {
      for (const char* k : {"attn_logit_softcapping", "final_logit_softcapping"})
        if (!cfg.contains(k) || !cfg[k].is_number())
          fail(ErrorKind::unsupported, "{}: gemma2 without a numeric '{}' is not supported", cfg_path.string(), k);
      w.set(a + "attn_logit_softcapping", f32(cfg["attn_logit_softcapping"].get<double>()));
      w.set(a + "final_logit_softcapping", f32(cfg["final_logit_softcapping"].get<double>()));
    }
    if (gemma) w.set(a + "attention.sliding_window", u32(req_uint(cfg, "sliding_window", cfg_path)));
    if (family == Family::phi3) {
      // Phi-3's window (0: none, as the peer writes for Phi-4) and LongRoPE: two per-dimension
      // factor sets and the attention factor sqrt(1 + ln(s) / ln(original context)), s the
      // context extension (or the config's own attention_factor, which HF's rope applies).
      const bool has_window = cfg.contains("sliding_window") && !cfg["sliding_window"].is_null();
      w.set(a + "attention.sliding_window", u32(has_window ? req_uint(cfg, "sliding_window", cfg_path) : 0));
      const uint64_t n_ctx_orig = cfg.contains("original_max_position_embeddings")
                                      ? req_uint(cfg, "original_max_position_embeddings", cfg_path) : n_ctx;
      w.set(a + "rope.scaling.original_context_length", u32(n_ctx_orig));
      if (cfg.contains("rope_scaling") && cfg["rope_scaling"].is_object()) {
        const json& rs = cfg["rope_scaling"];
        const std::string type = rs.value("rope_type", rs.value("type", ""));
        if (type != "longrope" && type != "su")
          fail(ErrorKind::unsupported, "{}: phi3 rope_scaling type '{}' is not supported (longrope)", cfg_path.string(), type);
        const double scale = static_cast<double>(n_ctx) / static_cast<double>(n_ctx_orig);
        double attn_factor = scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(n_ctx_orig))) : 1.0;
        if (rs.contains("attention_factor") && rs["attention_factor"].is_number()) attn_factor = rs["attention_factor"].get<double>();
        w.set(a + "rope.scaling.attn_factor", f32(attn_factor));
        long_factors = float_list(rs, "long_factor", cfg_path);
        short_factors = float_list(rs, "short_factor", cfg_path);
        if (long_factors.size() != n_rot / 2 || short_factors.size() != n_rot / 2)
          fail(ErrorKind::corrupt, "{}: LongRoPE factor lists of {} and {} values, expected {}", cfg_path.string(),
               long_factors.size(), short_factors.size(), n_rot / 2);
      }
    } else if (cfg.contains("rope_scaling") && cfg["rope_scaling"].is_object()) {
      const json& rs = cfg["rope_scaling"];
      std::string type = rs.contains("rope_type") && rs["rope_type"].is_string() ? rs["rope_type"].get<std::string>()
                         : rs.contains("type") && rs["type"].is_string()       ? rs["type"].get<std::string>() : "";
      if (type == "linear") {
        w.set(a + "rope.scaling.type", str("linear"));
        w.set(a + "rope.scaling.factor", f32(num_or(rs, "factor", 1.0)));
      } else if (type == "yarn" && !gemma) {
        w.set(a + "rope.scaling.type", str("yarn"));
        w.set(a + "rope.scaling.factor", f32(num_or(rs, "factor", 1.0)));
        w.set(a + "rope.scaling.original_context_length", u32(static_cast<uint64_t>(num_or(rs, "original_max_position_embeddings", 0))));
      } else if (type == "llama3" && family == Family::llama) {
        rope_factors = llama3_rope_factors(rs, num_or(cfg, "rope_theta", 10000.0), head_dim);
      } else if (type != "default" && !type.empty()) {
        fail(ErrorKind::unsupported, "{}: rope_scaling type '{}' is not supported for {}", cfg_path.string(), type, arch);
      }
    }
  }
  w.set("general.file_type", u32(file_type));
  w.set("general.quantization_version", u32(2));
  write_vocab(w, vocab);

  // Tensors.
  const SafetensorsModel st = SafetensorsModel::open_dir(hf_dir);
  std::vector<Planned> plan;
  std::set<std::string> seen;
  // Experts by stacked GGUF name: expert index -> tensor.
  std::map<std::string, std::map<uint64_t, const StTensor*>> experts;
  std::map<std::string, int> expert_layer;
  for (const StTensor* t : st.tensors()) {
    std::string name = t->name;
    if (family == Family::bert && name.rfind("bert.", 0) == 0) name = name.substr(5);
    if (family == Family::bert) {
      auto fix = [&](const std::string& from, const std::string& to) {
        if (name.size() > from.size() && name.compare(name.size() - from.size(), from.size(), from) == 0)
          name = name.substr(0, name.size() - from.size()) + to;
      };
      fix("LayerNorm.gamma", "LayerNorm.weight");
      fix("LayerNorm.beta", "LayerNorm.bias");
    }
    if (skipped(family, name)) continue;
    if (gemma && name == "lm_head.weight") continue;  // gemma ties its output to the embedding, as the peer assumes
    if (info->moe) {
      if (const auto split = split_layer(name, "model.layers.")) {
        if (const auto part = expert_part(split->second)) {
          if (split->first >= n_layer || part->first >= n_expert)
            fail(ErrorKind::corrupt, "{}: tensor '{}' names layer {} / expert {}, but the config has {} / {}", hf_dir, t->name,
                 split->first, part->first, n_layer, n_expert);
          const std::string gguf_name = "blk." + std::to_string(split->first) + "." + part->second;
          if (!experts[gguf_name].emplace(part->first, t).second)
            fail(ErrorKind::corrupt, "{}: expert {} of '{}' appears twice", hf_dir, part->first, gguf_name);
          expert_layer[gguf_name] = static_cast<int>(split->first);
          continue;
        }
      }
    }
    std::optional<Planned> p = family == Family::bert ? map_name(name, "encoder.layer.", kBertGlobals, kBertBlock, n_layer, family)
                                                      : map_name(name, "model.layers.", kDecoderGlobals, kDecoderBlock, n_layer, family);
    if (!p) fail(ErrorKind::unsupported, "{}: tensor '{}' has no GGUF name in the {} mapping", hf_dir, t->name, arch);
    const std::string base = p->layer >= 0 ? p->name.substr(p->name.find('.', 4) + 1) : p->name;
    if (info->moe && (base == "ffn_gate.weight" || base == "ffn_up.weight" || base == "ffn_down.weight"))
      fail(ErrorKind::unsupported, "{}: tensor '{}': a dense feed-forward in a mixture-of-experts model is not supported",
           hf_dir, t->name);
    if (!seen.insert(p->name).second) fail(ErrorKind::corrupt, "{}: two tensors map to '{}'", hf_dir, p->name);
    p->src = t;
    p->shape = t->shape;
    p->norm_shift = gemma && name.size() >= 11 && name.compare(name.size() - 11, 11, "norm.weight") == 0;
    if (family == Family::gemma3 && p->name == "token_embd.weight" && !t->shape.empty() && t->shape[0] > vocab.tokens.size()) {
      p->keep_rows = vocab.tokens.size();  // rows past the vocabulary are dropped, as the peer drops them
      p->shape[0] = p->keep_rows;
    }
    if (family != Family::llama) p->permute_heads = 0;
    else if (p->permute_heads) p->permute_heads = static_cast<int>(p->permute_heads == 1 ? n_head : n_head_kv);
    if (p->permute_heads && (t->shape.empty() || t->shape[0] % (2 * p->permute_heads) != 0))
      fail(ErrorKind::corrupt, "{}: tensor '{}': {} rows do not split into {} heads of rotary pairs", hf_dir, t->name,
           t->shape.empty() ? 0 : t->shape[0], p->permute_heads);
    plan.push_back(std::move(*p));
  }
  for (const auto& [gguf_name, by_index] : experts) {
    if (by_index.size() != n_expert)
      fail(ErrorKind::corrupt, "{}: '{}' has {} of the {} experts", hf_dir, gguf_name, by_index.size(), n_expert);
    Planned p;
    p.name = gguf_name;
    p.layer = expert_layer[gguf_name];
    p.order = 50 + (gguf_name.find("gate") != std::string::npos ? 0 : gguf_name.find("down") != std::string::npos ? 1 : 2);
    for (const auto& [e, t] : by_index) {
      if (t->shape.size() != 2 || (!p.experts.empty() && t->shape != p.experts[0]->shape))
        fail(ErrorKind::corrupt, "{}: expert {} of '{}' is not a matrix of the others' shape", hf_dir, e, gguf_name);
      p.experts.push_back(t);
    }
    p.shape = {n_expert, p.experts[0]->shape[0], p.experts[0]->shape[1]};
    seen.insert(p.name);
    plan.push_back(std::move(p));
  }
  if (info->moe)
    for (uint64_t l = 0; l < n_layer; ++l)
      for (const char* part : {"ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
        if (!seen.count("blk." + std::to_string(l) + "." + part))
          fail(ErrorKind::corrupt, "{}: layer {} lacks its {} (every layer of a {} checkpoint routes to experts)", hf_dir, l,
               part, hf_arch);
  if (!seen.count("token_embd.weight")) fail(ErrorKind::corrupt, "{}: the checkpoint has no token embedding", hf_dir);
  auto add_synthetic = [&](const char* name, int order, std::vector<float> values) {
    Planned p;
    p.name = name;
    p.order = order;
    p.shape = {values.size()};
    p.synthetic = std::move(values);
    plan.push_back(std::move(p));
  };
  if (!rope_factors.empty()) add_synthetic("rope_freqs.weight", 100, rope_factors);
  if (!long_factors.empty()) {
    add_synthetic("rope_factors_long.weight", -2, long_factors);
    add_synthetic("rope_factors_short.weight", -1, short_factors);
  }
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& x, const Planned& y) {
    return std::tie(x.layer, x.order) < std::tie(y.layer, y.order);
  });

  std::vector<GgmlType> types;
  for (const auto& p : plan) {
    std::vector<uint64_t> dims(p.shape.rbegin(), p.shape.rend());
    if (dims.size() > gguf::kMaxDims) fail(ErrorKind::unsupported, "tensor '{}' has {} dimensions", p.name, dims.size());
    if (dims.empty()) dims = {1};
    const GgmlType t = output_type(p.name, p.shape.size(), dims[0], want);
    types.push_back(t);
    w.add_tensor(p.name, dims, t, nullptr);
  }
  std::vector<uint8_t> buffer;
  ConvertSummary summary;
  summary.architecture = arch;
  summary.tensors = plan.size();
  w.write(out_path, [&](size_t i) -> const void* {
    const Planned& p = plan[i];
    std::vector<float> x;
    if (!p.experts.empty()) {
      for (const StTensor* e : p.experts) {
        const std::vector<float> one = st_to_f32(*e);
        x.insert(x.end(), one.begin(), one.end());
      }
    } else {
      x = p.src ? st_to_f32(*p.src) : p.synthetic;
    }
    if (p.keep_rows) x.resize(p.keep_rows * (x.size() / p.src->shape[0]));
    if (p.norm_shift)
      for (float& v : x) v = shifted(v, p.src->dtype);
    if (p.permute_heads) {
      const uint64_t rows = p.shape[0];
      permute_rows(x, rows, x.size() / rows, p.permute_heads);
    }
    buffer = encode(x, types[i]);
    summary.bytes_out += buffer.size();
    if (progress) progress(ConvertProgress{i, plan.size(), p.name});
    return buffer.data();
  });
  return summary;
}

}  // namespace etna::hub
