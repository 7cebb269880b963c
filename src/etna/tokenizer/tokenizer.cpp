// Tokenizer: special-token splitting, BOS/EOS rules and detokenisation shared by every vocabulary
// kind, following llama.cpp (llama_vocab::impl::tokenize / token_to_piece / detokenize).
#include "etna/tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>

#include "etna/base/error.h"
#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {
namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// llama.cpp's clean_up_tokenization_spaces: " ." -> ".", " ' " -> "'", " 's" -> "'s" (and 'm 're 've).
std::string clean_spaces(std::string t) {
  if (t.size() < 2) return t;
  std::string o;
  o.reserve(t.size());
  o += t[0];
  for (size_t i = 1; i < t.size(); ++i) {
    const char x = t[i];
    if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) o.pop_back();
    o += x;
  }
  t.swap(o);
  o.clear();
  o += t[0];
  for (size_t i = 1; i < t.size(); ++i) {
    const char x = t[i];
    if (x == '\'' && i + 1 < t.size() && t[i - 1] == ' ' && t[i + 1] == ' ') {
      o.pop_back();
      t[++i] = '\0';  // the space after is skipped; a marker so it never matches below
    }
    o += x;
  }
  t.swap(o);
  o.clear();
  if (t.empty()) return t;
  o += t[0];
  for (size_t i = 1; i < t.size(); ++i) {
    const char x = t[i];
    if (t[i - 1] == ' ' && x == '\'' && i + 1 < t.size()) {
      const char x1 = t[i + 1];
      if (x1 == 's' || x1 == 'm') {
        o.pop_back();
      } else if (i + 2 < t.size()) {
        const char x2 = t[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) o.pop_back();
      }
    }
    o += x;
  }
  return o;
}

// Splits `pending` into complete, valid UTF-8 (returned; invalid bytes become U+FFFD, one per
// maximal ill-formed subsequence) and an incomplete tail left in `pending`. With `final`, the
// tail is replaced too.
std::string take_complete_utf8(std::string& pending, bool final) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(pending.size());
  size_t i = 0;
  const size_t n = pending.size();
  while (i < n) {
    const auto b = static_cast<unsigned char>(pending[i]);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t got = 0;  // continuation bytes present and valid
    bool bad = false;
    while (got < need) {
      if (i + 1 + got >= n) break;
      const auto c = static_cast<unsigned char>(pending[i + 1 + got]);
      const bool ok = got == 0 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) {
        bad = true;
        break;
      }
      ++got;
    }
    if (got == need) {
      out.append(pending, i, need + 1);
      i += need + 1;
    } else if (bad || final) {
      out += kReplacement;
      i += got + 1;
    } else {
      break;  // incomplete: wait for more bytes
    }
  }
  pending.erase(0, i);
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  Vocab vocab;  // the encoder refers to this copy, so copies of a Tokenizer stay valid
  std::unique_ptr<Encoder> encoder;
  std::vector<Token> specials;  // control, user-defined and unknown tokens, longest text first
  std::vector<uint8_t> lstrip, rstrip;
  bool clean_spaces = false;

  Impl(const Vocab& v, const std::string& model_name) : vocab(v) {
    switch (vocab.kind) {
      case VocabKind::spm: encoder = make_spm_encoder(vocab); break;
      case VocabKind::bpe: encoder = make_bpe_encoder(vocab); break;
      case VocabKind::wpm: encoder = make_wpm_encoder(vocab); break;
      case VocabKind::none:
        fail(ErrorKind::unsupported, "this model has no vocabulary (tokenizer.ggml.model is '{}')", vocab.model);
    }
    if (vocab.types.size() != vocab.tokens.size())
      fail(ErrorKind::internal, "vocabulary has {} token types for {} tokens", vocab.types.size(), vocab.tokens.size());
    for (size_t i = 0; i < vocab.size(); ++i) {
      const TokenType t = vocab.types[i];
      if (t == TokenType::control || t == TokenType::user_defined || t == TokenType::unknown)
        specials.push_back(static_cast<Token>(i));
    }
    std::stable_sort(specials.begin(), specials.end(), [&](Token a, Token b) {
      return vocab.tokens[a].size() > vocab.tokens[b].size();
    });

    // Per-token whitespace stripping around special tokens, which llama.cpp sets by model name.
    lstrip.assign(vocab.size(), 0);
    rstrip.assign(vocab.size(), 0);
    const std::string name = lower(model_name);
    auto set = [&](std::vector<uint8_t>& flags, const char* text, uint8_t value) {
      if (auto t = vocab.find(text)) flags[*t] = value;
    };
    if (vocab.pre.find("jina-v2-") != std::string::npos) {
      set(lstrip, "<mask>", 1);
    } else if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
      for (Token t : specials) rstrip[t] = 1;
      set(rstrip, "</s>", 1);
      for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) set(rstrip, text, 0);
    }

    if (vocab.kind == VocabKind::wpm) {
      clean_spaces = true;
    } else if (vocab.kind == VocabKind::bpe) {
      static const char* kKeepSpaces[] = {"deepseek-llm", "deepseek-coder", "deepseek-v3", "command-r", "qwen2",
                                          "poro-chat",    "viking",         "tekken",      "smollm",    "chameleon"};
      clean_spaces = std::none_of(std::begin(kKeepSpaces), std::end(kKeepSpaces),
                                  [&](const char* p) { return vocab.pre == p; });
    }
  }
};

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::GgufFile& file) {
  Vocab vocab = Vocab::from_gguf(file);
  if (vocab.kind == VocabKind::none)
    fail(ErrorKind::unsupported, "{}: this model has no vocabulary (tokenizer.ggml.model is '{}')", file.path(),
         vocab.model);
  const std::string name = file.get_string("general.name").value_or("");
  auto tok = std::make_unique<Tokenizer>(std::move(vocab));
  tok->impl_ = std::make_shared<const Impl>(tok->vocab_, name);
  return tok;
}

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)), impl_(std::make_shared<const Impl>(vocab_, "")) {}

std::vector<Token> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const Vocab& v = impl_->vocab;

  // Fragments: raw text (token == kNoToken) or one special token, in order.
  struct Fragment {
    Token token;
    size_t off, len;
  };
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (Token sp : impl_->specials) {
    const TokenType type = v.types[sp];
    if (!options.parse_special && (type == TokenType::control || type == TokenType::unknown)) continue;
    const std::string& st = v.tokens[sp];
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    next.reserve(frags.size() + 8);
    for (const Fragment& f : frags) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      size_t off = f.off, len = f.len;
      while (true) {
        const size_t m = text.substr(off, len).find(st);
        if (m == std::string_view::npos) {
          next.push_back({kNoToken, off, len});
          break;
        }
        size_t left_len = m;
        if (impl_->lstrip[sp])
          while (left_len > 0 && is_ascii_space(text[off + left_len - 1])) --left_len;
        if (left_len > 0) next.push_back({kNoToken, off, left_len});
        next.push_back({sp, 0, 0});
        size_t right_off = off + m + st.size();
        size_t right_len = off + len - right_off;
        if (impl_->rstrip[sp])
          while (right_len > 0 && is_ascii_space(text[right_off])) ++right_off, --right_len;
        if (right_len == 0) break;
        off = right_off;
        len = right_len;
      }
    }
    frags.swap(next);
  }

  std::vector<Token> out;
  out.reserve(text.size() / 3 + 4);
  const bool wpm = v.kind == VocabKind::wpm;
  if (options.add_special) {
    if (wpm) out.push_back(v.cls);
    else if (v.add_bos) out.push_back(v.bos);
  }
  bool prev_special = true;  // SentencePiece prefixes a space at the start and after each special token
  for (const Fragment& f : frags) {
    if (f.token != kNoToken) {
      out.push_back(f.token);
      prev_special = true;
    } else {
      impl_->encoder->encode(text.substr(f.off, f.len), prev_special, out);
      prev_special = false;
    }
  }
  if (options.add_special) {
    if (wpm) out.push_back(v.sep);
    else if (v.add_eos) out.push_back(v.eos);
  }
  return out;
}

std::string Tokenizer::token_to_piece(Token t, bool render_special) const {
  const Vocab& v = impl_->vocab;
  if (t < 0 || static_cast<size_t>(t) >= v.size())
    fail(ErrorKind::invalid_argument, "token id {} is outside the vocabulary of {} tokens", t, v.size());
  switch (v.types[t]) {
    case TokenType::control:
    case TokenType::unknown: return render_special ? v.tokens[t] : std::string();
    case TokenType::user_defined: return v.tokens[t];
    case TokenType::normal:
    case TokenType::byte: return impl_->encoder->token_to_piece(t);
    default: return {};  // unused / undefined tokens print nothing, as in llama.cpp
  }
}

std::string Tokenizer::decode(const std::vector<Token>& tokens, bool remove_leading_space) const {
  const Vocab& v = impl_->vocab;
  std::string out;
  // The space SentencePiece prefixed to the text shows up in the first visible piece (after BOS
  // and any other control tokens, which print nothing).
  bool strip = remove_leading_space && v.add_space_prefix;
  for (Token t : tokens) {
    std::string piece = token_to_piece(t);
    if (strip && !piece.empty()) {
      if (piece[0] == ' ') piece.erase(0, 1);
      strip = false;
    }
    out += piece;
  }
  return impl_->clean_spaces ? clean_spaces(std::move(out)) : out;
}

std::string Detokenizer::push(Token t) {
  const Vocab& v = tokenizer_.vocab();
  std::string piece = tokenizer_.token_to_piece(t);
  if (first_) {
    first_ = false;
    // A stream that starts with BOS is a whole sequence: drop the space SentencePiece put after it
    // (from the first visible piece). Other streams are continuations and keep their spaces.
    if (t == v.bos && v.add_space_prefix) strip_space_ = true;
  } else if (strip_space_ && !piece.empty()) {
    if (piece[0] == ' ') piece.erase(0, 1);
    strip_space_ = false;
  }
  pending_ += piece;
  return take_complete_utf8(pending_, false);
}

std::string Detokenizer::flush() { return take_complete_utf8(pending_, true); }

}  // namespace etna::tokenizer
