// WordPiece (BERT) as llama.cpp's llm_tokenizer_wpm computes it on GGUF "bert" vocabularies.
// GGUF stores word-initial pieces with a leading "▁" and continuation pieces bare (BERT's "##"
// removed), so each word is looked up as "▁" + word with greedy longest-match-first; a word
// with any position that matches nothing becomes one [UNK].
//
// Normalisation (BERT's BasicTokenizer): drop NUL, U+FFFD and control characters, canonical
// decomposition (NFD) with combining marks (Mn) removed, simple lower-casing; words end at
// whitespace, and punctuation, ASCII symbols and CJK ideographs are words of their own.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <utf8proc.h>

#include "etna/base/error.h"
#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {
namespace {

constexpr uint32_t kReplacementChar = 0xFFFD;
constexpr std::string_view kWordPrefix = "\xE2\x96\x81";  // U+2581, GGUF's word-start marker

// Decodes the character at text[pos] the way llama.cpp does (lead byte gives the length, only
// continuation bytes are checked) and advances pos; an invalid byte decodes to U+FFFD.
uint32_t decode_utf8(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  size_t length = 0;
  uint32_t cpt = 0;
  if (lead < 0x80) {
    length = 1, cpt = lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2, cpt = lead & 0x1Fu;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, cpt = lead & 0x0Fu;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, cpt = lead & 0x07u;
  }
  if (length == 0 || pos + length > text.size()) {
    pos += 1;
    return kReplacementChar;
  }
  for (size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) {
      pos += 1;
      return kReplacementChar;
    }
    cpt = (cpt << 6) | (byte(pos + i) & 0x3Fu);
  }
  pos += length;
  return cpt <= 0x10FFFF ? cpt : kReplacementChar;
}

void append_utf8(uint32_t cpt, std::string& out) {
  char buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cpt),
                                                  reinterpret_cast<utf8proc_uint8_t*>(buf));
  out.append(buf, static_cast<size_t>(n));
}

// Unicode White_Space, the set llama.cpp splits BERT words on.
bool is_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// CJK ideograph blocks as BERT (and HF's Rust port, whose Extension-E start is 0x2B920) define them.
bool is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

utf8proc_category_t category(uint32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

bool is_control(uint32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
      return true;
    default:
      return false;
  }
}

// Unicode punctuation, plus the ASCII symbols ($ + < = > ^ ` | ~) that BERT also splits off.
bool is_split_char(uint32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
      return c < 0x7F;
    default:
      return is_cjk(c);
  }
}

// Normalises `text` and splits it into words (each non-empty, lower-cased UTF-8).
std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words(1);
  auto finish_word = [&] {
    if (!words.back().empty()) words.emplace_back();
  };
  utf8proc_int32_t decomposed[32];
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t cpt = decode_utf8(text, pos);
    if (is_whitespace(cpt)) {
      finish_word();
      continue;
    }
    if (cpt == 0 || cpt == kReplacementChar || is_control(cpt)) continue;

    int last_boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cpt), decomposed, 32,
                                                 UTF8PROC_DECOMPOSE, &last_boundclass);
    if (n <= 0 || n > 32) {  // cannot happen for a valid code point; keep the character as is
      decomposed[0] = static_cast<utf8proc_int32_t>(cpt);
      n = 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; ++i) {
      const uint32_t c = static_cast<uint32_t>(decomposed[i]);
      if (category(c) == UTF8PROC_CATEGORY_MN) continue;  // strip accents
      const uint32_t lower = static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
      if (is_split_char(c)) {
        finish_word();
        append_utf8(lower, words.back());
        words.emplace_back();
      } else {
        append_utf8(lower, words.back());
      }
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

class WpmEncoder final : public Encoder {
 public:
  explicit WpmEncoder(const Vocab& vocab) : tokens_(vocab.tokens) {
    if (tokens_.empty()) fail(ErrorKind::corrupt, "WordPiece vocabulary has no tokens");
    unk_ = vocab.unk;
    if (unk_ == kNoToken) {
      if (auto t = vocab.find("[UNK]")) unk_ = *t;
    }
    // Later duplicates win, as in llama.cpp's text-to-token map.
    for (size_t i = 0; i < tokens_.size(); ++i) {
      by_text_.insert_or_assign(std::string_view(tokens_[i]), static_cast<Token>(i));
      max_token_len_ = std::max(max_token_len_, tokens_[i].size());
    }
    pieces_.resize(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const TokenType type = i < vocab.types.size() ? vocab.types[i] : TokenType::normal;
      if (type == TokenType::normal) {
        // "▁" marks a word start: it stands for a space.
        std::string piece;
        std::string_view text = tokens_[i];
        for (size_t p = 0; p < text.size();) {
          if (text.substr(p, kWordPrefix.size()) == kWordPrefix) {
            piece += ' ';
            p += kWordPrefix.size();
          } else {
            piece += text[p++];
          }
        }
        pieces_[i] = std::move(piece);
      } else if (type == TokenType::user_defined || type == TokenType::control ||
                 type == TokenType::unknown) {
        pieces_[i] = tokens_[i];
      }
    }
  }

  void encode(std::string_view text, bool /*first_fragment*/, std::vector<Token>& out) const override {
    std::string word;
    for (const std::string& w : split_words(text)) {
      word.assign(kWordPrefix);
      word += w;
      const size_t start = out.size();
      const size_t n = word.size();
      bool ok = true;
      for (size_t i = 0; i < n && ok;) {
        ok = false;
        for (size_t j = std::min(n, i + max_token_len_); j > i; --j) {
          auto it = by_text_.find(std::string_view(word).substr(i, j - i));
          if (it != by_text_.end()) {
            out.push_back(it->second);
            i = j;
            ok = true;
            break;
          }
        }
      }
      if (!ok) {
        out.resize(start);
        if (unk_ != kNoToken) out.push_back(unk_);
      }
    }
  }

  std::string token_to_piece(Token t) const override {
    if (t < 0 || static_cast<size_t>(t) >= pieces_.size()) return {};
    return pieces_[static_cast<size_t>(t)];
  }

 private:
  std::vector<std::string> tokens_;  // owns the texts by_text_ points into
  std::unordered_map<std::string_view, Token> by_text_;
  std::vector<std::string> pieces_;
  size_t max_token_len_ = 0;
  Token unk_ = kNoToken;
};

}  // namespace

std::unique_ptr<Encoder> make_wpm_encoder(const Vocab& vocab) {
  return std::make_unique<WpmEncoder>(vocab);
}

}  // namespace etna::tokenizer
