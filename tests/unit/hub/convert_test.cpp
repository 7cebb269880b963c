// `etna convert` round trips: each shared GGUF is turned into a Hugging Face checkpoint here
// (the inverse of the peer's mapping: HF tensor names, q/k rows un-permuted, safetensors,
// config.json, the tokenizer files HF ships), converted back with the real binary, and the
// result must give the original's logits (or embeddings) exactly and carry the same tensors,
// vocabulary and special tokens. Hostile safetensors files must each give one clear error.
#include <cstring>
#include <fstream>
#include <algorithm>
#include <functional>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/hub/convert.h"
#include "etna/hub/convert_vocab.h"
#include "etna/hub/safetensors.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;
using nlohmann::json;

struct HfTensor {
  std::string name;
  std::vector<uint64_t> shape;  // row-major
  std::vector<float> data;
};

// A safetensors image (F32 tensors), header padded with spaces to 8 bytes as HF writes it.
std::string safetensors_bytes(const std::vector<const HfTensor*>& tensors, const json& metadata = json()) {
  json h = json::object();
  uint64_t off = 0;
  for (const auto* t : tensors) {
    h[t->name] = {{"dtype", "F32"}, {"shape", t->shape}, {"data_offsets", {off, off + 4 * t->data.size()}}};
    off += 4 * t->data.size();
  }
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string header = h.dump();
  while (header.size() % 8) header += ' ';
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  for (const auto* t : tensors) out.append(reinterpret_cast<const char*>(t->data.data()), 4 * t->data.size());
  return out;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

std::vector<float> to_floats(const gguf::TensorInfo& t) {
  std::vector<float> out(t.n_elements);
  if (t.type == GgmlType::F32) {
    std::memcpy(out.data(), t.data, 4 * t.n_elements);
  } else if (t.type == GgmlType::Q8_0) {
    for (uint64_t b = 0; b < t.n_elements / 32; ++b) {
      const uint8_t* blk = t.data + 34 * b;
      uint16_t d;
      std::memcpy(&d, blk, 2);
      for (int i = 0; i < 32; ++i) out[32 * b + i] = fp16_to_fp32(d) * static_cast<int8_t>(blk[2 + i]);
    }
  } else {
    ADD_FAILURE() << "unexpected type in " << t.name;
  }
  return out;
}

// GGUF llama layout back to HF's: each head's interleaved rotary pairs split into halves.
void unpermute_rows(std::vector<float>& w, uint64_t rows, uint64_t cols, uint64_t n_head) {
  const uint64_t d = rows / n_head, half = d / 2;
  std::vector<float> out(w.size());
  for (uint64_t h = 0; h < n_head; ++h)
    for (uint64_t i = 0; i < 2; ++i)
      for (uint64_t j = 0; j < half; ++j)
        std::memcpy(&out[(h * d + i * half + j) * cols], &w[(h * d + 2 * j + i) * cols], cols * sizeof(float));
  w.swap(out);
}

std::string hf_name(const std::string& gguf_name, const std::string& arch) {
  const bool bert = arch == "bert";
  static const std::map<std::string, std::string> decoder = {
      {"token_embd.weight", "model.embed_tokens.weight"}, {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"}, {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"}, {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"}, {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"}, {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}, {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"}, {"attn_qkv.weight", "self_attn.qkv_proj.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"}};
  static const std::map<std::string, std::string> enc = {
      {"token_embd.weight", "embeddings.word_embeddings.weight"}, {"token_types.weight", "embeddings.token_type_embeddings.weight"},
      {"position_embd.weight", "embeddings.position_embeddings.weight"}, {"token_embd_norm.weight", "embeddings.LayerNorm.weight"},
      {"token_embd_norm.bias", "embeddings.LayerNorm.bias"}, {"attn_q.weight", "attention.self.query.weight"},
      {"attn_q.bias", "attention.self.query.bias"}, {"attn_k.weight", "attention.self.key.weight"},
      {"attn_k.bias", "attention.self.key.bias"}, {"attn_v.weight", "attention.self.value.weight"},
      {"attn_v.bias", "attention.self.value.bias"}, {"attn_output.weight", "attention.output.dense.weight"},
      {"attn_output.bias", "attention.output.dense.bias"}, {"attn_output_norm.weight", "attention.output.LayerNorm.weight"},
      {"attn_output_norm.bias", "attention.output.LayerNorm.bias"}, {"ffn_up.weight", "intermediate.dense.weight"},
      {"ffn_up.bias", "intermediate.dense.bias"}, {"ffn_down.weight", "output.dense.weight"},
      {"ffn_down.bias", "output.dense.bias"}, {"layer_output_norm.weight", "output.LayerNorm.weight"},
      {"layer_output_norm.bias", "output.LayerNorm.bias"}};
  const auto& table = bert ? enc : decoder;
  if (gguf_name.rfind("blk.", 0) == 0) {
    const auto dot = gguf_name.find('.', 4);
    const std::string layer = gguf_name.substr(4, dot - 4), rest = gguf_name.substr(dot + 1);
    std::string hf = rest == "ffn_gate_inp.weight" ? "" : table.at(rest);
    const bool gemma = arch == "gemma2" || arch == "gemma3";
    if (gemma && rest == "ffn_norm.weight") hf = "pre_feedforward_layernorm.weight";
    if (arch == "phi3" && rest == "ffn_up.weight") hf = "mlp.gate_up_proj.weight";
    if (rest == "ffn_gate_inp.weight") hf = arch == "llama" ? "block_sparse_moe.gate.weight" : "mlp.gate.weight";
    return (bert ? "bert.encoder.layer." : "model.layers.") + layer + "." + hf;
  }
  return (bert ? "bert." : "") + table.at(gguf_name);
}

// HF tensors from a GGUF model: llama q/k un-permuted, gemma norms back to HF's (1 + w)
// convention, stacked experts split into one matrix per expert.
std::vector<HfTensor> hf_tensors(const gguf::GgufFile& g) {
  const std::string arch = g.architecture();
  const uint64_t n_head = *g.get_uint(arch + ".attention.head_count");
  const uint64_t n_head_kv = g.get_uint(arch + ".attention.head_count_kv").value_or(n_head);
  std::vector<HfTensor> out;
  for (const auto& t : g.tensors()) {
    // Derived from config.json (rope_scaling), not weights.
    if (t.name == "rope_freqs.weight" || t.name.rfind("rope_factors_", 0) == 0) continue;
    if (t.name.find("_exps.weight") != std::string::npos) {
      const auto dot = t.name.find('.', 4);
      const std::string layer = t.name.substr(4, dot - 4), part = t.name.substr(dot + 1, t.name.find('_', dot + 5) - dot - 1);
      const bool mixtral = arch == "llama";
      const std::string proj = part == "ffn_gate" ? (mixtral ? "w1" : "gate_proj")
                               : part == "ffn_up" ? (mixtral ? "w3" : "up_proj") : (mixtral ? "w2" : "down_proj");
      const std::vector<float> all = to_floats(t);
      const uint64_t per = t.dims[0] * t.dims[1];
      for (uint64_t e = 0; e < t.dims[2]; ++e)
        out.push_back(HfTensor{"model.layers." + layer + (mixtral ? ".block_sparse_moe.experts." : ".mlp.experts.") +
                                   std::to_string(e) + "." + proj + ".weight",
                               {t.dims[1], t.dims[0]},
                               std::vector<float>(all.begin() + e * per, all.begin() + (e + 1) * per)});
      continue;
    }
    HfTensor h{hf_name(t.name, arch), {t.dims.rbegin(), t.dims.rend()}, to_floats(t)};
    const bool q = t.name.find("attn_q.") != std::string::npos, k = t.name.find("attn_k.") != std::string::npos;
    if (arch == "llama" && (q || k)) unpermute_rows(h.data, h.shape[0], h.data.size() / h.shape[0], q ? n_head : n_head_kv);
    if ((arch == "gemma2" || arch == "gemma3") && t.name.size() > 11 && t.name.compare(t.name.size() - 11, 11, "norm.weight") == 0)
      for (float& v : h.data) v -= 1.0f;  // exact for weights in [0.5, 2], as these are
    out.push_back(std::move(h));
  }
  return out;
}

std::string protobuf_varint(uint64_t v) {
  std::string s;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    s += static_cast<char>(b | (v ? 0x80 : 0));
  } while (v);
  return s;
}

// SentencePiece ModelProto with the GGUF's pieces, scores and types (the types share values).
std::string sentencepiece_model(const gguf::GgufFile& g) {
  const auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  const auto scores = g.get_float_array("tokenizer.ggml.scores");
  const auto types = g.get_int_array("tokenizer.ggml.token_type");
  // Trailing "[PAD<id>]" tokens are config.json's vocab_size padding, not pieces.
  size_t n = tokens.size();
  while (n > 0 && tokens[n - 1] == "[PAD" + std::to_string(n - 1) + "]") --n;
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    std::string piece(1, '\x0a');
    piece += protobuf_varint(tokens[i].size());
    piece += tokens[i];
    piece += '\x15';
    piece.append(reinterpret_cast<const char*>(&scores[i]), 4);
    piece += '\x18';
    piece += protobuf_varint(static_cast<uint64_t>(types[i]));
    out += '\x0a';
    out += protobuf_varint(piece.size());
    out += piece;
  }
  return out;
}

json tokenizer_json(const gguf::GgufFile& g, bool bert) {
  const auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  const auto types = g.get_int_array("tokenizer.ggml.token_type");
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string t = tokens[i];
    if (bert && !(t.size() >= 2 && t.front() == '[' && t.back() == ']'))
      t = t.rfind("\xe2\x96\x81", 0) == 0 ? t.substr(3) : "##" + t;  // undo the phantom space form
    vocab[t] = i;
    if (types[i] == kControl) added.push_back({{"id", i}, {"content", t}, {"special", true}, {"single_word", false},
                                               {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
  }
  json j = {{"version", "1.0"}, {"added_tokens", added}};
  if (bert) {
    j["normalizer"] = {{"type", "BertNormalizer"}, {"lowercase", true}};
    j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
    j["model"] = {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                  {"max_input_chars_per_word", 100}, {"vocab", vocab}};
  } else if (g.get_string("tokenizer.ggml.pre") == "llama-bpe") {
    const std::string regex =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                                                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", g.get_string_array("tokenizer.ggml.merges")}};
  } else {
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", g.get_string_array("tokenizer.ggml.merges")}};
  }
  return j;
}

json config_json(const gguf::GgufFile& g) {
  const std::string a = g.architecture();
  auto u = [&](const std::string& k) { return *g.get_uint(a + "." + k); };
  json c = {{"hidden_size", u("embedding_length")}, {"num_hidden_layers", u("block_count")},
            {"num_attention_heads", u("attention.head_count")}, {"intermediate_size", u("feed_forward_length")},
            {"max_position_embeddings", u("context_length")},
            {"vocab_size", g.get_string_array("tokenizer.ggml.tokens").size()}, {"torch_dtype", "float32"}};
  if (a == "bert") {
    c["architectures"] = {"BertModel"};
    c["layer_norm_eps"] = *g.get_float("bert.attention.layer_norm_epsilon");
    c["type_vocab_size"] = g.find_tensor("token_types.weight")->dims[1];
    c["pad_token_id"] = 0;
  } else {
    static const std::map<std::string, std::string> kHf = {
        {"llama", "LlamaForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
        {"qwen3moe", "Qwen3MoeForCausalLM"}, {"gemma2", "Gemma2ForCausalLM"}, {"gemma3", "Gemma3ForCausalLM"},
        {"phi3", "Phi3ForCausalLM"}};
    c["architectures"] = {kHf.at(a)};
    if (g.has(a + ".expert_count")) {
      if (a == "llama") {
        c["architectures"] = {"MixtralForCausalLM"};
        c["num_local_experts"] = u("expert_count");
      } else {
        c["num_experts"] = u("expert_count");
        c["moe_intermediate_size"] = u("expert_feed_forward_length");
        c["norm_topk_prob"] = true;
      }
      c["num_experts_per_tok"] = u("expert_used_count");
    }
    if (g.has(a + ".attention.key_length")) c["head_dim"] = u("attention.key_length");
    if (a == "gemma2" || a == "gemma3") {
      c["sliding_window"] = u("attention.sliding_window");
      c["query_pre_attn_scalar"] = u("attention.key_length");
      c["hidden_activation"] = "gelu_pytorch_tanh";
    }
    if (a == "gemma2") {
      c["attn_logit_softcapping"] = *g.get_float("gemma2.attn_logit_softcapping");
      c["final_logit_softcapping"] = *g.get_float("gemma2.final_logit_softcapping");
    }
    if (a == "gemma3") {
      c["rope_local_base_freq"] = 10000.0;
      c["sliding_window_pattern"] = 6;
      c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", *g.get_float("gemma3.rope.scaling.factor")}};
    }
    if (a == "phi3") {
      c["sliding_window"] = u("attention.sliding_window");
      c["original_max_position_embeddings"] = u("rope.scaling.original_context_length");
      auto factors = [&](const char* name) {
        const auto* t = g.find_tensor(name);
        std::vector<float> f(t->n_elements);
        std::memcpy(f.data(), t->data, 4 * f.size());
        return f;
      };
      // The shared file's attention factor is set by hand (1.19, not the 1.1902 its context
      // extension implies), so the checkpoint states it as HF's attention_factor.
      c["rope_scaling"] = {{"type", "longrope"}, {"long_factor", factors("rope_factors_long.weight")},
                           {"short_factor", factors("rope_factors_short.weight")},
                           {"attention_factor", *g.get_float("phi3.rope.scaling.attn_factor")}};
    }
    c["num_key_value_heads"] = u("attention.head_count_kv");
    c["rms_norm_eps"] = *g.get_float(a + ".attention.layer_norm_rms_epsilon");
    c["rope_theta"] = *g.get_float(a + ".rope.freq_base");
    c["tie_word_embeddings"] = g.find_tensor("output.weight") == nullptr;
    if (g.get_string(a + ".rope.scaling.type") == "yarn")
      c["rope_scaling"] = {{"type", "yarn"}, {"factor", *g.get_float(a + ".rope.scaling.factor")},
                           {"original_max_position_embeddings", *g.get_uint(a + ".rope.scaling.original_context_length")}};
    if (auto b = g.get_uint("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = *b;
    if (auto e = g.get_uint("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = *e;
  }
  return c;
}

// Writes the HF checkpoint folder for `g`; llama goes into two shards with an index.
void write_checkpoint(const gguf::GgufFile& g, const fs::path& dir) {
  fs::create_directories(dir);
  const std::string arch = g.architecture();
  const auto tensors = hf_tensors(g);
  if (g.get_string("tokenizer.ggml.model") == "llama") {
    std::vector<const HfTensor*> a, b;
    json map = json::object();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const bool first = i < tensors.size() / 2;
      (first ? a : b).push_back(&tensors[i]);
      map[tensors[i].name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    write_file(dir / "model-00001-of-00002.safetensors", safetensors_bytes(a, {{"format", "pt"}}));
    write_file(dir / "model-00002-of-00002.safetensors", safetensors_bytes(b, {{"format", "pt"}}));
    write_file(dir / "model.safetensors.index.json", json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump(2));
    write_file(dir / "tokenizer.model", sentencepiece_model(g));
    // Special tokens by their text; USER_DEFINED pieces (which a SentencePiece model cannot
    // mark) as non-special added tokens, as HF lists them.
    const auto tokens = g.get_string_array("tokenizer.ggml.tokens");
    const auto types = g.get_int_array("tokenizer.ggml.token_type");
    json tc = json::object();
    for (const char* typ : {"unk", "bos", "eos", "pad"}) {
      const auto id = g.get_uint(std::string("tokenizer.ggml.") + (std::string(typ) == "unk" ? "unknown" : std::string(typ) == "pad" ? "padding" : typ) + "_token_id");
      if (id && *id < tokens.size()) tc[std::string(typ) + "_token"] = tokens[*id];
    }
    json added = json::object();
    for (size_t i = 0; i < types.size(); ++i)
      if (types[i] == kUserDefined) added[std::to_string(i)] = {{"content", tokens[i]}, {"special", false}};
    if (!added.empty()) tc["added_tokens_decoder"] = added;
    if (auto t = g.get_string("tokenizer.chat_template")) tc["chat_template"] = *t;
    if (auto b = g.get_bool("tokenizer.ggml.add_bos_token")) tc["add_bos_token"] = *b;
    if (auto e = g.get_bool("tokenizer.ggml.add_eos_token")) tc["add_eos_token"] = *e;
    write_file(dir / "tokenizer_config.json", tc.dump(2));
  } else {
    std::vector<const HfTensor*> all;
    for (const auto& t : tensors) all.push_back(&t);
    write_file(dir / "model.safetensors", safetensors_bytes(all, {{"format", "pt"}}));
    write_file(dir / "tokenizer.json", tokenizer_json(g, arch == "bert").dump());
    if (arch == "bert") {
      write_file(dir / "tokenizer_config.json", json{{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"},
                                                     {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"}, {"do_lower_case", true}}.dump(2));
      write_file(dir / "modules.json", json::array({{{"idx", 0}, {"name", "0"}, {"path", ""}, {"type", "sentence_transformers.models.Transformer"}},
                                                    {{"idx", 1}, {"name", "1"}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}}}).dump());
      fs::create_directories(dir / "1_Pooling");
      write_file(dir / "1_Pooling" / "config.json", json{{"word_embedding_dimension", 64}, {"pooling_mode_cls_token", false},
                                                         {"pooling_mode_mean_tokens", true}}.dump());
    } else {
      write_file(dir / "tokenizer_config.json", json{{"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"},
                                                     {"chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"}}.dump());
    }
  }
  write_file(dir / "config.json", config_json(g).dump(2));
  write_file(dir / "README.md", "---\nlicense: mit\nbase_model:\n- example-org/tiny-base\ntags:\n- test\n---\n# tiny\n");
}

std::string run(const std::string& cmd) {
  std::string out;
  const int rc = test::run_command(cmd, &out, true);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

std::string quoted(const fs::path& p) {
  std::string q(1, '\'');
  q += p.string();
  q += '\'';
  return q;
}

void expect_same_model(const gguf::GgufFile& want, const gguf::GgufFile& got, bool same_types) {
  for (const char* key : {"tokenizer.ggml.model", "general.architecture"})
    EXPECT_EQ(want.get_string(key), got.get_string(key)) << key;
  EXPECT_EQ(want.get_string_array("tokenizer.ggml.tokens"), got.get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(want.get_int_array("tokenizer.ggml.token_type"), got.get_int_array("tokenizer.ggml.token_type"));
  EXPECT_EQ(want.get_float_array("tokenizer.ggml.scores"), got.get_float_array("tokenizer.ggml.scores"));
  EXPECT_EQ(want.get_string_array("tokenizer.ggml.merges"), got.get_string_array("tokenizer.ggml.merges"));
  for (const char* id : {"bos_token_id", "eos_token_id", "unknown_token_id", "seperator_token_id", "padding_token_id",
                         "cls_token_id", "mask_token_id", "add_bos_token", "add_eos_token"}) {
    const std::string key = std::string("tokenizer.ggml.") + id;
    if (want.has(key) && want.find(key)->is_integer() && want.find(key)->as_uint() == 0xffffffffu) {
      EXPECT_FALSE(got.has(key)) << key << ": -1 (none) in the original; the converter writes no id";
      continue;
    }
    EXPECT_EQ(want.has(key), got.has(key)) << key;
    if (want.has(key) && got.has(key)) {
      EXPECT_EQ(want.find(key)->to_json(), got.find(key)->to_json()) << key;
    }
  }
  EXPECT_EQ(got.get_string("general.license"), "mit");
  EXPECT_EQ(got.get_string("general.base_model.0.organization"), "example-org");
  EXPECT_EQ(got.get_string("general.base_model.0.repo_url"), "https://huggingface.co/example-org/tiny-base");
  size_t weights = 0;
  for (const auto& t : want.tensors()) weights += t.name != "rope_freqs.weight";
  EXPECT_EQ(weights, got.tensors().size());
  for (const auto& t : want.tensors()) {
    if (t.name == "rope_freqs.weight") continue;
    const auto* u = got.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.dims, u->dims) << t.name;
    if (same_types) {
      EXPECT_EQ(t.type, u->type) << t.name;
      if (t.type == u->type) {
        EXPECT_EQ(0, std::memcmp(t.data, u->data, t.n_bytes)) << t.name << ": bytes differ";
      }
    }
  }
}

std::string with_header(const std::string& header, size_t data_bytes);

struct Case {
  const char* model;
  const char* outtype;
};

// The original's hyperparameters that the checkpoint's config.json carries and the converter
// must write back (a key the original has must come back with the same value).
const char* const kRoundTripKeys[] = {
    "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length", "rope.scaling.attn_factor",
    "rope.freq_base", "rope.dimension_count", "attention.key_length", "attention.value_length",
    "attention.sliding_window", "attn_logit_softcapping", "final_logit_softcapping", "expert_count",
    "expert_used_count", "expert_feed_forward_length", "context_length", "feed_forward_length",
    "attention.head_count_kv", "attention.layer_norm_rms_epsilon"};

// GGUF -> HF checkpoint -> `etna convert` -> GGUF: same tensors (bytes), vocabulary and keys,
// and the same logits (or embeddings) from Etna.
void expect_round_trip(const fs::path& model, const std::string& outtype) {
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  const fs::path out = tmp / "converted.gguf";
  const std::string bin = quoted(test::etna_binary());
  run(bin + " convert -q " + quoted(tmp / "hf") + " " + quoted(out) + " --outtype " + outtype);
  auto converted = gguf::GgufFile::open(out.string());
  expect_same_model(*original, *converted, true);
  for (const char* k : kRoundTripKeys) {
    const std::string key = original->architecture() + "." + k;
    if (!original->has(key)) continue;
    EXPECT_TRUE(converted->has(key)) << key;
    if (converted->has(key)) {
      EXPECT_EQ(original->find(key)->to_json(), converted->find(key)->to_json()) << key;
    }
  }
  for (const char* t : {"rope_factors_long.weight", "rope_factors_short.weight"}) {
    const auto* a = original->find_tensor(t);
    if (!a) continue;
    const auto* b = converted->find_tensor(t);
    ASSERT_NE(b, nullptr) << t;
    EXPECT_EQ(0, std::memcmp(a->data, b->data, a->n_bytes)) << t;
  }
  if (original->architecture() == "bert") {
    const std::string texts = " 'hello world' 'The quick brown fox jumps over the lazy dog.' 'unaffable naïveté'";
    EXPECT_EQ(run(bin + " embed -m " + quoted(model) + texts), run(bin + " embed -m " + quoted(out) + texts));
    return;
  }
  // Gemma's converted vocabulary adds no dummy space prefix (as the peer writes it); the shared
  // file leaves the llama default (add one). The same tokens come from the prompt with the
  // space written out.
  const bool no_prefix = !original->has("tokenizer.ggml.add_space_prefix") &&
                         converted->get_bool("tokenizer.ggml.add_space_prefix") == std::optional<bool>(false);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  std::string want, got;
  const int rc_want = test::run_command(bin + " logits -m " + quoted(model) + " -p '" + text + "' --top 40", &want, true);
  const int rc_got = test::run_command(
      bin + " logits -m " + quoted(out) + " -p '" + (no_prefix ? " " : "") + text + "' --top 40", &got, true);
  if (rc_want != 0 && want.find("not supported") != std::string::npos) {
    // This build cannot run the original yet (e.g. YaRN): the converted file must be refused alike.
    EXPECT_NE(rc_got, 0);
    EXPECT_EQ(want.substr(want.rfind(": ")), got.substr(got.rfind(": "))) << got;
    std::printf("note: %s cannot run in this build (%s); logits not compared\n", model.c_str(), want.c_str());
  } else {
    EXPECT_EQ(rc_want, 0) << want;
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(want, got);
  }
}

class ConvertRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(ConvertRoundTrip, GivesTheOriginalsLogits) {
  ETNA_REQUIRE_SHARED(model, std::string("models/") + GetParam().model);
  expect_round_trip(model, GetParam().outtype);
}

INSTANTIATE_TEST_SUITE_P(Shared, ConvertRoundTrip,
                         ::testing::Values(Case{"tiny-llama-spm-f32.gguf", "f32"}, Case{"tiny-qwen2-gpt2-q8_0.gguf", "q8_0"},
                                           Case{"../next/models/tiny-qwen2-yarn-f32.gguf", "f32"},
                                           Case{"tiny-bert-bge-f32.gguf", "f32"},
                                           Case{"../next/models/tiny-qwen3-f32.gguf", "f32"},
                                           Case{"../next/models/tiny-gemma2-f32.gguf", "f32"},
                                           Case{"../next/models/tiny-gemma3-f32.gguf", "f32"},
                                           Case{"../next/models/tiny-phi3-f32.gguf", "f32"}),
                         [](const auto& info) {
                           std::string n = fs::path(info.param.model).filename().string();
                           n = n.substr(5, n.rfind('-') - 5);
                           for (auto& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

// A copy of `in` whose tensors pass through `edit` (which may rename, drop or add them) and
// whose metadata keys pass through `key` (empty name: dropped).
struct EditedTensor {
  std::string name;
  std::vector<uint64_t> dims;
  std::vector<float> data;
};
void write_edited(const gguf::GgufFile& in, const fs::path& out, const std::function<std::string(const std::string&)>& key,
                  const std::vector<std::pair<std::string, gguf::Value>>& extra,
                  const std::function<void(const gguf::TensorInfo&, std::vector<EditedTensor>&)>& edit) {
  gguf::GgufWriter w;
  for (const auto& [k, v] : in.metadata())
    if (const std::string n = key(k); !n.empty()) w.set(n, v);
  for (const auto& [k, v] : extra) w.set(k, v);
  std::vector<EditedTensor> tensors;
  for (const auto& t : in.tensors()) edit(t, tensors);
  for (const auto& t : tensors) w.add_tensor(t.name, t.dims, GgmlType::F32, t.data.data());
  w.write(out.string());
}

void keep(const gguf::TensorInfo& t, std::vector<EditedTensor>& out) {
  out.push_back({t.name, t.dims, to_floats(t)});
}

// Mixtral: the shared file without its hand-set rope_freqs.weight (a Mixtral checkpoint has
// none); w1/w2/w3 per expert stack back into ffn_gate/down/up_exps, q/k permuted as llama.
TEST(Convert, MixtralExpertsStack) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-mixtral-moe-f32.gguf");
  test::TempDir tmp;
  auto in = gguf::GgufFile::open(model.string());
  write_edited(*in, tmp / "mixtral.gguf", [](const std::string& k) { return k; }, {},
               [](const gguf::TensorInfo& t, std::vector<EditedTensor>& out) {
                 if (t.name != "rope_freqs.weight") keep(t, out);
               });
  expect_round_trip(tmp / "mixtral.gguf", "f32");
}

// Qwen3-MoE: built here from the shared qwen3 model, each layer's dense feed-forward turned
// into 4 distinct experts (2 used) with a random router.
TEST(Convert, Qwen3MoeExpertsStack) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-qwen3-f32.gguf");
  test::TempDir tmp;
  auto in = gguf::GgufFile::open(model.string());
  const uint64_t n_ff = *in->get_uint("qwen3.feed_forward_length");
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  write_edited(
      *in, tmp / "qwen3moe.gguf",
      [](const std::string& k) {
        if (k == "general.architecture") return k;
        return k.rfind("qwen3.", 0) == 0 ? "qwen3moe." + k.substr(6) : k;
      },
      {{"general.architecture", gguf::Value::string("qwen3moe")},
       {"qwen3moe.expert_count", gguf::Value::unsigned_int(gguf::ValueType::UINT32, 4)},
       {"qwen3moe.expert_used_count", gguf::Value::unsigned_int(gguf::ValueType::UINT32, 2)},
       {"qwen3moe.expert_feed_forward_length", gguf::Value::unsigned_int(gguf::ValueType::UINT32, n_ff)}},
      [&](const gguf::TensorInfo& t, std::vector<EditedTensor>& out) {
        const auto pos = t.name.find(".ffn_");
        const bool dense = pos != std::string::npos && t.name.find("_norm") == std::string::npos;
        if (!dense) return keep(t, out);
        const std::string prefix = t.name.substr(0, pos + 1), part = t.name.substr(pos + 1, t.name.find(".weight") - pos - 1);
        EditedTensor e{prefix + part + "_exps.weight", {t.dims[0], t.dims[1], 4}, {}};
        const std::vector<float> w = to_floats(t);
        for (int x = 0; x < 4; ++x)
          for (float v : w) e.data.push_back(x == 0 ? v : v + noise(rng));
        out.push_back(std::move(e));
        if (part == "ffn_gate") {
          EditedTensor r{prefix + "ffn_gate_inp.weight", {t.dims[0], 4}, {}};
          for (uint64_t i = 0; i < t.dims[0] * 4; ++i) r.data.push_back(noise(rng) * 10.0f);
          out.push_back(std::move(r));
        }
      });
  expect_round_trip(tmp / "qwen3moe.gguf", "f32");

  // The same checkpoint with one expert missing, or with unnormalised expert weights, is refused.
  auto moe = gguf::GgufFile::open((tmp / "qwen3moe.gguf").string());
  write_checkpoint(*moe, tmp / "hf");
  std::vector<HfTensor> kept;
  {
    const SafetensorsModel st = SafetensorsModel::open_dir((tmp / "hf").string());
    for (const StTensor* t : st.tensors())
      if (t->name != "model.layers.1.mlp.experts.3.up_proj.weight") kept.push_back({t->name, t->shape, st_to_f32(*t)});
  }
  std::vector<const HfTensor*> ptrs;
  for (const auto& t : kept) ptrs.push_back(&t);
  write_file(tmp / "hf" / "model.safetensors", safetensors_bytes(ptrs));
  auto message = [&] {
    try {
      convert_hf_model((tmp / "hf").string(), (tmp / "x.gguf").string(), ConvertOptions{"f32", ""});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message().find("'blk.1.ffn_up_exps.weight' has 3 of the 4 experts"), std::string::npos) << message();
  json cfg = read_json_file(tmp / "hf" / "config.json", true);
  cfg["norm_topk_prob"] = false;
  write_file(tmp / "hf" / "config.json", cfg.dump());
  EXPECT_NE(message().find("norm_topk_prob false"), std::string::npos) << message();
  EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

// Llama 3 style: byte-level BPE tokenizer.json with the Llama 3 split regex -> gpt2 / llama-bpe.
// The shared file's rope_freqs.weight holds hand-set factors no rope_scaling block yields, so it
// is left out; everything else (tensors, vocabulary, tokenisation) must come back unchanged.
TEST(Convert, Llama3BpeTokenizer) {
  ETNA_REQUIRE_SHARED(model, "next/models/tiny-llama3-bpe-f32.gguf");
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  const fs::path out = tmp / "l3.gguf";
  convert_hf_model((tmp / "hf").string(), out.string(), ConvertOptions{"f32", ""});
  auto g = gguf::GgufFile::open(out.string());
  EXPECT_EQ(g->get_string("tokenizer.ggml.pre"), "llama-bpe");
  expect_same_model(*original, *g, true);
  const std::string bin = quoted(test::etna_binary()), text = " -- 'Hello world, it is 2024!  Tabs\tand  spaces.'";
  EXPECT_EQ(run(bin + " tokenize -m " + quoted(model) + text), run(bin + " tokenize -m " + quoted(out) + text));
}

// F16 output: matrices F16 (as the peer's default), norms F32; the model still runs.
TEST(Convert, F16OutputKeepsNormsF32) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-llama-spm-f32.gguf");
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  convert_hf_model((tmp / "hf").string(), (tmp / "f16.gguf").string(), ConvertOptions{});
  auto g = gguf::GgufFile::open((tmp / "f16.gguf").string());
  expect_same_model(*original, *g, false);
  EXPECT_EQ(g->find_tensor("blk.0.attn_q.weight")->type, GgmlType::F16);
  EXPECT_EQ(g->find_tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
  EXPECT_EQ(g->get_uint("general.file_type"), 1u);
  run(quoted(test::etna_binary()) + " logits -m " + quoted(tmp / "f16.gguf") + " -p 'Once upon a time' --top 5");
}

// Llama 3 rope scaling becomes rope_freqs.weight, computed as the peer's converter does.
TEST(Convert, Llama3RopeFactors) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-llama-spm-f32.gguf");
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  json cfg = read_json_file(tmp / "hf" / "config.json", true);
  cfg["rope_theta"] = 500000.0;
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
  write_file(tmp / "hf" / "config.json", cfg.dump());
  convert_hf_model((tmp / "hf").string(), (tmp / "l3.gguf").string(), ConvertOptions{"f32", ""});
  auto g = gguf::GgufFile::open((tmp / "l3.gguf").string());
  const auto* rf = g->find_tensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  ASSERT_EQ(rf->dims, std::vector<uint64_t>{8});  // head_dim 16 / 2
  std::vector<float> f(8);
  std::memcpy(f.data(), rf->data, 32);
  // Wavelengths 2π·500000^(i/16): the fastest dimensions keep factor 1, the slowest get 8.
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[7], 8.0f);
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]);
}

// MistralForCausalLM is written as llama, as the peer does; same weights, same logits.
TEST(Convert, MistralIsLlama) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-llama-spm-f32.gguf");
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  json cfg = read_json_file(tmp / "hf" / "config.json", true);
  cfg["architectures"] = {"MistralForCausalLM"};
  write_file(tmp / "hf" / "config.json", cfg.dump());
  const auto s = convert_hf_model((tmp / "hf").string(), (tmp / "m.gguf").string(), ConvertOptions{"f32", "tiny-mistral"});
  EXPECT_EQ(s.architecture, "llama");
  auto g = gguf::GgufFile::open((tmp / "m.gguf").string());
  EXPECT_EQ(g->get_string("general.name"), "tiny-mistral");
  expect_same_model(*original, *g, true);
}

// Through the binary: a hostile shard gives one line on stderr and a non-zero exit, no file.
TEST(Convert, BinaryReportsACorruptShardInOneLine) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  test::TempDir tmp;
  auto original = gguf::GgufFile::open(model.string());
  write_checkpoint(*original, tmp / "hf");
  write_file(tmp / "hf" / "model.safetensors", with_header(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", 16));
  std::string out;
  const int rc = test::run_command(quoted(test::etna_binary()) + " convert " + quoted(tmp / "hf") + " " +
                                       quoted(tmp / "x.gguf") + " 2>&1 >/dev/null", &out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("out of range"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

TEST(Convert, RefusesWhatItDoesNotKnow) {
  test::TempDir tmp;
  fs::create_directories(tmp / "m");
  write_file(tmp / "m" / "config.json", R"({"architectures": ["MambaForCausalLM"]})");
  try {
    convert_hf_model((tmp / "m").string(), (tmp / "x.gguf").string(), {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MambaForCausalLM"), std::string::npos) << e.what();
  }
  EXPECT_THROW(convert_hf_model((tmp / "m").string(), (tmp / "x.gguf").string(), ConvertOptions{"q4_0", ""}), Error);
  EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

// ---- hostile safetensors ----

std::string expect_corrupt(const std::string& bytes) {
  try {
    SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted";
  return "";
}

std::string with_header(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

TEST(Safetensors, ReadsF32F16Bf16) {
  std::string data(4 + 2 + 2, '\0');
  const float one = 1.5f;
  std::memcpy(&data[0], &one, 4);
  const uint16_t h = fp32_to_fp16(-2.0f), b = fp32_to_bf16(3.0f);
  std::memcpy(&data[4], &h, 2);
  std::memcpy(&data[6], &b, 2);
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F16","shape":[1,1],"data_offsets":[4,6]},)"
                             R"("c":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},"__metadata__":{"format":"pt"}})";
  std::string bytes = with_header(header, 0) + data;
  auto f = SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "ok");
  ASSERT_EQ(f->tensors().size(), 3u);
  std::map<std::string, float> v;
  for (const auto& t : f->tensors()) v[t.name] = st_to_f32(t)[0];
  EXPECT_EQ(v["a"], 1.5f);
  EXPECT_EQ(v["b"], -2.0f);
  EXPECT_EQ(v["c"], 3.0f);
  EXPECT_EQ(f->metadata().at("format"), "pt");
}

TEST(Safetensors, HostileFilesGiveOneClearError) {
  EXPECT_NE(expect_corrupt("abc").find("shorter than the 8-byte header length"), std::string::npos);
  std::string huge(8, '\xff');
  EXPECT_NE(expect_corrupt(huge + "{}").find("exceeds"), std::string::npos);
  std::string past(8, '\0');
  past[0] = 100;
  EXPECT_NE(expect_corrupt(past + "{}").find("runs past the end"), std::string::npos);
  EXPECT_NE(expect_corrupt(with_header("{not json", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)).find("out of range"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,0]}})", 8)).find("out of range"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)).find("need 12"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", 4)).find("unknown dtype 'Q9'"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4)).find("F32, F16 and BF16 only"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("negative"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4))
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)).find("overlap"),
            std::string::npos);
  EXPECT_NE(expect_corrupt(with_header(R"({"a":{"dtype":"F32","shape":[1]}})", 4)).find("lacks"), std::string::npos);
}

TEST(Safetensors, ShardIndexMustMatchTheShards) {
  test::TempDir tmp;
  HfTensor a{"a", {1}, {1.0f}}, b{"b", {1}, {2.0f}};
  write_file(tmp / "s1.safetensors", safetensors_bytes({&a}));
  write_file(tmp / "model.safetensors.index.json", json{{"weight_map", {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}}}}.dump());
  EXPECT_THROW(SafetensorsModel::open_dir(tmp.path().string()), Error);  // b listed but absent
  write_file(tmp / "model.safetensors.index.json", json{{"weight_map", {{"a", "../etc/passwd"}}}}.dump());
  EXPECT_THROW(SafetensorsModel::open_dir(tmp.path().string()), Error);
  write_file(tmp / "s2.safetensors", safetensors_bytes({&b}));
  write_file(tmp / "model.safetensors.index.json", json{{"weight_map", {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}}}.dump());
  auto m = SafetensorsModel::open_dir(tmp.path().string());
  EXPECT_EQ(m.n_files(), 2u);
  EXPECT_EQ(st_to_f32(*m.find("b"))[0], 2.0f);
}

TEST(SentencePiece, MalformedProtobufIsRefused) {
  EXPECT_THROW(parse_sentencepiece_model("\x0a\x7f", "t.model"), Error);
  EXPECT_THROW(parse_sentencepiece_model("", "t.model"), Error);
  EXPECT_THROW(parse_sentencepiece_model(std::string("\x0a\x02\x18\x09", 4), "t.model"), Error);
}

}  // namespace
}  // namespace etna::hub
