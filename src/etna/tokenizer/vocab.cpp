// Reading tokenizer.ggml.* metadata into a Vocab, with llama.cpp's defaults for each model kind
// (what a file leaves unsaid must mean the same thing here as there).
#include "etna/tokenizer/vocab.h"

#include <array>
#include <cstdint>
#include <string_view>

#include "etna/base/error.h"
#include "etna/base/log.h"

namespace etna::tokenizer {
namespace {

constexpr std::string_view kPrefix = "tokenizer.ggml.";

std::string key_of(std::string_view name) { return std::string(kPrefix) + std::string(name); }

// Texts that end a turn in common chat formats. llama.cpp recognises end-of-generation tokens by
// these texts because converters do not always record them in metadata.
constexpr std::array<std::string_view, 7> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",  // DeepSeek
};
constexpr std::array<std::string_view, 7> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};
// Fill-in-the-middle padding / repository / file separators also stop generation in llama.cpp.
constexpr std::array<std::string_view, 4> kFimEogTexts = {
    "<|fim_pad|>", "<|fim_repo|>", "<|repo_name|>", "<|file_sep|>",
};

VocabKind kind_of(const std::string& model, const std::string& path) {
  if (model == "llama") return VocabKind::spm;
  if (model == "gpt2") return VocabKind::bpe;
  if (model == "bert") return VocabKind::wpm;
  if (model == "no_vocab" || model == "none") return VocabKind::none;
  fail(ErrorKind::unsupported, "{}: tokenizer model '{}' is not supported (Etna reads llama, gpt2 and bert vocabularies)",
       path, model);
}

template <size_t N>
bool one_of(const std::string& text, const std::array<std::string_view, N>& list) {
  for (auto s : list)
    if (text == s) return true;
  return false;
}

}  // namespace

Vocab Vocab::from_gguf(const gguf::GgufFile& file) {
  const std::string& path = file.path();
  Vocab v;

  auto model = file.get_string(key_of("model"));
  if (!model)
    fail(ErrorKind::not_found, "{}: no tokenizer in this file (metadata '{}' is missing)", path, key_of("model"));
  v.model = *model;
  v.kind = kind_of(v.model, path);
  v.pre = file.get_string(key_of("pre")).value_or("");
  if (v.kind == VocabKind::none) return v;

  // Defaults per kind, as llama.cpp sets them before reading the optional keys.
  switch (v.kind) {
    case VocabKind::spm:
      v.bos = 1, v.eos = 2, v.unk = 0;
      v.add_bos = true, v.add_space_prefix = true;
      break;
    case VocabKind::wpm:
      v.bos = 101, v.unk = 100, v.sep = 102, v.pad = 0, v.mask = 103;
      v.add_bos = true;
      break;
    case VocabKind::bpe:
      v.bos = 11, v.eos = 11;
      if (v.pre == "llama3" || v.pre == "llama-v3" || v.pre == "llama-bpe" || v.pre == "falcon3" ||
          v.pre == "tekken" || v.pre == "chameleon")
        v.add_bos = true;
      if (v.pre == "chatglm-bpe") v.bos = kNoToken;
      break;
    case VocabKind::none:
      break;
  }
  if (auto b = file.get_bool(key_of("add_space_prefix"))) v.add_space_prefix = *b;
  if (auto b = file.get_bool(key_of("remove_extra_whitespaces"))) v.remove_extra_whitespaces = *b;

  // Token texts, scores and types.
  v.tokens = file.get_string_array(key_of("tokens"));
  if (v.tokens.empty())
    fail(ErrorKind::corrupt, "{}: metadata '{}' is missing or empty", path, key_of("tokens"));
  if (v.tokens.size() > static_cast<size_t>(INT32_MAX))
    fail(ErrorKind::limit, "{}: {} tokens is more than Etna supports", path, v.tokens.size());
  const size_t n = v.tokens.size();

  v.scores = file.get_float_array(key_of("scores"));
  if (!v.scores.empty() && v.scores.size() != n)
    fail(ErrorKind::corrupt, "{}: metadata '{}' has {} entries but there are {} tokens", path, key_of("scores"),
         v.scores.size(), n);

  const auto types = file.get_int_array(key_of("token_type"));
  if (!types.empty() && types.size() != n)
    fail(ErrorKind::corrupt, "{}: metadata '{}' has {} entries but there are {} tokens", path,
         key_of("token_type"), types.size(), n);
  v.types.assign(n, TokenType::normal);
  for (size_t i = 0; i < types.size(); ++i)
    v.types[i] = (types[i] >= 0 && types[i] <= 6) ? static_cast<TokenType>(types[i]) : TokenType::undefined;

  v.merges = file.get_string_array(key_of("merges"));
  if (v.kind == VocabKind::bpe && !file.has(key_of("merges")))
    fail(ErrorKind::corrupt, "{}: metadata '{}' is missing (a gpt2 vocabulary needs its merges)", path,
         key_of("merges"));

  v.token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (v.tokens[i].empty()) v.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp names them
    auto [it, inserted] = v.token_to_id.emplace(v.tokens[i], static_cast<Token>(i));
    if (!inserted)
      fail(ErrorKind::corrupt, "{}: metadata '{}': token {} repeats the text of token {}", path, key_of("tokens"), i,
           it->second);
  }

  // Special ids. 0xFFFFFFFF (or -1) means "none" in files written by some converters; llama.cpp then
  // keeps its default, and so do we. Any other id outside the vocabulary is an error.
  struct Special {
    const char* key;
    Token* id;
  };
  const Special specials[] = {
      {"bos_token_id", &v.bos},     {"eos_token_id", &v.eos},         {"eot_token_id", &v.eot},
      {"eom_token_id", &v.eom},     {"unknown_token_id", &v.unk},     {"seperator_token_id", &v.sep},
      {"padding_token_id", &v.pad}, {"cls_token_id", &v.cls},         {"mask_token_id", &v.mask},
  };
  bool bos_given = false;
  for (const auto& s : specials) {
    auto value = file.get_int(key_of(s.key));
    if (!value) continue;
    if (*value == -1 || *value == 0xFFFFFFFFll) continue;
    if (*value < 0 || static_cast<uint64_t>(*value) >= n)
      fail(ErrorKind::corrupt, "{}: metadata '{}' = {} is outside the vocabulary of {} tokens", path, key_of(s.key),
           *value, n);
    *s.id = static_cast<Token>(*value);
    if (s.id == &v.bos) bos_given = true;
  }
  // Defaults that do not fit a small vocabulary mean "none".
  for (Token* id : {&v.bos, &v.eos, &v.unk, &v.sep, &v.pad, &v.mask})
    if (*id != kNoToken && static_cast<size_t>(*id) >= n) *id = kNoToken;
  if (v.kind == VocabKind::wpm) {
    if (v.cls == kNoToken) v.cls = v.bos;
    if (!bos_given && v.cls != kNoToken) v.bos = v.cls;  // BERT's BOS is its [CLS]
  }

  if (auto b = file.get_bool(key_of("add_bos_token"))) v.add_bos = *b;
  if (auto b = file.get_bool(key_of("add_eos_token"))) v.add_eos = *b;

  // The newline token: SentencePiece's byte token, GPT-2's "Ċ" (byte 0x0A mapped to U+010A).
  if (v.kind == VocabKind::spm) {
    if (auto t = v.find("<0x0A>")) v.nl = *t;
    else if (auto t2 = v.find("\n")) v.nl = *t2;
    else v.nl = v.pad;
  } else if (v.kind == VocabKind::bpe) {
    if (auto t = v.find("\xC4\x8A")) v.nl = *t;
    else v.nl = v.pad;
  } else {
    v.nl = v.pad;
  }

  // End-of-turn markers recognised by text; llama.cpp also forces them to be control tokens so
  // they are never printed.
  auto force_control = [&](Token t) {
    if (v.types[t] != TokenType::control) {
      log::debug("{}: token {} '{}' looks like a control token; treating it as one", path, t, v.tokens[t]);
      v.types[t] = TokenType::control;
    }
  };
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = v.tokens[i];
    const Token id = static_cast<Token>(i);
    if (v.eot == kNoToken && one_of(text, kEotTexts)) {
      v.eot = id;
      force_control(id);
    }
    if (v.eom == kNoToken && text == "<|eom_id|>") v.eom = id;
    if (one_of(text, kEogTexts) || one_of(text, kFimEogTexts)) force_control(id);
  }

  if (v.add_bos && v.bos == kNoToken && v.kind != VocabKind::wpm)
    fail(ErrorKind::corrupt, "{}: the vocabulary asks for a BOS token but has none ('{}')", path,
         key_of("bos_token_id"));
  if (v.add_eos && v.eos == kNoToken)
    fail(ErrorKind::corrupt, "{}: the vocabulary asks for an EOS token but has none ('{}')", path,
         key_of("eos_token_id"));
  if (v.kind == VocabKind::wpm && (v.cls == kNoToken || v.sep == kNoToken))
    fail(ErrorKind::corrupt, "{}: a bert vocabulary needs [CLS] and [SEP] ('{}', '{}')", path,
         key_of("cls_token_id"), key_of("seperator_token_id"));
  return v;
}

std::optional<Token> Vocab::find(const std::string& text) const {
  auto it = token_to_id.find(text);
  if (it == token_to_id.end()) return std::nullopt;
  return it->second;
}

bool Vocab::is_control(Token t) const {
  return t >= 0 && static_cast<size_t>(t) < types.size() && types[t] == TokenType::control;
}

bool Vocab::is_end_of_generation(Token t) const {
  if (t < 0 || static_cast<size_t>(t) >= tokens.size()) return false;
  if (t == eos || t == eot || t == eom) return true;
  const std::string& text = tokens[t];
  return one_of(text, kEogTexts) || one_of(text, kFimEogTexts);
}

}  // namespace etna::tokenizer
