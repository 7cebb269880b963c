#include "etna/hub/synth.h"

#include <cmath>
#include <cstring>
#include <random>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/gguf/gguf_writer.h"

namespace etna::hub {
namespace {

using gguf::GgmlType;
using gguf::Value;
using gguf::ValueType;

// llama.cpp's "use more bits" rule for Q4_K_M: the first and last eighth of the layers and
// every third one in between get Q6_K for attn_v and ffn_down.
bool use_more_bits(int layer, int n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

// K-quants need rows that are a multiple of 256; llama.cpp falls back to these otherwise.
GgmlType fit_row(GgmlType t, uint64_t cols) {
  if (cols % 256 == 0) return t;
  switch (t) {
    case GgmlType::Q4_K: return GgmlType::Q5_0;
    case GgmlType::Q6_K: return GgmlType::Q8_0;
    default: return t;
  }
}

// Offsets of the fp16 scale fields in one block of each type, so random blocks get sane scales.
std::vector<size_t> scale_offsets(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return {0};
    case GgmlType::Q4_1: case GgmlType::Q5_1: return {0, 2};
    case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
    case GgmlType::Q6_K: return {208};
    default: return {};
  }
}

void fill_random(GgmlType type, uint64_t n, std::vector<uint8_t>& out, std::mt19937_64& rng) {
  auto info = *gguf::ggml_type_info(static_cast<uint32_t>(type));
  const uint64_t blocks = n / info.block_size;
  out.resize(blocks * info.block_bytes);
  if (type == GgmlType::F32) {
    std::normal_distribution<float> dist(0.f, 0.02f);
    for (uint64_t i = 0; i < n; ++i) {
      float v = dist(rng);
      std::memcpy(out.data() + i * 4, &v, 4);
    }
    return;
  }
  for (size_t i = 0; i + 8 <= out.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(out.data() + i, &r, 8);
  }
  const uint16_t d = fp32_to_fp16(0.002f), dmin = fp32_to_fp16(0.001f);
  auto offsets = scale_offsets(type);
  for (uint64_t b = 0; b < blocks; ++b) {
    uint8_t* blk = out.data() + b * info.block_bytes;
    for (size_t k = 0; k < offsets.size(); ++k) std::memcpy(blk + offsets[k], k == 0 ? &d : &dmin, 2);
  }
}

std::string gpt2_byte_char(int byte) {
  // GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 + n.
  static const std::vector<int> table = [] {
    std::vector<int> t(256, -1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[b] = printable ? b : 256 + extra++;
    }
    return t;
  }();
  int cp = table[byte];
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

void add_tokenizer(gguf::GgufWriter& w, const SynthShape& s, std::mt19937_64& rng) {
  std::vector<Value> tokens, scores, types, merges;
  auto push = [&](const std::string& text, float score, int type) {
    tokens.push_back(Value::string(text));
    scores.push_back(Value::floating(ValueType::FLOAT32, score));
    types.push_back(Value::signed_int(ValueType::INT32, type));
  };
  if (s.tokenizer == "spm") {
    push("<unk>", 0, 2);
    push("<s>", 0, 3);
    push("</s>", 0, 3);
    for (int b = 0; b < 256; ++b) push(fmt::format("<0x{:02X}>", b), 0, 6);
    const std::string letters = "abcdefghijklmnopqrstuvwxyz";
    for (int i = static_cast<int>(tokens.size()); i < s.n_vocab; ++i) {
      std::string piece = (i % 3 == 0) ? "\xE2\x96\x81" : "";
      int len = 1 + static_cast<int>(rng() % 6);
      for (int k = 0; k < len; ++k) piece += letters[rng() % letters.size()];
      push(piece + std::to_string(i), -static_cast<float>(i), 1);
    }
    w.set("tokenizer.ggml.model", Value::string("llama"));
    w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, std::move(tokens)));
    w.set("tokenizer.ggml.scores", Value::array(ValueType::FLOAT32, std::move(scores)));
    w.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, std::move(types)));
    w.set("tokenizer.ggml.bos_token_id", Value::unsigned_int(ValueType::UINT32, 1));
    w.set("tokenizer.ggml.eos_token_id", Value::unsigned_int(ValueType::UINT32, 2));
    w.set("tokenizer.ggml.unknown_token_id", Value::unsigned_int(ValueType::UINT32, 0));
    w.set("tokenizer.chat_template",
          Value::string("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + "
                        "eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"));
    return;
  }
  // Byte-level BPE: 256 byte symbols, then merged symbols with their merge rules, then specials.
  std::vector<std::string> special = s.tokenizer == "qwen2"
                                         ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
                                         : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
  std::vector<std::string> texts;
  for (int b = 0; b < 256; ++b) texts.push_back(gpt2_byte_char(b));
  std::unordered_map<std::string, int> seen;
  for (size_t i = 0; i < texts.size(); ++i) seen[texts[i]] = static_cast<int>(i);
  const int n_normal = s.n_vocab - static_cast<int>(special.size());
  while (static_cast<int>(texts.size()) < n_normal) {
    const auto& a = texts[rng() % texts.size()];
    const auto& b = texts[rng() % std::min<size_t>(texts.size(), 4096)];
    std::string m = a + b;
    if (m.size() > 24 || seen.count(m)) continue;
    merges.push_back(Value::string(a + " " + b));
    seen[m] = static_cast<int>(texts.size());
    texts.push_back(std::move(m));
  }
  for (auto& t : texts) push(t, 0, 1);
  for (auto& t : special) push(t, 0, 3);
  w.set("tokenizer.ggml.model", Value::string("gpt2"));
  w.set("tokenizer.ggml.pre", Value::string(s.tokenizer));
  w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, std::move(tokens)));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, std::move(types)));
  w.set("tokenizer.ggml.merges", Value::array(ValueType::STRING, std::move(merges)));
  const uint32_t first_special = static_cast<uint32_t>(n_normal);
  if (s.tokenizer == "qwen2") {
    w.set("tokenizer.ggml.eos_token_id", Value::unsigned_int(ValueType::UINT32, first_special + 2));
    w.set("tokenizer.ggml.padding_token_id", Value::unsigned_int(ValueType::UINT32, first_special));
    w.set("tokenizer.ggml.bos_token_id", Value::unsigned_int(ValueType::UINT32, first_special));
    w.set("tokenizer.ggml.add_bos_token", Value::boolean(false));
    w.set("tokenizer.chat_template",
          Value::string("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                        "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                        "{% endif %}"));
  } else {
    w.set("tokenizer.ggml.bos_token_id", Value::unsigned_int(ValueType::UINT32, first_special));
    w.set("tokenizer.ggml.eos_token_id", Value::unsigned_int(ValueType::UINT32, first_special + 2));
    w.set("tokenizer.ggml.add_bos_token", Value::boolean(true));
    w.set("tokenizer.chat_template",
          Value::string("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                        "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"));
  }
}

int head_dim_of(const SynthShape& s) { return s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head; }

// Llama 3.1+'s frequency factors (factor 32, low/high frequency factors 1 and 4, original context
// 8192): wavelengths shorter than 8192/4 keep their frequency, longer than 8192 are divided by 32,
// and those between are interpolated smoothly.
std::vector<float> llama3_rope_factors(int head_dim, float base) {
  const double factor = 32, low = 1, high = 4, original = 8192;
  std::vector<float> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(base, -2.0 * i / head_dim), wavelen = 2 * M_PI / freq;
    if (wavelen < original / high) {
      f[i] = 1.0f;
    } else if (wavelen > original / low) {
      f[i] = static_cast<float>(factor);
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      f[i] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  return f;
}

}  // namespace

uint64_t active_parameters(const SynthShape& s) {
  const uint64_t E = s.n_embd, D = head_dim_of(s), Q = D * s.n_head, KV = D * s.n_head_kv, V = s.n_vocab;
  uint64_t layer = E * Q * 2 + E * KV * 2 + 2 * E;
  if (s.arch == "qwen2") layer += Q + 2 * KV;                         // q, k, v biases
  if (s.arch == "qwen3" || s.arch == "qwen3moe") layer += 2 * D;      // per-head q and k norms
  if (s.n_expert > 0)
    layer += E * s.n_expert + static_cast<uint64_t>(s.n_expert_used) * 3 * E * s.n_ff_exp;
  else
    layer += 3 * E * s.n_ff;
  return layer * s.n_layer + E * V * (s.tied_output ? 1 : 2) + E + (s.rope_freqs ? D / 2 : 0);
}

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = {
      {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, 2048, 10000.f, 1e-5f, false, "spm"},
      {"llama-3.2-1b", "llama", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.f, 1e-5f, true, "llama-bpe", 0, true},
      {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, 32768, 1000000.f, 1e-6f, true, "qwen2"},
      {"qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 3072, 40960, 1000000.f, 1e-6f, true, "qwen2", 128},
      // Qwen3-30B-A3B's layer layout (head 128, 8 of the experts used, expert FFN 768 → 512 here)
      // scaled down to 16 layers and 64 experts so that it fits a small machine: 1.8B parameters,
      // 0.44B active per token.
      {"qwen3moe-1.8b-a0.4b", "qwen3moe", 151936, 1024, 16, 16, 4, 3072, 40960, 1000000.f, 1e-6f, true, "qwen2", 128,
       false, 64, 8, 512},
      // Small shapes of the same layouts, for tests.
      {"test-llama", "llama", 2000, 256, 2, 4, 2, 512, 512, 10000.f, 1e-5f, false, "spm"},
      {"test-qwen2", "qwen2", 2000, 256, 2, 4, 1, 512, 512, 1000000.f, 1e-6f, true, "qwen2"},
      {"test-qwen3moe", "qwen3moe", 2000, 256, 2, 4, 2, 512, 512, 1000000.f, 1e-6f, true, "qwen2", 128, false, 8, 2, 256},
  };
  return shapes;
}

void synthesize_model(const std::string& shape_name, const std::string& type, const std::string& path, uint64_t seed,
                      const std::function<void(size_t, size_t)>& progress) {
  const SynthShape* shape = nullptr;
  for (const auto& s : synth_shapes())
    if (s.name == shape_name) shape = &s;
  if (!shape) {
    std::string names;
    for (const auto& s : synth_shapes()) names += (names.empty() ? "" : ", ") + s.name;
    fail(ErrorKind::invalid_argument, "unknown shape '{}' (choose one of: {})", shape_name, names);
  }
  GgmlType base;
  uint32_t file_type;
  if (type == "q4_0") {
    base = GgmlType::Q4_0, file_type = 2;
  } else if (type == "q8_0") {
    base = GgmlType::Q8_0, file_type = 7;
  } else if (type == "q4_k_m") {
    base = GgmlType::Q4_K, file_type = 15;
  } else {
    fail(ErrorKind::invalid_argument, "unknown type '{}' (choose q4_0, q8_0 or q4_k_m)", type);
  }
  const SynthShape& s = *shape;
  const GgmlType output_type = base == GgmlType::Q8_0 ? GgmlType::Q8_0 : GgmlType::Q6_K;
  std::mt19937_64 rng(seed);

  gguf::GgufWriter w;
  const std::string a = s.arch;
  w.set("general.architecture", Value::string(a));
  w.set("general.name", Value::string("synthetic " + s.name + " (random weights)"));
  w.set("general.license", Value::string("MIT"));
  w.set("general.file_type", Value::unsigned_int(ValueType::UINT32, file_type));
  auto u32 = [](int v) { return Value::unsigned_int(ValueType::UINT32, static_cast<uint64_t>(v)); };
  w.set(a + ".context_length", u32(s.n_ctx));
  w.set(a + ".embedding_length", u32(s.n_embd));
  w.set(a + ".block_count", u32(s.n_layer));
  w.set(a + ".feed_forward_length", u32(s.n_ff));
  w.set(a + ".attention.head_count", u32(s.n_head));
  w.set(a + ".attention.head_count_kv", u32(s.n_head_kv));
  const int D = head_dim_of(s);
  w.set(a + ".rope.dimension_count", u32(D));
  if (s.head_dim > 0) {
    w.set(a + ".attention.key_length", u32(D));
    w.set(a + ".attention.value_length", u32(D));
  }
  if (s.n_expert > 0) {
    w.set(a + ".expert_count", u32(s.n_expert));
    w.set(a + ".expert_used_count", u32(s.n_expert_used));
    w.set(a + ".expert_feed_forward_length", u32(s.n_ff_exp));
  }
  w.set(a + ".rope.freq_base", Value::floating(ValueType::FLOAT32, s.rope_base));
  w.set(a + ".attention.layer_norm_rms_epsilon", Value::floating(ValueType::FLOAT32, s.rms_eps));
  w.set(a + ".vocab_size", u32(s.n_vocab));
  add_tokenizer(w, s, rng);

  struct Spec {
    std::string name;
    std::vector<uint64_t> dims;
    GgmlType type;
  };
  const uint64_t E = s.n_embd, F = s.n_ff, V = s.n_vocab, X = s.n_expert, FX = s.n_ff_exp;
  const uint64_t Q = static_cast<uint64_t>(D) * s.n_head, KV = static_cast<uint64_t>(D) * s.n_head_kv;
  std::vector<Spec> specs;
  specs.push_back({"token_embd.weight", {E, V}, fit_row(s.tied_output ? output_type : base, E)});
  if (s.rope_freqs) specs.push_back({"rope_freqs.weight", {static_cast<uint64_t>(D / 2)}, GgmlType::F32});
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool more = base == GgmlType::Q4_K && use_more_bits(l, s.n_layer);
    specs.push_back({p + "attn_norm.weight", {E}, GgmlType::F32});
    specs.push_back({p + "attn_q.weight", {E, Q}, fit_row(base, E)});
    specs.push_back({p + "attn_k.weight", {E, KV}, fit_row(base, E)});
    specs.push_back({p + "attn_v.weight", {E, KV}, fit_row(more ? GgmlType::Q6_K : base, E)});
    if (s.arch == "qwen2") {
      specs.push_back({p + "attn_q.bias", {E}, GgmlType::F32});
      specs.push_back({p + "attn_k.bias", {KV}, GgmlType::F32});
      specs.push_back({p + "attn_v.bias", {KV}, GgmlType::F32});
    }
    if (s.arch == "qwen3" || s.arch == "qwen3moe") {
      specs.push_back({p + "attn_q_norm.weight", {static_cast<uint64_t>(D)}, GgmlType::F32});
      specs.push_back({p + "attn_k_norm.weight", {static_cast<uint64_t>(D)}, GgmlType::F32});
    }
    specs.push_back({p + "attn_output.weight", {Q, E}, fit_row(base, Q)});
    specs.push_back({p + "ffn_norm.weight", {E}, GgmlType::F32});
    if (X > 0) {
      specs.push_back({p + "ffn_gate_inp.weight", {E, X}, GgmlType::F32});
      specs.push_back({p + "ffn_gate_exps.weight", {E, FX, X}, fit_row(base, E)});
      specs.push_back({p + "ffn_up_exps.weight", {E, FX, X}, fit_row(base, E)});
      specs.push_back({p + "ffn_down_exps.weight", {FX, E, X}, fit_row(more ? GgmlType::Q6_K : base, FX)});
    } else {
      specs.push_back({p + "ffn_gate.weight", {E, F}, fit_row(base, E)});
      specs.push_back({p + "ffn_up.weight", {E, F}, fit_row(base, E)});
      specs.push_back({p + "ffn_down.weight", {F, E}, fit_row(more ? GgmlType::Q6_K : base, F)});
    }
  }
  specs.push_back({"output_norm.weight", {E}, GgmlType::F32});
  if (!s.tied_output) specs.push_back({"output.weight", {E, V}, fit_row(output_type, E)});

  std::vector<std::vector<uint8_t>> buffers(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t n = 1;
    for (auto d : specs[i].dims) n *= d;
    if (specs[i].name == "rope_freqs.weight") {
      const std::vector<float> f = llama3_rope_factors(D, s.rope_base);
      buffers[i].resize(f.size() * 4);
      std::memcpy(buffers[i].data(), f.data(), buffers[i].size());
    } else if (specs[i].name.find("norm") != std::string::npos) {
      buffers[i].resize(n * 4);
      for (uint64_t k = 0; k < n; ++k) {
        float one = 1.0f;
        std::memcpy(buffers[i].data() + k * 4, &one, 4);
      }
    } else {
      fill_random(specs[i].type, n, buffers[i], rng);
    }
    w.add_tensor(specs[i].name, specs[i].dims, specs[i].type, buffers[i].data());
    if (progress) progress(i + 1, specs.size());
  }
  w.write(path);
}

}  // namespace etna::hub
