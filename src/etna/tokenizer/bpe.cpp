// Byte-level BPE (GPT-2 family), as llama.cpp's llm_tokenizer_bpe computes it:
//  1. invalid UTF-8 bytes become U+FFFD (llama.cpp decodes leniently, then re-encodes);
//  2. the pre-tokeniser named by tokenizer.ggml.pre splits the text with a list of regexes
//     applied in sequence (each one re-splits every piece the previous ones produced, and the
//     text between matches stays a piece of its own);
//  3. every piece is mapped byte by byte through GPT-2's byte-to-unicode table and merged by
//     rank (lowest rank first, leftmost first among equal ranks) with a heap over a linked list
//     of symbols, so a piece of n bytes costs O(n log n).
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {
namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 as llama.cpp reads it: a lead byte announces the length, only the continuation bytes'
// top bits are checked; anything else is one invalid byte that decodes to U+FFFD.

constexpr uint32_t kReplacementChar = 0xFFFD;

size_t utf8_sequence_length(unsigned char lead) {
  static constexpr uint8_t kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLength[lead >> 4];
}

// Decodes the character at text[pos] and advances pos (by one byte for an invalid sequence).
uint32_t utf8_decode_lenient(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  const auto continuation_ok = [&](size_t count) {
    if (pos + count >= text.size()) return false;
    for (size_t i = 1; i <= count; ++i) {
      if ((byte(pos + i) & 0xC0) != 0x80) return false;
    }
    return true;
  };
  uint32_t cpt;
  size_t length;
  if (lead < 0x80) {
    cpt = lead;
    length = 1;
  } else if ((lead & 0xE0) == 0xC0 && continuation_ok(1)) {
    cpt = ((lead & 0x1Fu) << 6) | (byte(pos + 1) & 0x3Fu);
    length = 2;
  } else if ((lead & 0xF0) == 0xE0 && continuation_ok(2)) {
    cpt = ((lead & 0x0Fu) << 12) | ((byte(pos + 1) & 0x3Fu) << 6) | (byte(pos + 2) & 0x3Fu);
    length = 3;
  } else if ((lead & 0xF8) == 0xF0 && continuation_ok(3)) {
    cpt = ((lead & 0x07u) << 18) | ((byte(pos + 1) & 0x3Fu) << 12) | ((byte(pos + 2) & 0x3Fu) << 6) |
          (byte(pos + 3) & 0x3Fu);
    length = 4;
  } else {
    pos += 1;
    return kReplacementChar;
  }
  pos += length;
  // Beyond Unicode or a surrogate: not encodable as UTF-8, treat like an invalid byte run.
  if (cpt > 0x10FFFF || (cpt >= 0xD800 && cpt <= 0xDFFF)) return kReplacementChar;
  return cpt;
}

void utf8_append(uint32_t cpt, std::string& out) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

std::string utf8_encode(uint32_t cpt) {
  std::string out;
  utf8_append(cpt, out);
  return out;
}

// The text llama.cpp tokenises: every invalid byte replaced by U+FFFD, overlong forms
// re-encoded canonically. Valid UTF-8 comes back unchanged.
std::string sanitize_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[pos]);
    if (lead < 0x80) {  // fast path for ASCII
      out.push_back(static_cast<char>(lead));
      ++pos;
      continue;
    }
    utf8_append(utf8_decode_lenient(text, pos), out);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode table: printable Latin-1 bytes map to themselves, the other 68 bytes
// to U+0100.. in byte order, so every byte has a visible, non-space character.

struct ByteTable {
  std::array<std::string, 256> byte_to_utf8;
  std::unordered_map<uint32_t, uint8_t> cpt_to_byte;

  ByteTable() {
    auto printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cpt = printable(b) ? static_cast<uint32_t>(b) : next++;
      byte_to_utf8[b] = utf8_encode(cpt);
      cpt_to_byte[cpt] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

std::string byte_encode(std::string_view bytes) {
  const auto& table = byte_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += table.byte_to_utf8[c];
  return out;
}

// Undoes byte_encode. Characters outside the table (never produced by byte_encode, but a
// vocabulary may hold them) pass through as their own UTF-8.
std::string byte_decode(std::string_view text) {
  const auto& table = byte_table();
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const uint32_t cpt = utf8_decode_lenient(text, pos);
    auto it = table.cpt_to_byte.find(cpt);
    if (it != table.cpt_to_byte.end() && cpt != kReplacementChar) {
      out.push_back(static_cast<char>(it->second));
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PCRE2 wrappers (8-bit, UTF + Unicode properties; invalid UTF-8 never matches, never crashes).

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};

class Regex {
 public:
  explicit Regex(const std::string& pattern) : pattern_(pattern) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    const uint32_t options =
        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &error, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      fail(ErrorKind::internal, "pre-tokeniser regex '{}' does not compile at offset {}: {}",
           pattern, error_offset, reinterpret_cast<const char*>(message));
    }
    code_.reset(code);
    // JIT is an optimisation only; the interpreter gives the same matches when it is missing.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  }

  // Splits every piece [offset, offset+length) of `text` into matches and the gaps between
  // them, in order; empty pieces are dropped.
  void split(std::string_view text, const std::vector<std::pair<size_t, size_t>>& pieces,
             std::vector<std::pair<size_t, size_t>>& out) const {
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    if (!md) fail(ErrorKind::internal, "out of memory creating regex match data");
    for (const auto& [offset, length] : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + offset);
      size_t pos = 0;   // search start within the piece
      size_t last = 0;  // end of the previous match
      while (pos < length) {
        const int rc = pcre2_match(code_.get(), subject, length, pos, 0, md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          PCRE2_UCHAR message[256];
          pcre2_get_error_message(rc, message, sizeof(message));
          fail(ErrorKind::internal, "pre-tokeniser regex '{}' failed: {}", pattern_,
               reinterpret_cast<const char*>(message));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t begin = ov[0], end = ov[1];
        if (end == begin) {  // an empty match: step over one character and search again
          pos = begin + utf8_sequence_length(static_cast<unsigned char>(text[offset + begin]));
          continue;
        }
        if (begin > last) out.emplace_back(offset + last, begin - last);
        out.emplace_back(offset + begin, end - begin);
        last = pos = end;
      }
      if (last < length) out.emplace_back(offset + last, length - last);
    }
  }

 private:
  std::string pattern_;
  std::unique_ptr<pcre2_code, CodeDeleter> code_;
};

// ---------------------------------------------------------------------------------------------
// Pre-tokenisers: the regex lists llama.cpp uses for each tokenizer.ggml.pre value.

// The GPT-2 regex. llama.cpp runs it through a hand-written matcher that also accepts the
// trailing `|\s+` alternative, so it is spelled out here.
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kBloom = " ?[^(\\s|.,!?…。，、।۔،)]+";

struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a piece that is itself a token is taken whole (llama3, tekken)
};

PreTokenizerSpec spec_for(const std::string& pre) {
  if (pre.empty() || pre == "default") {
    return {{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
  }
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3") {
    return {{kLlama3}, true};
  }
  if (pre == "dbrx" || pre == "smaug-bpe" || pre == "chatglm-bpe") return {{kLlama3}};
  if (pre == "deepseek-llm") {
    return {{
        "[\r\n]",
        // Cased letters (Unicode LC) of the DeepSeek LLM tokenizer, as code points.
        "\\s?["
        "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
        "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
        "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
        "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
        "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
        "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
        "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"
        "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"
        "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
        "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}"
        "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
        "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
        "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
        "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}"
        "\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
        "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}"
        "\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
        "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
        "]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    }};
  }
  if (pre == "deepseek-coder") {
    return {{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}};
  }
  if (pre == "deepseek-v3") {
    return {{
        "\\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
        " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    }};
  }
  if (pre == "falcon") {
    return {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}};
  }
  if (pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "smollm" ||
      pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    return {{"\\p{N}", kGpt2}};
  }
  if (pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo" || pre == "jais" ||
      pre == "gpt-neox" || pre == "phi-2" || pre == "jina-es" || pre == "jina-de" ||
      pre == "gigachat" || pre == "jina-v1-en" || pre == "jina-v2-es" || pre == "jina-v2-de" ||
      pre == "jina-v2-code" || pre == "roberta-bpe") {
    return {{kGpt2}};
  }
  if (pre == "qwen2" || pre == "stablelm2" || pre == "megrez") return {{kQwen2}};
  if (pre == "poro-chat" || pre == "bloom" || pre == "gpt3-finnish") return {{kBloom}};
  if (pre == "viking") return {{kBloom, "\\p{N}"}};
  if (pre == "tekken") {
    return {{"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
             "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
             "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
            true};
  }
  if (pre == "chameleon") {
    return {{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
             "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", kGpt2}};
  }
  log::warn("tokenizer: unknown pre-tokeniser '{}', using the GPT-2 regex (tokens may differ "
            "from the model's own tokenizer)", pre);
  return {{kGpt2}};
}

// ---------------------------------------------------------------------------------------------

struct Merge {
  uint32_t rank;
  int32_t result;  // symbol id of the merged text
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

class BpeEncoder final : public Encoder {
 public:
  explicit BpeEncoder(const Vocab& vocab) {
    const size_t n = vocab.size();
    if (n == 0) fail(ErrorKind::corrupt, "BPE vocabulary has no tokens");
    n_vocab_ = static_cast<int32_t>(n);
    PreTokenizerSpec spec = spec_for(vocab.pre);
    ignore_merges_ = spec.ignore_merges;
    for (const auto& pattern : spec.regexes) regexes_.emplace_back(pattern);

    // Symbol ids: token ids for texts in the vocabulary, then extra ids for texts that only
    // appear as merge parts or results (llama.cpp merges strings, so such merges still happen).
    std::unordered_map<std::string, int32_t> text_to_symbol;
    text_to_symbol.reserve(n + 1024);
    // Later duplicates win, as in llama.cpp's text-to-token map.
    for (size_t i = 0; i < n; ++i) text_to_symbol.insert_or_assign(vocab.tokens[i], static_cast<int32_t>(i));
    auto symbol_of = [&](const std::string& text) {
      auto [it, inserted] = text_to_symbol.emplace(text, n_vocab_ + static_cast<int32_t>(extra_.size()));
      if (inserted) extra_.push_back(text);
      return it->second;
    };

    for (int b = 0; b < 256; ++b) {
      byte_symbol_[b] = symbol_of(byte_table().byte_to_utf8[b]);
      auto it = text_to_symbol.find(std::string(1, static_cast<char>(b)));
      single_byte_token_[b] = it != text_to_symbol.end() && it->second < n_vocab_ ? it->second : -1;
    }

    merges_.reserve(vocab.merges.size() * 2);
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
      const std::string& merge = vocab.merges[rank];
      const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
      if (space == std::string::npos) continue;  // malformed entry: llama.cpp ignores it too
      const std::string left = merge.substr(0, space);
      const std::string right = merge.substr(space + 1);
      const int32_t l = symbol_of(left);
      const int32_t r = symbol_of(right);
      const int32_t result = symbol_of(left + right);
      merges_.emplace(pair_key(l, r), Merge{static_cast<uint32_t>(rank), result});
    }

    if (ignore_merges_) {
      for (size_t i = 0; i < n; ++i) whole_token_.insert_or_assign(vocab.tokens[i], static_cast<Token>(i));
    }

    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const TokenType type = i < vocab.types.size() ? vocab.types[i] : TokenType::normal;
      switch (type) {
        case TokenType::normal:
          pieces_[i] = byte_decode(vocab.tokens[i]);
          break;
        case TokenType::user_defined:
        case TokenType::control:
        case TokenType::unknown:
          pieces_[i] = vocab.tokens[i];
          break;
        default:
          break;  // unused / undefined / byte tokens stand for nothing in a BPE vocabulary
      }
    }
  }

  void encode(std::string_view raw, bool /*first_fragment*/, std::vector<Token>& out) const override {
    if (raw.empty()) return;
    const std::string text = sanitize_utf8(raw);

    std::vector<std::pair<size_t, size_t>> pieces{{0, text.size()}}, next;
    for (const auto& regex : regexes_) {
      next.clear();
      next.reserve(pieces.size() * 2);
      regex.split(text, pieces, next);
      pieces.swap(next);
    }

    Workspace ws;
    for (const auto& [offset, length] : pieces) {
      encode_piece(std::string_view(text).substr(offset, length), ws, out);
    }
  }

  std::string token_to_piece(Token t) const override {
    if (t < 0 || t >= n_vocab_) return {};
    return pieces_[static_cast<size_t>(t)];
  }

 private:
  struct Candidate {
    uint32_t rank;
    int32_t left, right;         // positions in the symbol list
    int32_t left_id, right_id;   // the symbols they held when the candidate was made
    int32_t result;              // the merged symbol
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };

  struct Workspace {
    std::vector<int32_t> id, prev, next;
    std::vector<Candidate> heap;
  };

  void try_candidate(Workspace& ws, int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return;
    auto it = merges_.find(pair_key(ws.id[left], ws.id[right]));
    if (it == merges_.end()) return;
    ws.heap.push_back({it->second.rank, left, right, ws.id[left], ws.id[right], it->second.result});
    std::push_heap(ws.heap.begin(), ws.heap.end(), std::greater<>());
  }

  void encode_piece(std::string_view piece, Workspace& ws, std::vector<Token>& out) const {
    if (piece.empty()) return;
    if (ignore_merges_) {
      auto it = whole_token_.find(byte_encode(piece));
      if (it != whole_token_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    const int32_t n = static_cast<int32_t>(piece.size());
    ws.id.resize(n);
    ws.prev.resize(n);
    ws.next.resize(n);
    ws.heap.clear();
    for (int32_t i = 0; i < n; ++i) {
      ws.id[i] = byte_symbol_[static_cast<unsigned char>(piece[i])];
      ws.prev[i] = i - 1;
      ws.next[i] = i + 1 < n ? i + 1 : -1;
    }
    for (int32_t i = 0; i + 1 < n; ++i) try_candidate(ws, i, i + 1);

    while (!ws.heap.empty()) {
      std::pop_heap(ws.heap.begin(), ws.heap.end(), std::greater<>());
      const Candidate c = ws.heap.back();
      ws.heap.pop_back();
      // Stale when either side was merged away or has grown since the candidate was made.
      if (ws.id[c.left] != c.left_id || ws.id[c.right] != c.right_id || ws.next[c.left] != c.right) {
        continue;
      }
      ws.id[c.left] = c.result;
      ws.id[c.right] = -1;
      const int32_t after = ws.next[c.right];
      ws.next[c.left] = after;
      if (after >= 0) ws.prev[after] = c.left;
      try_candidate(ws, ws.prev[c.left], c.left);
      try_candidate(ws, c.left, after);
    }

    for (int32_t i = 0; i >= 0; i = ws.next[i]) {
      const int32_t id = ws.id[i];
      if (id < n_vocab_) {
        out.push_back(id);
        continue;
      }
      // Not a token (only possible with inconsistent merges): llama.cpp emits the tokens of
      // the text's single bytes that exist and drops the rest.
      for (char c : extra_[static_cast<size_t>(id - n_vocab_)]) {
        const int32_t sym = single_byte_symbol(c);
        if (sym >= 0) out.push_back(sym);
      }
    }
  }

  // The token whose text is the single byte c, or -1.
  int32_t single_byte_symbol(char c) const { return single_byte_token_[static_cast<unsigned char>(c)]; }

  int32_t n_vocab_ = 0;
  bool ignore_merges_ = false;
  std::vector<Regex> regexes_;
  std::array<int32_t, 256> byte_symbol_{};
  std::array<int32_t, 256> single_byte_token_{};
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::string> extra_;  // texts of symbol ids >= n_vocab_
  std::unordered_map<std::string, Token> whole_token_;
  std::vector<std::string> pieces_;
};

}  // namespace

std::unique_ptr<Encoder> make_bpe_encoder(const Vocab& vocab) {
  return std::make_unique<BpeEncoder>(vocab);
}

}  // namespace etna::tokenizer
