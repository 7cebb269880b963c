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

enum class Family { llama, qwen2, bert };

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
  std::vector<float> synthetic;  // a tensor computed here (rope_freqs.weight)
  std::vector<uint64_t> shape;   // row-major
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
};

// llama / mistral / qwen2 (HF "model.layers.N." prefix).
const NameRule kDecoderGlobals[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
const NameRule kDecoderBlock[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight", 1},
    {"self_attn.q_proj.bias", "attn_q.bias", 1},
    {"self_attn.k_proj.weight", "attn_k.weight", 2},
    {"self_attn.k_proj.bias", "attn_k.bias", 2},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
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

template <size_t NG, size_t NB>
std::optional<Planned> map_name(const std::string& in, const std::string& block_prefix, const NameRule (&globals)[NG],
                                const NameRule (&block)[NB], uint64_t n_layer) {
  for (size_t i = 0; i < NG; ++i)
    if (in == globals[i].hf) return Planned{nullptr, globals[i].gguf, -1, static_cast<int>(i), 0, {}, {}};
  if (in.rfind(block_prefix, 0) != 0) return std::nullopt;
  size_t pos = block_prefix.size(), end = pos;
  while (end < in.size() && std::isdigit(static_cast<unsigned char>(in[end]))) ++end;
  if (end == pos || end >= in.size() || in[end] != '.' || end - pos > 6) return std::nullopt;
  const uint64_t layer = std::stoull(in.substr(pos, end - pos));
  const std::string rest = in.substr(end + 1);
  for (size_t i = 0; i < NB; ++i)
    if (rest == block[i].hf) {
      if (layer >= n_layer) fail(ErrorKind::corrupt, "tensor '{}': layer {} but the config has {} layers", in, layer, n_layer);
      return Planned{nullptr, "blk." + std::to_string(layer) + "." + block[i].gguf, static_cast<int>(layer),
                     static_cast<int>(i), block[i].permute, {}, {}};
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
  Family family;
  std::string arch;
  if (hf_arch == "LlamaForCausalLM" || hf_arch == "MistralForCausalLM") family = Family::llama, arch = "llama";
  else if (hf_arch == "Qwen2ForCausalLM") family = Family::qwen2, arch = "qwen2";
  else if (hf_arch == "BertModel" || hf_arch == "BertForMaskedLM" || hf_arch == "BertForSequenceClassification" ||
           hf_arch == "BertForPreTraining")
    family = Family::bert, arch = "bert";
  else
    fail(ErrorKind::unsupported, "{}: architecture '{}' is not one etna convert knows (LlamaForCausalLM, "
         "MistralForCausalLM, Qwen2ForCausalLM, BertModel)", cfg_path.string(), hf_arch.empty() ? "(none)" : hf_arch);

  const uint64_t n_layer = req_uint(cfg, "num_hidden_layers", cfg_path);
  const uint64_t n_embd = req_uint(cfg, "hidden_size", cfg_path);
  const uint64_t n_head = req_uint(cfg, "num_attention_heads", cfg_path);
  const uint64_t n_ff = req_uint(cfg, "intermediate_size", cfg_path);
  const uint64_t n_ctx = req_uint(cfg, "max_position_embeddings", cfg_path);
  const uint64_t n_head_kv = cfg.contains("num_key_value_heads") ? req_uint(cfg, "num_key_value_heads", cfg_path) : n_head;
  if (n_head == 0 || n_head_kv == 0 || n_embd % n_head != 0 || n_head % n_head_kv != 0 || n_layer == 0 || n_layer > 4096)
    fail(ErrorKind::corrupt, "{}: inconsistent shape (hidden_size {}, heads {}, kv heads {}, layers {})", cfg_path.string(),
         n_embd, n_head, n_head_kv, n_layer);
  const uint64_t head_dim = cfg.contains("head_dim") ? req_uint(cfg, "head_dim", cfg_path) : n_embd / n_head;

  const Vocab vocab = family == Family::bert ? load_wordpiece_vocab(dir, cfg) : load_decoder_vocab(dir, cfg, arch);

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
  std::vector<float> rope_factors;
  if (family == Family::bert) {
    w.set(a + "attention.layer_norm_epsilon", f32(num_or(cfg, "layer_norm_eps", 1e-12)));
    w.set(a + "attention.causal", Value::boolean(false));
    if (const auto pooling = sentence_transformers_pooling(dir)) w.set(a + "pooling_type", u32(*pooling));
  } else {
    w.set(a + "attention.head_count_kv", u32(n_head_kv));
    if (cfg.contains("rope_theta")) w.set(a + "rope.freq_base", f32(num_or(cfg, "rope_theta", 10000.0)));
    w.set(a + "attention.layer_norm_rms_epsilon", f32(num_or(cfg, "rms_norm_eps", 1e-6)));
    if (cfg.contains("head_dim")) {
      w.set(a + "attention.key_length", u32(head_dim));
      w.set(a + "attention.value_length", u32(head_dim));
    }
    w.set(a + "vocab_size", u32(vocab.tokens.size()));
    w.set(a + "rope.dimension_count", u32(head_dim));
    if (cfg.contains("rope_scaling") && cfg["rope_scaling"].is_object()) {
      const json& rs = cfg["rope_scaling"];
      std::string type = rs.contains("rope_type") && rs["rope_type"].is_string() ? rs["rope_type"].get<std::string>()
                         : rs.contains("type") && rs["type"].is_string()       ? rs["type"].get<std::string>() : "";
      if (type == "linear") {
        w.set(a + "rope.scaling.type", str("linear"));
        w.set(a + "rope.scaling.factor", f32(num_or(rs, "factor", 1.0)));
      } else if (type == "yarn") {
        w.set(a + "rope.scaling.type", str("yarn"));
        w.set(a + "rope.scaling.factor", f32(num_or(rs, "factor", 1.0)));
        w.set(a + "rope.scaling.original_context_length", u32(static_cast<uint64_t>(num_or(rs, "original_max_position_embeddings", 0))));
      } else if (type == "llama3" && family == Family::llama) {
        rope_factors = llama3_rope_factors(rs, num_or(cfg, "rope_theta", 10000.0), head_dim);
      } else if (type != "default" && !type.empty()) {
        fail(ErrorKind::unsupported, "{}: rope_scaling type '{}' is not supported", cfg_path.string(), type);
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
    std::optional<Planned> p = family == Family::bert ? map_name(name, "encoder.layer.", kBertGlobals, kBertBlock, n_layer)
                                                      : map_name(name, "model.layers.", kDecoderGlobals, kDecoderBlock, n_layer);
    if (!p) fail(ErrorKind::unsupported, "{}: tensor '{}' has no GGUF name in the {} mapping", hf_dir, t->name, arch);
    if (!seen.insert(p->name).second) fail(ErrorKind::corrupt, "{}: two tensors map to '{}'", hf_dir, p->name);
    p->src = t;
    p->shape = t->shape;
    if (family != Family::llama) p->permute_heads = 0;
    else if (p->permute_heads) p->permute_heads = static_cast<int>(p->permute_heads == 1 ? n_head : n_head_kv);
    if (p->permute_heads && (t->shape.empty() || t->shape[0] % (2 * p->permute_heads) != 0))
      fail(ErrorKind::corrupt, "{}: tensor '{}': {} rows do not split into {} heads of rotary pairs", hf_dir, t->name,
           t->shape.empty() ? 0 : t->shape[0], p->permute_heads);
    plan.push_back(std::move(*p));
  }
  if (!seen.count("token_embd.weight")) fail(ErrorKind::corrupt, "{}: the checkpoint has no token embedding", hf_dir);
  if (!rope_factors.empty()) {
    Planned p;
    p.name = "rope_freqs.weight";
    p.order = 100;
    p.shape = {rope_factors.size()};
    p.synthetic = rope_factors;
    plan.push_back(std::move(p));
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
    std::vector<float> x = p.src ? st_to_f32(*p.src) : p.synthetic;
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
