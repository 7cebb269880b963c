#include "etna/hub/convert_vocab.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "etna/base/error.h"

namespace etna::hub {
namespace fs = std::filesystem;
using gguf::Value;
using gguf::ValueType;
using nlohmann::json;

json read_json_file(const fs::path& path, bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (required) fail(ErrorKind::not_found, "{}: missing (etna convert needs it)", path.string());
    return json();
  }
  try {
    return json::parse(in);
  } catch (const std::exception& e) {
    fail(ErrorKind::corrupt, "{}: not valid JSON ({})", path.string(), e.what());
  }
}

namespace {

// A protobuf reader just large enough for sentencepiece_model.proto.
struct Pb {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& name;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) fail(ErrorKind::corrupt, "{}: truncated protobuf varint", name);
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(ErrorKind::corrupt, "{}: protobuf varint longer than 10 bytes", name);
  }
  std::pair<const uint8_t*, size_t> bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end - p)) fail(ErrorKind::corrupt, "{}: protobuf field runs past the end", name);
    const uint8_t* b = p;
    p += n;
    return {b, static_cast<size_t>(n)};
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end - p < 8) fail(ErrorKind::corrupt, "{}: truncated protobuf", name); p += 8; break;
      case 2: bytes(); break;
      case 5: if (end - p < 4) fail(ErrorKind::corrupt, "{}: truncated protobuf", name); p += 4; break;
      default: fail(ErrorKind::corrupt, "{}: protobuf wire type {} is not valid here", name, wire);
    }
  }
};

// tokenizer_config.json's "<typ>_token": a string or an AddedToken object.
std::optional<std::string> token_text(const json& tc, const std::string& key) {
  if (!tc.is_object() || !tc.contains(key)) return std::nullopt;
  const json& v = tc[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

const char* const kSpecialTypes[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};

// gguf-py's SpecialVocab: ids named by tokenizer_config.json (through tokenizer.json's added
// tokens, then the vocabulary), then config.json's <typ>_token_id, then generation_config.json;
// add_bos/add_eos and the chat template(s) from tokenizer_config.json.
void load_special(Vocab& v, const fs::path& dir, const json& config, const json& tokenizer_json) {
  const json tc = read_json_file(dir / "tokenizer_config.json", false);
  std::map<std::string, uint32_t> added;
  if (tokenizer_json.is_object() && tokenizer_json.contains("added_tokens") && tokenizer_json["added_tokens"].is_array())
    for (const auto& t : tokenizer_json["added_tokens"])
      if (t.is_object() && t.contains("content") && t["content"].is_string() && t.contains("id") && t["id"].is_number_unsigned())
        added[t["content"].get<std::string>()] = t["id"].get<uint32_t>();
  auto set = [&](const std::string& typ, uint64_t id) {
    if (id < v.tokens.size() && !v.special_ids.count(typ)) v.special_ids[typ] = static_cast<uint32_t>(id);
  };
  for (const char* typ : kSpecialTypes) {
    const auto text = token_text(tc, std::string(typ) + "_token");
    if (!text) continue;
    if (auto it = added.find(*text); it != added.end()) { set(typ, it->second); continue; }
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == *text) { set(typ, i); break; }
  }
  const json gc = read_json_file(dir / "generation_config.json", false);
  for (const json* src : {&config, &gc}) {
    if (!src->is_object()) continue;
    for (const char* typ : kSpecialTypes) {
      const std::string key = std::string(typ) + "_token_id";
      if (!src->contains(key)) continue;
      const json& id = (*src)[key];
      if (id.is_number_unsigned()) set(typ, id.get<uint64_t>());
      else if (id.is_array() && !id.empty() && id[0].is_number_unsigned()) set(typ, id[0].get<uint64_t>());
    }
  }
  if (tc.is_object()) {
    if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) v.add_bos = tc["add_bos_token"].get<bool>();
    if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean()) v.add_eos = tc["add_eos_token"].get<bool>();
    if (tc.contains("chat_template")) {
      const json& ct = tc["chat_template"];
      if (ct.is_string()) v.chat_templates.emplace_back("", ct.get<std::string>());
      else if (ct.is_array())
        for (const auto& e : ct)
          if (e.is_object() && e.contains("name") && e["name"].is_string() && e.contains("template") && e["template"].is_string())
            v.chat_templates.emplace_back(e["name"] == "default" ? "" : e["name"].get<std::string>(), e["template"].get<std::string>());
    }
  }
  if (v.chat_templates.empty()) {
    std::ifstream in(dir / "chat_template.jinja", std::ios::binary);
    if (in) v.chat_templates.emplace_back("", std::string(std::istreambuf_iterator<char>(in), {}));
  }
}

uint64_t config_vocab_size(const json& config, uint64_t fallback) {
  return config.contains("vocab_size") && config["vocab_size"].is_number_unsigned() ? config["vocab_size"].get<uint64_t>() : fallback;
}

// tokenizer.json's model.vocab {token: id} into an id-ordered list of `n` entries; holes become
// "[PAD<id>]" tokens of type UNUSED, as the peer pads them.
void fill_from_vocab_object(Vocab& v, const json& vocab, uint64_t n, const std::string& where) {
  v.tokens.assign(n, "");
  v.types.assign(n, kUnused);
  std::vector<char> have(n, 0);
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_unsigned()) fail(ErrorKind::corrupt, "{}: vocabulary id of '{}' is not a non-negative integer", where, tok);
    const uint64_t i = id.get<uint64_t>();
    if (i >= n) fail(ErrorKind::corrupt, "{}: token '{}' has id {} beyond the vocabulary size {}", where, tok, i, n);
    if (have[i]) fail(ErrorKind::corrupt, "{}: two tokens have id {}", where, i);
    have[i] = 1;
    v.tokens[i] = tok;
    v.types[i] = kNormal;
  }
  for (uint64_t i = 0; i < n; ++i)
    if (!have[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
}

// Added tokens: special ones are CONTROL, the others USER_DEFINED (tokens may also sit beyond
// model.vocab, e.g. Qwen's <|im_start|>).
void apply_added_tokens(Vocab& v, const json& tj, const std::string& where, bool user_defined_for_plain) {
  if (!tj.contains("added_tokens") || !tj["added_tokens"].is_array()) return;
  for (const auto& t : tj["added_tokens"]) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_unsigned() || !t.contains("content") || !t["content"].is_string())
      fail(ErrorKind::corrupt, "{}: an added_tokens entry lacks id or content", where);
    const uint64_t id = t["id"].get<uint64_t>();
    if (id >= v.tokens.size()) continue;
    v.tokens[id] = t["content"].get<std::string>();
    const bool special = t.contains("special") && t["special"].is_boolean() && t["special"].get<bool>();
    v.types[id] = special ? kControl : (user_defined_for_plain ? kUserDefined : kNormal);
  }
}

uint64_t vocab_extent(const json& tj) {
  uint64_t n = 0;
  for (const auto& [tok, id] : tj["model"]["vocab"].items())
    if (id.is_number_unsigned()) n = std::max<uint64_t>(n, id.get<uint64_t>() + 1);
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array())
    for (const auto& t : tj["added_tokens"])
      if (t.is_object() && t.contains("id") && t["id"].is_number_unsigned()) n = std::max<uint64_t>(n, t["id"].get<uint64_t>() + 1);
  return n;
}

// The pre-tokenizer, recognised by its regex (the peer hashes the tokenizer's output instead,
// which needs the Python tokenizers library; the regexes identify the same families).
std::string detect_bpe_pre(const json& tj, const std::string& where) {
  const json& pt = tj.contains("pre_tokenizer") ? tj["pre_tokenizer"] : json();
  if (pt.is_object() && pt.value("type", "") == "ByteLevel" && pt.value("use_regex", true)) return "gpt-2";
  std::vector<std::string> regexes;
  if (pt.is_object() && pt.value("type", "") == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array())
    for (const auto& p : pt["pretokenizers"])
      if (p.is_object() && p.value("type", "") == "Split" && p.contains("pattern") && p["pattern"].is_object() &&
          p["pattern"].contains("Regex") && p["pattern"]["Regex"].is_string())
        regexes.push_back(p["pattern"]["Regex"].get<std::string>());
  static const std::string kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (regexes.size() == 1 && regexes[0] == kQwen2) return "qwen2";
  if (regexes.size() == 1 && regexes[0] == kLlama3) return "llama-bpe";
  fail(ErrorKind::unsupported, "{}: the byte-level BPE pre-tokenizer is not one etna convert recognises (GPT-2, "
       "Qwen2 or Llama 3 regex)", where);
}

Vocab load_bpe(const fs::path& dir, const json& config, const json& tj) {
  const std::string where = (dir / "tokenizer.json").string();
  Vocab v;
  v.model = "gpt2";
  v.pre = detect_bpe_pre(tj, where);
  fill_from_vocab_object(v, tj["model"]["vocab"], std::max(config_vocab_size(config, 0), vocab_extent(tj)), where);
  apply_added_tokens(v, tj, where, true);
  if (tj["model"].contains("merges") && tj["model"]["merges"].is_array())
    for (const auto& m : tj["model"]["merges"]) {
      if (m.is_string()) v.merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      else fail(ErrorKind::corrupt, "{}: a merge is neither \"a b\" nor [a, b]", where);
    }
  load_special(v, dir, config, tj);
  return v;
}

Vocab load_sentencepiece(const fs::path& dir, const json& config, const json& tj, const std::string& arch) {
  const fs::path path = dir / "tokenizer.model";
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const auto pieces = parse_sentencepiece_model(bytes, path.string());
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  const uint64_t n = config_vocab_size(config, pieces.size());
  if (n < pieces.size())
    fail(ErrorKind::corrupt, "{}: {} pieces but config.json says vocab_size {}", path.string(), pieces.size(), n);
  for (const auto& p : pieces) {
    v.tokens.push_back(p.piece);
    v.scores.push_back(p.score);
    // The peer keeps UNKNOWN, CONTROL, UNUSED and BYTE and calls everything else NORMAL.
    v.types.push_back(p.type == kUnknown || p.type == kControl || p.type == kUnused || p.type == kByte ? p.type : kNormal);
  }
  // Ids past the pieces (config.json's vocab_size) are padding; the peer's phi3 class marks
  // them UNKNOWN with score -10000, the others UNUSED with -1000.
  const bool phi3 = arch == "phi3";
  for (uint64_t i = pieces.size(); i < n; ++i) {
    v.tokens.push_back("[PAD" + std::to_string(i) + "]");
    v.scores.push_back(phi3 ? -10000.0f : -1000.0f);
    v.types.push_back(phi3 ? kUnknown : kUnused);
  }
  // tokenizer_config.json's added_tokens_decoder overrides pieces, as the peer applies it.
  const json tc = read_json_file(dir / "tokenizer_config.json", false);
  if (tc.is_object() && tc.contains("added_tokens_decoder") && tc["added_tokens_decoder"].is_object())
    for (const auto& [key, t] : tc["added_tokens_decoder"].items()) {
      uint64_t id = 0;
      try { id = std::stoull(key); } catch (...) { fail(ErrorKind::corrupt, "tokenizer_config.json: added token id '{}'", key); }
      if (id >= v.tokens.size() || !t.is_object() || !t.contains("content") || !t["content"].is_string()) continue;
      std::string text = t["content"].get<std::string>();
      const bool special = t.contains("special") && t["special"].is_boolean() && t["special"].get<bool>();
      if (special) {
        v.types[id] = kControl;
      } else {
        for (size_t p; (p = text.find("\xe2\x96\x81")) != std::string::npos;) text.replace(p, 3, " ");
        v.types[id] = kUserDefined;
      }
      v.scores[id] = -1000.0f;
      v.tokens[id] = text;
    }
  load_special(v, dir, config, tj);
  return v;
}

}  // namespace

std::vector<SpPiece> parse_sentencepiece_model(const std::string& bytes, const std::string& name) {
  std::vector<SpPiece> out;
  Pb pb{reinterpret_cast<const uint8_t*>(bytes.data()), reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size(), name};
  while (pb.p < pb.end) {
    const uint64_t key = pb.varint();
    const uint32_t field = static_cast<uint32_t>(key >> 3), wire = key & 7;
    if (field != 1 || wire != 2) { pb.skip(wire); continue; }
    auto [b, n] = pb.bytes();
    Pb sub{b, b + n, name};
    SpPiece piece;
    bool has_piece = false;
    while (sub.p < sub.end) {
      const uint64_t k = sub.varint();
      const uint32_t f = static_cast<uint32_t>(k >> 3), wt = k & 7;
      if (f == 1 && wt == 2) {
        auto [s, len] = sub.bytes();
        piece.piece.assign(reinterpret_cast<const char*>(s), len);
        has_piece = true;
      } else if (f == 2 && wt == 5) {
        if (sub.end - sub.p < 4) fail(ErrorKind::corrupt, "{}: truncated piece score", name);
        std::memcpy(&piece.score, sub.p, 4);
        sub.p += 4;
      } else if (f == 3 && wt == 0) {
        piece.type = static_cast<int32_t>(sub.varint());
        if (piece.type < 1 || piece.type > 6) fail(ErrorKind::corrupt, "{}: piece type {} is not a SentencePiece type", name, piece.type);
      } else {
        sub.skip(wt);
      }
    }
    if (!has_piece) fail(ErrorKind::corrupt, "{}: a SentencePiece entry has no text", name);
    out.push_back(std::move(piece));
    if (out.size() > (1u << 22)) fail(ErrorKind::limit, "{}: more than 4M pieces", name);
  }
  if (out.empty()) fail(ErrorKind::corrupt, "{}: not a SentencePiece model (no pieces)", name);
  return out;
}

Vocab load_decoder_vocab(const fs::path& dir, const json& config, const std::string& arch) {
  const json tj = read_json_file(dir / "tokenizer.json", false);
  // As the peer's llama and qwen2 classes do: SentencePiece first when tokenizer.model is there.
  if (fs::exists(dir / "tokenizer.model")) return load_sentencepiece(dir, config, tj, arch);
  if (!tj.is_object()) fail(ErrorKind::not_found, "{}: no tokenizer.model or tokenizer.json", dir.string());
  if (!tj.contains("model") || !tj["model"].is_object() || !tj["model"].contains("vocab") || !tj["model"]["vocab"].is_object())
    fail(ErrorKind::corrupt, "{}: tokenizer.json has no model.vocab object", dir.string());
  const std::string type = tj["model"].value("type", "");
  if (type != "BPE" || tj["model"].value("byte_fallback", false))
    fail(ErrorKind::unsupported, "{}: tokenizer.json model '{}'{} is not supported without tokenizer.model (etna convert "
         "reads byte-level BPE tokenizer.json, SentencePiece tokenizer.model)", dir.string(), type,
         tj["model"].value("byte_fallback", false) ? " with byte_fallback" : "");
  return load_bpe(dir, config, tj);
}

Vocab load_wordpiece_vocab(const fs::path& dir, const json& config) {
  const json tj = read_json_file(dir / "tokenizer.json", false);
  Vocab v;
  v.model = "bert";
  v.pre = "default";
  const std::string where = (dir / "tokenizer.json").string();
  if (tj.is_object()) {
    if (!tj.contains("model") || !tj["model"].is_object() || tj["model"].value("type", "") != "WordPiece" ||
        !tj["model"].contains("vocab") || !tj["model"]["vocab"].is_object())
      fail(ErrorKind::unsupported, "{}: a bert checkpoint needs a WordPiece model with a vocab object", where);
    fill_from_vocab_object(v, tj["model"]["vocab"], std::max(config_vocab_size(config, 0), vocab_extent(tj)), where);
    apply_added_tokens(v, tj, where, true);
  } else {
    std::ifstream in(dir / "vocab.txt");
    if (!in) fail(ErrorKind::not_found, "{}: no tokenizer.json or vocab.txt", dir.string());
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      v.tokens.push_back(line);
      v.types.push_back(kNormal);
    }
  }
  // The peer's "phantom space" form: word-initial pieces get "▁", "##" continuations lose it.
  for (auto& t : v.tokens) {
    if (t.size() >= 2 && t.front() == '[' && t.back() == ']') continue;
    if (t.rfind("##", 0) == 0) t = t.substr(2);
    else t = "\xe2\x96\x81" + t;
  }
  v.token_type_count = config.contains("type_vocab_size") && config["type_vocab_size"].is_number_unsigned()
                           ? config["type_vocab_size"].get<uint32_t>() : 1;
  // Special tokens are looked up under their original spelling ([CLS] etc. are unchanged).
  load_special(v, dir, config, tj);
  return v;
}

std::optional<uint32_t> sentence_transformers_pooling(const fs::path& dir) {
  const json modules = read_json_file(dir / "modules.json", false);
  if (!modules.is_array()) return std::nullopt;
  for (const auto& m : modules) {
    if (!m.is_object() || m.value("type", "") != "sentence_transformers.models.Pooling") continue;
    const std::string sub = m.value("path", "");
    if (sub.find("..") != std::string::npos) fail(ErrorKind::corrupt, "{}: modules.json path '{}'", dir.string(), sub);
    const json pc = read_json_file(dir / sub / "config.json", true);
    if (pc.value("pooling_mode_mean_tokens", false)) return 1;
    if (pc.value("pooling_mode_cls_token", false)) return 2;
    if (pc.value("pooling_mode_lasttoken", false)) return 3;
    fail(ErrorKind::unsupported, "{}: pooling mode is not mean, cls or last token", (dir / sub / "config.json").string());
  }
  return std::nullopt;
}

void write_vocab(gguf::GgufWriter& w, const Vocab& v) {
  if (v.token_type_count) w.set("tokenizer.ggml.token_type_count", Value::unsigned_int(ValueType::UINT32, *v.token_type_count));
  w.set("tokenizer.ggml.model", Value::string(v.model));
  w.set("tokenizer.ggml.pre", Value::string(v.pre));
  std::vector<Value> tokens, scores, types, merges;
  for (const auto& t : v.tokens) tokens.push_back(Value::string(t));
  for (float s : v.scores) scores.push_back(Value::floating(ValueType::FLOAT32, s));
  for (int32_t t : v.types) types.push_back(Value::signed_int(ValueType::INT32, t));
  for (const auto& m : v.merges) merges.push_back(Value::string(m));
  w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, std::move(tokens)));
  if (!scores.empty()) w.set("tokenizer.ggml.scores", Value::array(ValueType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, std::move(types)));
  if (!merges.empty()) w.set("tokenizer.ggml.merges", Value::array(ValueType::STRING, std::move(merges)));
  static const std::pair<const char*, const char*> kKeys[] = {
      {"bos", "bos_token_id"}, {"eos", "eos_token_id"}, {"unk", "unknown_token_id"}, {"sep", "seperator_token_id"},
      {"pad", "padding_token_id"}, {"cls", "cls_token_id"}, {"mask", "mask_token_id"}};
  for (const auto& [typ, key] : kKeys)
    if (auto it = v.special_ids.find(typ); it != v.special_ids.end())
      w.set(std::string("tokenizer.ggml.") + key, Value::unsigned_int(ValueType::UINT32, it->second));
  if (v.add_bos) w.set("tokenizer.ggml.add_bos_token", Value::boolean(*v.add_bos));
  if (v.add_eos) w.set("tokenizer.ggml.add_eos_token", Value::boolean(*v.add_eos));
  if (v.add_space_prefix) w.set("tokenizer.ggml.add_space_prefix", Value::boolean(*v.add_space_prefix));
  for (const auto& [name, tmpl] : v.chat_templates)
    w.set(name.empty() ? "tokenizer.chat_template" : "tokenizer.chat_template." + name, Value::string(tmpl));
}

}  // namespace etna::hub
