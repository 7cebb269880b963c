// SentencePiece (BPE-by-score) encoding as llama.cpp's llm_tokenizer_spm does it: split the text into
// UTF-8 characters, then repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring vocabulary entry (leftmost pair on ties), using a priority queue with lazy
// invalidation. Each merge adds at most two queue entries, so the work is O(n log n).
#include <algorithm>
#include <array>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Byte length of the UTF-8 sequence a lead byte announces. Continuation and invalid bytes count as
// one character, so malformed input still splits into symbols covering every byte.
size_t utf8_len(unsigned char lead) {
  static constexpr std::array<uint8_t, 16> kLen = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

class SpmEncoder final : public Encoder {
 public:
  explicit SpmEncoder(const Vocab& vocab) : vocab_(vocab) {
    lookup_.reserve(vocab.size());
    for (size_t i = 0; i < vocab.size(); ++i) {
      lookup_.emplace(std::string_view(vocab.tokens[i]), static_cast<Token>(i));
      max_token_len_ = std::max(max_token_len_, vocab.tokens[i].size());
    }
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      Token t = find(std::string_view(buf, 6));
      if (t == kNoToken) {
        const char c = static_cast<char>(b);
        t = find(std::string_view(&c, 1));
      }
      byte_token_[b] = t != kNoToken ? t : vocab.unk;
    }
  }

  void encode(std::string_view text, bool first_fragment, std::vector<Token>& out) const override {
    std::string s;
    s.reserve(text.size() + text.size() / 2 + kSpace.size());
    if (first_fragment && vocab_.add_space_prefix) s += kSpace;
    for (char c : text) {
      if (c == ' ') s += kSpace;
      else s += c;
    }
    if (s.empty()) return;

    // Symbols in a doubly linked list; a merged-away symbol has n == 0.
    struct Symbol {
      int prev, next;
      size_t start, n;
    };
    std::vector<Symbol> sym;
    sym.reserve(s.size());
    for (size_t off = 0; off < s.size();) {
      const size_t n = std::min(utf8_len(static_cast<unsigned char>(s[off])), s.size() - off);
      const int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, off + n == s.size() ? -1 : idx + 1, off, n});
      off += n;
    }

    struct Bigram {
      float score;
      int left, right;
      size_t size;
    };
    // Highest score first; on equal scores the leftmost pair.
    auto lower = [](const Bigram& a, const Bigram& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower)> queue(lower);
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const size_t size = sym[left].n + sym[right].n;
      if (size > max_token_len_) return;
      const Token t = find(std::string_view(s.data() + sym[left].start, size));
      if (t == kNoToken) return;
      queue.push({score(t), left, right, size});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      // Stale entry: one side was merged away or has grown since the pair was queued.
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = 0; i != -1; i = sym[i].next) {
      const std::string_view piece(s.data() + sym[i].start, sym[i].n);
      const Token t = find(piece);
      if (t != kNoToken) {
        out.push_back(t);
        continue;
      }
      // No token for this character: fall back to its bytes (<0xNN>), or <unk> without them.
      for (unsigned char c : piece)
        if (byte_token_[c] != kNoToken) out.push_back(byte_token_[c]);
    }
  }

  std::string token_to_piece(Token t) const override {
    if (t < 0 || static_cast<size_t>(t) >= vocab_.size()) return {};
    const std::string& text = vocab_.tokens[t];
    if (vocab_.types[t] == TokenType::byte && text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
      const int hi = hex_value(text[3]), lo = hex_value(text[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += text[i++];
      }
    }
    return out;
  }

 private:
  Token find(std::string_view text) const {
    auto it = lookup_.find(text);
    return it == lookup_.end() ? kNoToken : it->second;
  }
  float score(Token t) const { return vocab_.scores.empty() ? 0.0f : vocab_.scores[t]; }
  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  const Vocab& vocab_;
  std::unordered_map<std::string_view, Token> lookup_;
  size_t max_token_len_ = 0;
  std::array<Token, 256> byte_token_{};
};

}  // namespace

std::unique_ptr<Encoder> make_spm_encoder(const Vocab& vocab) { return std::make_unique<SpmEncoder>(vocab); }

}  // namespace etna::tokenizer
