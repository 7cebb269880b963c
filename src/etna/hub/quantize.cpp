#include "etna/hub/quantize.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <regex>
#include <thread>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/base/thread_pool.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/hub/imatrix.h"
#include "etna/tensor/quantize.h"
#include "etna/tensor/tensor.h"

namespace etna::hub {
namespace {

using gguf::Value;
using gguf::ValueType;
using T = GgmlType;

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION: the block layouts in use

// llama.cpp's LLAMA_FTYPE_* numbers.
enum FileTypeId : uint32_t {
  ALL_F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9, Q2_K = 10, Q3_K_S = 11, Q3_K_M = 12,
  Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15, Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18, IQ4_NL = 25, IQ3_M = 27, IQ4_XS = 30,
  BF16 = 32,
};

std::string upper(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return r;
}

bool is_quantized(GgmlType t) {
  switch (t) {
    case T::F32: case T::F16: case T::BF16: case T::I8: case T::I16: case T::I32: case T::I64: case T::F64:
      return false;
    default:
      return true;
  }
}

uint32_t block_size(GgmlType t) { return gguf::ggml_type_info(static_cast<uint32_t>(t))->block_size; }

// ggml_n_dims: the rank without trailing dimensions of 1.
int n_dims(const std::vector<uint64_t>& dims) {
  int n = 1;
  for (size_t i = 1; i < dims.size(); ++i)
    if (dims[i] > 1) n = static_cast<int>(i) + 1;
  return n;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// The peer's tensor order (its loader's weight map): tensors outside blocks first, then block
// by block in layer-number order, by name within each.
int layer_number(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) layer = -1;
  return layer;
}

bool tensor_order(const std::string& a, const std::string& b) {
  const int la = layer_number(a), lb = layer_number(b);
  return la != lb ? la < lb : a < b;
}

// The roles the type mix distinguishes, judged by name as llama.cpp does.
enum class Role { token_embd, output, attn_q, attn_k, attn_v_like, attn_output, attn_qkv, ffn_up, ffn_gate, ffn_down,
                  other };

Role role_of(const std::string& name) {
  if (name == "output.weight") return Role::output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Role::token_embd;
  if (contains(name, "attn_qkv.weight")) return Role::attn_qkv;
  if (contains(name, "attn_kv_b.weight") || contains(name, "attn_v.weight")) return Role::attn_v_like;
  if (contains(name, "attn_k.weight")) return Role::attn_k;
  if (contains(name, "attn_q.weight")) return Role::attn_q;
  if (contains(name, "attn_output.weight")) return Role::attn_output;
  if (contains(name, "ffn_up")) return Role::ffn_up;
  if (contains(name, "ffn_gate")) return Role::ffn_gate;
  if (contains(name, "ffn_down")) return Role::ffn_down;
  return Role::other;
}

// Whether a tensor is a candidate for quantisation at all: weight matrices only, never norms,
// routers, positional tables and the other small tensors llama.cpp keeps as they are.
bool allows_quantization(const gguf::TensorInfo& t, const QuantizeOptions& o) {
  if (n_dims(t.dims) < 2) return false;
  const std::string& name = t.name;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  if (o.leave_output_tensor && name == "output.weight") return false;
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  static const char* const kept[] = {
      "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
      "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
      "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
      "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
      "mm.a.code_embd"};
  for (const char* k : kept)
    if (contains(name, k)) return false;
  return true;
}

// What the mix needs to know about the model.
struct ModelFacts {
  std::string arch;
  int n_layer = 0;
  int n_gqa = 0;  // query heads per KV head (0 when unknown)
  int n_expert = 0;
  bool is_70b = false;  // llama 70B: 80 layers with grouped-query attention
  bool falcon() const { return arch == "falcon"; }
};

// The first value of an integer key that may be a per-layer array.
std::optional<int64_t> first_int(const gguf::GgufFile& f, const std::string& key) {
  const Value* v = f.find(key);
  if (!v) return std::nullopt;
  if (v->type() == ValueType::ARRAY) {
    const auto arr = f.get_int_array(key);
    if (arr.empty()) return std::nullopt;
    return arr[0];
  }
  return f.get_int(key);
}

ModelFacts model_facts(const gguf::GgufFile& f) {
  ModelFacts m;
  m.arch = f.architecture();
  if (m.arch.empty()) fail(ErrorKind::unsupported, "{}: not a model file (no general.architecture)", f.path());
  const std::string a = m.arch + ".";
  m.n_layer = static_cast<int>(first_int(f, a + "block_count").value_or(0));
  const int64_t n_head = first_int(f, a + "attention.head_count").value_or(0);
  const int64_t n_head_kv = first_int(f, a + "attention.head_count_kv").value_or(n_head);
  m.n_gqa = n_head_kv > 0 ? static_cast<int>(n_head / n_head_kv) : 0;
  m.n_expert = static_cast<int>(first_int(f, a + "expert_count").value_or(0));
  m.is_70b = m.arch == "llama" && m.n_layer == 80 && n_head != n_head_kv;
  return m;
}

// llama.cpp's choice of the layers that get more bits: the first and last eighth, and every
// third one in between.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// The mix: per-tensor type choices of llama.cpp's quantizer (llama_tensor_get_type) for the
// file types Etna writes. Counters advance in output order (by layer, then name), as the
// peer's do.
class TypeMix {
 public:
  TypeMix(const ModelFacts& m, uint32_t ftype, const QuantizeOptions& o, bool tied)
      : m_(m), ftype_(ftype), o_(o), tied_(tied), has_imatrix_(!o.imatrix.empty()) {}

  void count(Role r) {
    if (r == Role::attn_v_like || r == Role::attn_qkv) ++n_attention_wv_;
  }

  GgmlType choose(const std::string& name, uint64_t ncols, Role role, GgmlType t) {
    if (role == Role::output || (tied_ && role == Role::token_embd)) {
      if (o_.output_tensor_type) return *o_.output_tensor_type;
      if (m_.falcon() || ncols % block_size(t) != 0) return T::Q8_0;
      return t != T::Q8_0 ? T::Q6_K : t;
    }
    if (role == Role::token_embd) {
      if (o_.token_embedding_type) return *o_.token_embedding_type;
      return t;
    }
    const uint32_t f = ftype_;
    // Fused attn_qkv counts and is treated as attn_v (the peer's category_is_attn_v).
    if (role == Role::attn_v_like || role == Role::attn_qkv) {
      if (f == Q2_K) t = m_.n_gqa >= 4 ? T::Q4_K : T::Q3_K;
      else if (f == IQ3_M) t = T::Q4_K;
      else if (f == Q3_K_M) t = i_attention_wv_ < 2 ? T::Q5_K : T::Q4_K;
      else if (f == Q3_K_L) t = T::Q5_K;
      else if ((f == IQ4_NL || f == IQ4_XS) && m_.n_gqa >= 4) t = T::Q5_K;
      else if ((f == Q4_K_M || f == Q5_K_M) && use_more_bits(i_attention_wv_, n_attention_wv_)) t = T::Q6_K;
      else if (f == Q4_K_S && i_attention_wv_ < 4) t = T::Q5_K;
      if (m_.is_70b && (t == T::Q3_K || t == T::Q4_K)) t = T::Q5_K;
      if (m_.n_expert == 8) t = T::Q8_0;
      ++i_attention_wv_;
      return t;
    }
    if (role == Role::attn_k) return m_.n_expert == 8 ? T::Q8_0 : t;
    if (role == Role::ffn_down) {
      const auto [i, n] = layer_of(name, i_ffn_down_);
      ++i_ffn_down_;
      if (f == Q2_K) return T::Q3_K;
      if (f == Q3_K_M) return i < n / 16 ? T::Q5_K : !m_.falcon() || use_more_bits(i, n) ? T::Q4_K : T::Q3_K;
      if (f == IQ3_M && (i < n / 8 || (m_.n_expert == 8 && use_more_bits(i, n)))) return T::Q4_K;
      if (f == IQ3_M) return t;
      if (f == Q3_K_L) return m_.falcon() ? T::Q4_K : T::Q5_K;
      if (f == Q4_K_M) {
        if (m_.falcon()) return i < n / 16 ? T::Q6_K : use_more_bits(i, n) ? T::Q5_K : T::Q4_K;
        return use_more_bits(i, n) ? T::Q6_K : t;
      }
      if (i < n / 8 && (f == IQ4_NL || f == IQ4_XS) && !has_imatrix_) return T::Q5_K;
      if (f == Q5_K_M) return use_more_bits(i, n) ? T::Q6_K : t;
      if (f == Q4_K_S && !m_.falcon() && i < n / 8) return T::Q5_K;
      return t;
    }
    if (role == Role::attn_output) {
      if (m_.falcon()) return f == Q3_K_L ? T::Q4_K : t;
      if (m_.n_expert == 8) {
        const bool bump = f == Q2_K || f == Q3_K_S || f == Q3_K_M || f == IQ4_NL || f == Q4_K_S || f == Q4_K_M ||
                          f == IQ3_M || f == IQ4_XS;
        return bump ? T::Q5_K : t;
      }
      if (f == Q2_K) return T::Q3_K;
      if (f == Q3_K_M || f == IQ3_M) return T::Q4_K;
      if (f == Q3_K_L) return T::Q5_K;
      return t;
    }
    if (role == Role::ffn_gate) {
      layer_of(name, i_ffn_gate_);
      ++i_ffn_gate_;
    } else if (role == Role::ffn_up) {
      layer_of(name, i_ffn_up_);
      ++i_ffn_up_;
    }
    return t;
  }

 private:
  // The layer of an FFN tensor: the running count, or for mixture-of-experts models (whose
  // expert tensors are not in layer order) the number in the name.
  std::pair<int, int> layer_of(const std::string& name, int counter) const {
    int layer = counter;
    if (m_.n_expert > 1) {
      if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1)
        fail(ErrorKind::unsupported, "cannot tell the layer of tensor '{}'", name);
      if (layer < 0 || layer >= m_.n_layer)
        fail(ErrorKind::corrupt, "tensor '{}' names layer {}, but the model has {}", name, layer, m_.n_layer);
    }
    return {layer, m_.n_layer};
  }

  const ModelFacts& m_;
  uint32_t ftype_;
  const QuantizeOptions& o_;
  bool tied_;
  bool has_imatrix_;
  int n_attention_wv_ = 0, i_attention_wv_ = 0, i_ffn_down_ = 0, i_ffn_gate_ = 0, i_ffn_up_ = 0;
};

// A type that does not fit the row length is replaced as llama.cpp does: 256-blocks by a
// 32-block type of similar size, and F16 when even that does not fit.
GgmlType fallback_type(GgmlType t, uint64_t ncols, bool* fell_back) {
  *fell_back = false;
  if (ncols % block_size(t) == 0) return t;
  *fell_back = true;
  GgmlType r;
  switch (t) {
    case T::IQ1_S: case T::IQ1_M: case T::IQ2_XXS: case T::IQ2_XS: case T::IQ2_S: case T::IQ3_XXS: case T::IQ3_S:
    case T::IQ4_XS:
      r = T::IQ4_NL;
      break;
    case T::Q2_K: case T::Q3_K: case T::TQ1_0: case T::TQ2_0: r = T::Q4_0; break;
    case T::Q4_K: r = T::Q5_0; break;
    case T::Q5_K: r = T::Q5_1; break;
    case T::Q6_K: r = T::Q8_0; break;
    default:
      fail(ErrorKind::unsupported, "no fallback type for {} with rows of {}", gguf::ggml_type_name(t), ncols);
  }
  return ncols % block_size(r) == 0 ? r : T::F16;
}

// The input as floats: F32 in place, everything else decoded into `buf`.
const float* as_floats(const gguf::TensorInfo& t, std::vector<float>& buf, base::ThreadPool& pool) {
  if (t.type == T::F32) return reinterpret_cast<const float*>(t.data);
  buf.resize(t.n_elements);
  const int64_t cols = static_cast<int64_t>(t.dims[0]);
  const size_t row_bytes = gguf::ggml_row_bytes(t.type, t.dims[0]);
  pool.parallel_for(0, static_cast<int64_t>(t.rows()), std::max<int64_t>(1, 16384 / cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* src = t.data + static_cast<size_t>(r) * row_bytes;
      float* dst = buf.data() + r * cols;
      if (t.type == T::F16) {
        const auto* h = reinterpret_cast<const uint16_t*>(src);
        for (int64_t j = 0; j < cols; ++j) dst[j] = fp16_to_fp32(h[j]);
      } else if (t.type == T::BF16) {
        const auto* h = reinterpret_cast<const uint16_t*>(src);
        for (int64_t j = 0; j < cols; ++j) dst[j] = bf16_to_fp32(h[j]);
      } else {
        tensor::dequantize_row(t.type, src, dst, cols);
      }
    }
  });
  return buf.data();
}

std::string type_list() {
  std::string s;
  for (const auto& ft : quant_file_types()) s += (s.empty() ? "" : ", ") + std::string(ft.name);
  return s;
}

}  // namespace

const std::vector<QuantFileType>& quant_file_types() {
  static const std::vector<QuantFileType> types = {
      {"Q4_0", Q4_0, T::Q4_0, "4.5 bits per weight, symmetric 32-blocks"},
      {"Q4_1", Q4_1, T::Q4_1, "5.0 bpw, 32-blocks with a minimum"},
      {"Q5_0", Q5_0, T::Q5_0, "5.5 bpw, symmetric 32-blocks"},
      {"Q5_1", Q5_1, T::Q5_1, "6.0 bpw, 32-blocks with a minimum"},
      {"Q8_0", Q8_0, T::Q8_0, "8.5 bpw, nearly lossless"},
      {"Q2_K", Q2_K, T::Q2_K, "K-quant mix around Q2_K (smallest, lowest quality)"},
      {"Q3_K_S", Q3_K_S, T::Q3_K, "K-quant mix, all Q3_K"},
      {"Q3_K_M", Q3_K_M, T::Q3_K, "K-quant mix, Q3_K with Q4_K/Q5_K for sensitive tensors"},
      {"Q3_K_L", Q3_K_L, T::Q3_K, "K-quant mix, Q3_K with Q5_K for sensitive tensors"},
      {"Q4_K_S", Q4_K_S, T::Q4_K, "K-quant mix, mostly Q4_K"},
      {"Q4_K_M", Q4_K_M, T::Q4_K, "K-quant mix, Q4_K with Q6_K for half of attn_v / ffn_down (recommended)"},
      {"Q5_K_S", Q5_K_S, T::Q5_K, "K-quant mix, mostly Q5_K"},
      {"Q5_K_M", Q5_K_M, T::Q5_K, "K-quant mix, Q5_K with Q6_K for half of attn_v / ffn_down"},
      {"Q6_K", Q6_K, T::Q6_K, "6.6 bpw K-quant"},
      {"IQ4_NL", IQ4_NL, T::IQ4_NL, "4.5 bpw non-linear"},
      {"IQ4_XS", IQ4_XS, T::IQ4_XS, "4.25 bpw non-linear"},
      {"IQ3_M", IQ3_M, T::IQ3_S, "3.7 bpw mix: IQ3_S with Q4_K for attn_v / attn_output / first ffn_down"},
      {"F16", F16, T::F16, "16-bit floats"},
      {"BF16", BF16, T::BF16, "bfloat16"},
      {"F32", ALL_F32, T::F32, "32-bit floats (no quantisation)"},
  };
  return types;
}

const QuantFileType* find_quant_file_type(std::string_view name) {
  std::string n = upper(name);
  if (n == "Q3_K") n = "Q3_K_M";
  if (n == "Q4_K") n = "Q4_K_M";
  if (n == "Q5_K") n = "Q5_K_M";
  for (const auto& ft : quant_file_types())
    if (ft.name == n) return &ft;
  return nullptr;
}

TensorTypeOverride parse_tensor_type_override(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    fail(ErrorKind::invalid_argument, "--tensor-type '{}': expected PATTERN=TYPE, e.g. attn_v=q8_0", spec);
  TensorTypeOverride o;
  o.pattern = spec.substr(0, eq);
  try {
    std::regex check(o.pattern);
  } catch (const std::regex_error& e) {
    fail(ErrorKind::invalid_argument, "--tensor-type '{}': invalid pattern: {}", spec, e.what());
  }
  const auto t = gguf::ggml_type_from_name(spec.substr(eq + 1));
  if (!t || !tensor::can_quantize_for_file(*t))
    fail(ErrorKind::invalid_argument,
         "--tensor-type '{}': unknown or unsupported tensor type '{}' (use f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, "
         "q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs or iq3_s)",
         spec, spec.substr(eq + 1));
  o.type = *t;
  return o;
}

std::vector<TensorPlan> plan_quantization(const gguf::GgufFile& in, const QuantizeOptions& o) {
  const QuantFileType* ft = find_quant_file_type(o.file_type);
  if (!ft) fail(ErrorKind::invalid_argument, "unknown quantisation type '{}' (choose one of: {})", o.file_type, type_list());
  const ModelFacts facts = model_facts(in);

  std::vector<const gguf::TensorInfo*> tensors;
  for (const auto& t : in.tensors()) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(), [](const auto* a, const auto* b) { return tensor_order(a->name, b->name); });

  bool tied = true;
  for (const auto* t : tensors)
    if (t->name == "output.weight") tied = false;
  TypeMix mix(facts, ft->id, o, tied);
  for (const auto* t : tensors) mix.count(role_of(t->name));

  std::vector<std::pair<std::regex, GgmlType>> overrides;
  for (const auto& tt : o.tensor_types) overrides.emplace_back(std::regex(tt.pattern), tt.type);

  std::vector<TensorPlan> plan;
  for (const auto* t : tensors) {
    TensorPlan p{t->name, t->dims, t->type, t->type};
    const uint64_t ncols = t->dims[0];
    const Role role = role_of(t->name);
    if (allows_quantization(*t, o)) {
      if (o.token_embedding_type && role == Role::token_embd) {
        p.to = *o.token_embedding_type;
      } else if (o.output_tensor_type && role == Role::output) {
        p.to = *o.output_tensor_type;
      } else {
        p.to = ft->base;
        if (is_quantized(ft->base)) {
          bool manual = false;
          for (const auto& [re, type] : overrides)
            if (std::regex_search(t->name, re)) {
              p.to = type;
              manual = true;
              break;
            }
          if (!manual && !o.pure) p.to = mix.choose(t->name, ncols, role, p.to);
          p.to = fallback_type(p.to, ncols, &p.fallback);
        }
      }
    }
    if (p.to != p.from) {
      if (ncols % block_size(p.to) != 0)
        fail(ErrorKind::invalid_argument, "tensor '{}': rows of {} values do not fit {} blocks of {}", t->name, ncols,
             gguf::ggml_type_name(p.to), block_size(p.to));
      if (is_quantized(p.from) && !o.allow_requantize)
        fail(ErrorKind::invalid_argument,
             "{}: tensor '{}' is already quantised ({}); quantise from an F32/F16/BF16 file, or pass "
             "--allow-requantize (quality suffers)",
             in.path(), t->name, gguf::ggml_type_name(p.from));
      if (is_quantized(p.from) && !tensor::is_supported(p.from))
        fail(ErrorKind::unsupported, "tensor '{}': cannot decode {}", t->name, gguf::ggml_type_name(p.from));
      if (!is_quantized(p.from) && p.from != T::F32 && p.from != T::F16 && p.from != T::BF16)
        fail(ErrorKind::unsupported, "tensor '{}': cannot convert {} tensors", t->name, gguf::ggml_type_name(p.from));
    }
    p.bytes_in = t->n_bytes;
    p.bytes_out = p.to == p.from ? t->n_bytes : gguf::ggml_row_bytes(p.to, t->n_elements);
    plan.push_back(std::move(p));
  }
  return plan;
}

QuantizeSummary quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& o,
                               const std::function<void(const QuantizeProgress&)>& progress) {
  auto in = gguf::GgufFile::open(in_path);
  const std::vector<TensorPlan> plan = plan_quantization(*in, o);
  const QuantFileType* ft = find_quant_file_type(o.file_type);
  for (const auto& p : plan)
    if (p.to != p.from && !tensor::can_quantize_for_file(p.to))
      fail(ErrorKind::unsupported, "{}: writing {} tensors is not supported yet (tensor '{}')", ft->name,
           gguf::ggml_type_name(p.to), p.name);
  Imatrix imatrix;
  std::vector<const std::vector<float>*> importance(plan.size(), nullptr);
  if (!o.imatrix.empty()) {
    imatrix = load_imatrix(o.imatrix);
    for (size_t i = 0; i < plan.size(); ++i) {
      const TensorPlan& p = plan[i];
      auto it = imatrix.weights.find(p.name);
      if (p.to == p.from || !is_quantized(p.to) || it == imatrix.weights.end()) continue;
      uint64_t n_mat = 1;
      for (size_t d = 2; d < p.dims.size(); ++d) n_mat *= p.dims[d];
      if (it->second.size() != p.dims[0] * n_mat)
        fail(ErrorKind::invalid_argument, "{}: the importance of '{}' has {} values; the tensor needs {} ({} columns x {})",
             o.imatrix, p.name, it->second.size(), p.dims[0] * n_mat, p.dims[0], n_mat);
      if (!tensor::can_weight_for_file(p.to))
        fail(ErrorKind::unsupported,
             "--imatrix: tensor '{}' would be {}, which Etna cannot quantise with importance weights yet (all but Q5_1 "
             "can); choose its type with --tensor-type, or quantise without --imatrix",
             p.name, gguf::ggml_type_name(p.to));
      importance[i] = &it->second;
    }
  }

  // Metadata: the input's, in order, then the quantisation keys appended (a key set again
  // moves to the end, as in the peer's writer); split bookkeeping does not apply to one file.
  gguf::GgufWriter w;
  for (const auto& [key, value] : in->metadata()) w.set(key, value);
  w.remove("general.quantization_version");
  w.set("general.quantization_version", Value::unsigned_int(ValueType::UINT32, kQuantizationVersion));
  w.remove("general.file_type");
  w.set("general.file_type", Value::unsigned_int(ValueType::UINT32, ft->id));
  if (!o.imatrix.empty()) {  // the peer's record of the importance matrix used
    size_t used = 0;
    for (const auto* v : importance) used += v != nullptr;
    w.set("quantize.imatrix.file", Value::string(o.imatrix));
    if (!imatrix.datasets.empty()) w.set("quantize.imatrix.dataset", Value::string(imatrix.datasets.back()));
    w.set("quantize.imatrix.entries_count", Value::signed_int(ValueType::INT32, static_cast<int64_t>(used)));
    w.set("quantize.imatrix.chunks_count", Value::signed_int(ValueType::INT32, imatrix.chunk_count));
  }
  for (const char* k : {"split.no", "split.count", "split.tensors.count"}) w.remove(k);

  std::vector<const gguf::TensorInfo*> sources;
  for (const auto& p : plan) {
    const gguf::TensorInfo* t = in->find_tensor(p.name);
    sources.push_back(t);
    w.add_tensor(p.name, p.dims, p.to, p.to == p.from ? t->data : nullptr);
  }

  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  base::ThreadPool pool(threads);
  std::vector<float> f32_buf;
  std::vector<uint8_t> out_buf;
  QuantizeSummary summary;
  summary.tensors = plan.size();
  size_t reported = 0;
  auto report_through = [&](size_t index) {  // copied tensors are reported as they are passed
    for (; reported <= index && reported < plan.size(); ++reported) {
      const auto& p = plan[reported];
      summary.bytes_in += p.bytes_in;
      summary.bytes_out += p.bytes_out;
      if (p.to != p.from) ++summary.quantized;
      if (p.fallback) ++summary.fallbacks;
      if (progress) progress({reported, plan.size(), p});
    }
  };

  w.write(out_path, [&](size_t index) -> const void* {
    if (index > 0) report_through(index - 1);
    const TensorPlan& p = plan[index];
    const gguf::TensorInfo& t = *sources[index];
    const float* x = as_floats(t, f32_buf, pool);
    out_buf.resize(p.bytes_out);
    const int64_t cols = static_cast<int64_t>(t.dims[0]);
    const size_t out_row = gguf::ggml_row_bytes(p.to, t.dims[0]);
    pool.parallel_for(0, static_cast<int64_t>(t.rows()), std::max<int64_t>(1, 16384 / cols), [&](int64_t r0, int64_t r1) {
      const float* rows = x + r0 * cols;
      for (int64_t i = 0; i < (r1 - r0) * cols; ++i)
        if (!std::isfinite(rows[i]))
          fail(ErrorKind::corrupt, "{}: tensor '{}' holds a non-finite value (row {}, column {})", in_path, p.name,
               r0 + i / cols, i % cols);
      uint8_t* out = out_buf.data() + static_cast<size_t>(r0) * out_row;
      if (const std::vector<float>* qw = importance[index]) {
        // Rows of a stacked (3-D) tensor take their own expert's importance.
        const int64_t rows_per_mat = static_cast<int64_t>(t.dims.size() > 1 ? t.dims[1] : 1);
        for (int64_t r = r0; r < r1; ++r)
          tensor::quantize_for_file_weighted(p.to, x + r * cols, out + static_cast<size_t>(r - r0) * out_row, 1, cols,
                                             qw->data() + static_cast<size_t>(r / rows_per_mat) * cols);
      } else {
        tensor::quantize_for_file(p.to, rows, out, (r1 - r0) * cols);
      }
    });
    return out_buf.data();
  });
  report_through(plan.size());
  return summary;
}

}  // namespace etna::hub
