#include "etna/engine/grammar.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "etna/base/error.h"

namespace etna::engine {

using Element = Grammar::Element;
using Kind = Grammar::Kind;
using Stack = GrammarState::Stack;

// ---- UTF-8 ranges --------------------------------------------------------------------------

namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

int utf8_length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void utf8_encode(uint32_t cp, uint8_t out[4]) {
  if (cp < 0x80) {
    out[0] = static_cast<uint8_t>(cp);
  } else if (cp < 0x800) {
    out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else {
    out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
    out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  }
}

void append_utf8(std::string& s, uint32_t cp) {
  uint8_t b[4];
  utf8_encode(cp, b);
  s.append(reinterpret_cast<const char*>(b), static_cast<size_t>(utf8_length(cp)));
}

struct ByteRange {
  uint8_t lo, hi;
};

// The UTF-8 encodings of the code points lo..hi as sequences of byte ranges (each sequence
// matches exactly the encodings of a sub-range), the construction used by RE2 and Rust's regex.
void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<ByteRange>>& out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {  // surrogates have no UTF-8 encoding
    if (lo < 0xD800) utf8_sequences(lo, 0xD7FF, out);
    if (hi > 0xDFFF) utf8_sequences(0xE000, hi, out);
    return;
  }
  static constexpr uint32_t kEnds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t end : kEnds)
    if (lo <= end && hi > end) {
      utf8_sequences(lo, end, out);
      utf8_sequences(end + 1, hi, out);
      return;
    }
  const int n = utf8_length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  utf8_encode(lo, a);
  utf8_encode(hi, b);
  std::vector<ByteRange> seq;
  for (int i = 0; i < n; ++i) seq.push_back({a[i], b[i]});
  out.push_back(std::move(seq));
}

}  // namespace

// ---- Parser --------------------------------------------------------------------------------

class GrammarBuilder {
 public:
  explicit GrammarBuilder(std::string_view src) : src_(src) {}

  std::shared_ptr<const Grammar> build(std::string_view root_name) {
    if (src_.size() > Grammar::kMaxSourceBytes)
      fail(ErrorKind::limit, "grammar: the grammar has {} bytes (limit {})", src_.size(), Grammar::kMaxSourceBytes);
    skip_space(true);
    if (pos_ >= src_.size()) fail(ErrorKind::invalid_argument, "grammar: the grammar is empty");
    while (pos_ < src_.size()) {
      const int line = line_;
      const std::string name = parse_name();
      skip_space(true);
      if (src_.substr(pos_, 3) != "::=") error("expected '::=' after rule name '{}'", name);
      pos_ += 3;
      const uint32_t id = rule_id(name);
      if (defined_[id]) error("rule '{}' is defined twice", name);
      defined_[id] = true;
      def_line_[id] = line;
      rules_[id] = parse_alternatives(0);
      skip_space(true);
    }
    for (size_t r = 0; r < rules_.size(); ++r)
      if (!defined_[r])
        fail(ErrorKind::invalid_argument, "grammar: rule '{}' is used (line {}) but never defined", names_[r], def_line_[r]);
    auto it = ids_.find(std::string(root_name));
    if (it == ids_.end()) fail(ErrorKind::invalid_argument, "grammar: there is no '{}' rule to start from", root_name);

    auto g = std::make_shared<Grammar>();
    g->root_ = it->second;
    g->names_ = names_;
    g->byte_sets_ = std::move(sets_);
    compute_shortest(*g);
    check_left_recursion();
    g->rules_.resize(rules_.size());
    g->elements_.reserve(total_ + 2 * rules_.size());
    for (size_t r = 0; r < rules_.size(); ++r)
      for (const auto& alt : rules_[r]) {
        g->rules_[r].push_back(static_cast<uint32_t>(g->elements_.size()));
        g->elements_.insert(g->elements_.end(), alt.begin(), alt.end());
        g->elements_.push_back({Kind::end, 0});
      }
    return g;
  }

 private:
  using Seq = std::vector<Element>;
  using Alts = std::vector<Seq>;

  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> f, Args&&... args) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("grammar: {} (line {})", fmt::format(f, std::forward<Args>(args)...), line_));
  }

  bool eof() const { return pos_ >= src_.size(); }
  char peek(size_t k = 0) const { return pos_ + k < src_.size() ? src_[pos_ + k] : '\0'; }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }

  // Spaces, tabs, comments and (when `newlines`) line breaks.
  void skip_space(bool newlines) {
    while (!eof()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '\n' && newlines) {
        ++pos_;
        ++line_;
      } else if (c == '#') {
        while (!eof() && peek() != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // At `name ::=` (the start of the next rule)?
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < src_.size() && is_name_char(src_[p])) ++p;
    if (p == pos_) return false;
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\r' || src_[p] == '\n')) ++p;
    return src_.substr(p, 3) == "::=";
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!eof() && is_name_char(peek())) ++pos_;
    if (pos_ == start) {
      if (eof()) error("expected a rule name, found the end of the grammar");
      error("expected a rule name, found '{}'", peek());
    }
    return std::string(src_.substr(start, pos_ - start));
  }

  uint32_t rule_id(const std::string& name) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    return add_rule(name, false);
  }

  uint32_t add_rule(const std::string& name, bool generated) {
    if (rules_.size() >= Grammar::kMaxRules)
      fail(ErrorKind::limit, "grammar: more than {} rules (after expanding groups and repetitions)", Grammar::kMaxRules);
    const auto id = static_cast<uint32_t>(rules_.size());
    if (!generated) ids_[name] = id;
    names_.push_back(name);
    rules_.emplace_back();
    defined_.push_back(generated);
    def_line_.push_back(line_);
    return id;
  }

  uint32_t generated_rule(Alts alts) {
    const uint32_t id = add_rule(fmt::format("{}-{}", current_rule_hint(), rules_.size()), true);
    rules_[id] = std::move(alts);
    return id;
  }
  std::string current_rule_hint() const { return "generated"; }

  void count(size_t n) {
    total_ += n;
    if (total_ > Grammar::kMaxElements)
      fail(ErrorKind::limit, "grammar: more than {} elements after expanding repetitions", Grammar::kMaxElements);
  }

  uint32_t byte_set(const std::bitset<256>& s) {
    const std::string key = s.to_string();
    auto it = set_index_.find(key);
    if (it != set_index_.end()) return it->second;
    const auto id = static_cast<uint32_t>(sets_.size());
    sets_.push_back(s);
    set_index_.emplace(key, id);
    return id;
  }
  Element single_byte(uint8_t b) {
    std::bitset<256> s;
    s.set(b);
    return {Kind::bytes, byte_set(s)};
  }

  Alts parse_alternatives(int depth) {
    if (depth > Grammar::kMaxNesting) error("groups nest deeper than {}", Grammar::kMaxNesting);
    Alts alts;
    alts.push_back(parse_sequence(depth));
    while (peek() == '|') {
      ++pos_;
      alts.push_back(parse_sequence(depth));
    }
    return alts;
  }

  Seq parse_sequence(int depth) {
    Seq seq;
    for (;;) {
      skip_space(true);
      if (eof() || peek() == '|' || peek() == ')') break;
      if (depth == 0 && at_rule_start()) break;
      Seq item = parse_primary(depth);
      skip_space(false);
      const char op = peek();
      if (op == '*' || op == '+' || op == '?') {
        ++pos_;
        item = repeat(std::move(item), op == '+' ? 1 : 0, op == '?' ? 1 : UINT32_MAX);
      } else if (op == '{') {
        ++pos_;
        skip_space(false);
        const uint32_t lo = parse_count();
        uint32_t hi = lo;
        skip_space(false);
        if (peek() == ',') {
          ++pos_;
          skip_space(false);
          hi = peek() == '}' ? UINT32_MAX : parse_count();
          skip_space(false);
        }
        if (peek() != '}') error("expected '}}' to close a repetition count");
        ++pos_;
        if (hi < lo) error("repetition {{{},{}}} has its maximum below its minimum", lo, hi);
        item = repeat(std::move(item), lo, hi);
      }
      count(item.size());
      seq.insert(seq.end(), item.begin(), item.end());
    }
    return seq;
  }

  uint32_t parse_count() {
    if (!(peek() >= '0' && peek() <= '9')) error("expected a number in a repetition count");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(peek() - '0');
      if (v > Grammar::kMaxRepeat) fail(ErrorKind::limit, "grammar: repetition count over {} (line {})", Grammar::kMaxRepeat, line_);
      ++pos_;
    }
    return static_cast<uint32_t>(v);
  }

  // x{lo,hi} (hi = UINT32_MAX: unbounded) as x..x followed by right-recursive rules, so that a
  // long repetition never deepens the parse stacks and matches in exactly one way.
  Seq repeat(Seq item, uint32_t lo, uint32_t hi) {
    if (item.size() != 1) {
      Alts alts;
      alts.push_back(std::move(item));
      item = {{Kind::rule, generated_rule(std::move(alts))}};
    }
    const Element x = item[0];
    Seq out(lo, x);
    count(lo);
    if (hi == UINT32_MAX) {
      const uint32_t r = add_rule(fmt::format("star-{}", rules_.size()), true);
      rules_[r] = {{x, {Kind::rule, r}}, {}};
      count(3);
      out.push_back({Kind::rule, r});
    } else if (hi > lo) {
      // opt_k ::= x opt_{k+1} | ε, built innermost first.
      uint32_t inner = UINT32_MAX;
      for (uint32_t k = 0; k < hi - lo; ++k) {
        Seq first{x};
        if (inner != UINT32_MAX) first.push_back({Kind::rule, inner});
        count(first.size() + 1);
        inner = generated_rule({std::move(first), {}});
      }
      out.push_back({Kind::rule, inner});
    }
    return out;
  }

  Seq parse_primary(int depth) {
    const char c = peek();
    if (c == '"') {
      ++pos_;
      std::string bytes;
      while (!eof() && peek() != '"') {
        if (peek() == '\n') error("a literal is not closed before the end of the line");
        if (peek() == '\\')
          append_utf8(bytes, parse_escape());
        else
          bytes += src_[pos_++];
      }
      if (eof()) error("a literal is not closed");
      ++pos_;
      Seq seq;
      for (unsigned char b : bytes) seq.push_back(single_byte(b));
      return seq;
    }
    if (c == '[') {
      ++pos_;
      bool negated = false;
      if (peek() == '^') {
        negated = true;
        ++pos_;
      }
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      while (!eof() && peek() != ']') {
        const uint32_t lo = class_char();
        uint32_t hi = lo;
        if (peek() == '-' && peek(1) != ']' && peek(1) != '\0') {
          ++pos_;
          hi = class_char();
          if (hi < lo) error("character range is reversed");
        }
        ranges.emplace_back(lo, hi);
      }
      if (eof()) error("a character class is not closed");
      ++pos_;
      return char_class(std::move(ranges), negated);
    }
    if (c == '(') {
      ++pos_;
      Alts alts = parse_alternatives(depth + 1);
      skip_space(true);
      if (peek() != ')') error("expected ')'");
      ++pos_;
      return {{Kind::rule, generated_rule(std::move(alts))}};
    }
    if (c == '.') {
      ++pos_;
      return char_class({{0, kMaxCodePoint}}, false);
    }
    if (is_name_char(c)) {
      const std::string name = parse_name();
      return {{Kind::rule, rule_id(name)}};
    }
    if (eof()) error("unexpected end of the grammar");
    error("unexpected character '{}'", c);
  }

  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char h = peek();
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) error("expected {} hex digits in an escape", digits);
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCodePoint) error("escape \\U{:08X} is beyond U+10FFFF", v);
    return v;
  }

  // After a backslash.
  uint32_t parse_escape() {
    ++pos_;
    const char e = peek();
    ++pos_;
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '\\': return '\\';
      case '"': return '"';
      case '[': return '[';
      case ']': return ']';
      case '-': return '-';
      case '^': return '^';
      case 'x': return hex(2);
      case 'u': return hex(4);
      case 'U': return hex(8);
      default: error("unknown escape '\\{}'", e == '\0' ? ' ' : e);
    }
  }

  // One character of a class: an escape or one UTF-8 encoded code point.
  uint32_t class_char() {
    if (peek() == '\\') return parse_escape();
    const auto b0 = static_cast<unsigned char>(src_[pos_]);
    int n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + static_cast<size_t>(n) > src_.size()) error("invalid UTF-8 in a character class");
    uint32_t cp = n == 1 ? b0 : b0 & (0x7F >> n);
    for (int i = 1; i < n; ++i) {
      const auto b = static_cast<unsigned char>(src_[pos_ + static_cast<size_t>(i)]);
      if ((b & 0xC0) != 0x80) error("invalid UTF-8 in a character class");
      cp = (cp << 6) | (b & 0x3F);
    }
    if (src_[pos_] == '\n') ++line_;
    pos_ += static_cast<size_t>(n);
    return cp;
  }

  Seq char_class(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool negated) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<uint32_t, uint32_t>> merged;
    for (auto r : ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1)
        merged.back().second = std::max(merged.back().second, r.second);
      else
        merged.push_back(r);
    }
    if (negated) {
      std::vector<std::pair<uint32_t, uint32_t>> inv;
      uint32_t next = 0;
      for (auto r : merged) {
        if (r.first > next) inv.emplace_back(next, r.first - 1);
        next = r.second + 1;
      }
      if (next <= kMaxCodePoint) inv.emplace_back(next, kMaxCodePoint);
      merged = std::move(inv);
    }
    if (merged.empty()) error("a character class matches nothing");
    std::vector<std::vector<ByteRange>> seqs;
    for (auto r : merged) utf8_sequences(r.first, r.second, seqs);
    // One alternative per distinct sequence shape; all single bytes share one set.
    std::bitset<256> ascii;
    Alts alts;
    for (const auto& s : seqs) {
      if (s.size() == 1) {
        for (int b = s[0].lo; b <= s[0].hi; ++b) ascii.set(static_cast<size_t>(b));
        continue;
      }
      Seq seq;
      for (auto br : s) {
        std::bitset<256> set;
        for (int b = br.lo; b <= br.hi; ++b) set.set(static_cast<size_t>(b));
        seq.push_back({Kind::bytes, byte_set(set)});
      }
      alts.push_back(std::move(seq));
    }
    if (ascii.any()) {
      if (alts.empty()) return {{Kind::bytes, byte_set(ascii)}};
      alts.insert(alts.begin(), Seq{{Kind::bytes, byte_set(ascii)}});
    }
    size_t n = 0;
    for (const auto& a : alts) n += a.size() + 1;
    count(n);
    return {{Kind::rule, generated_rule(std::move(alts))}};
  }

  // Knuth's generalisation of Dijkstra's algorithm to grammars: the shortest text of every rule,
  // settling rules in order of length so each one's choice only uses settled rules.
  void compute_shortest(Grammar& g) {
    const size_t n = rules_.size();
    struct AltRef {
      uint32_t rule, alt;
    };
    std::vector<std::vector<AltRef>> users(n);
    std::vector<std::vector<uint32_t>> unresolved(n);
    using Item = std::pair<uint64_t, std::pair<uint32_t, uint32_t>>;  // length, (rule, alt)
    std::priority_queue<Item, std::vector<Item>, std::greater<>> pq;
    auto alt_length = [&](uint32_t r, uint32_t a) {
      uint64_t len = 0;
      for (const Element& e : rules_[r][a]) len += e.kind == Kind::bytes ? 1 : min_len_[e.value];
      return len;
    };
    min_len_.assign(n, UINT64_MAX);
    for (uint32_t r = 0; r < n; ++r) {
      unresolved[r].resize(rules_[r].size());
      for (uint32_t a = 0; a < rules_[r].size(); ++a) {
        for (const Element& e : rules_[r][a])
          if (e.kind == Kind::rule) {
            users[e.value].push_back({r, a});
            ++unresolved[r][a];
          }
        if (unresolved[r][a] == 0) pq.push({alt_length(r, a), {r, a}});
      }
    }
    std::vector<uint32_t> choice(n, UINT32_MAX), order;
    while (!pq.empty()) {
      auto [len, ra] = pq.top();
      pq.pop();
      const uint32_t r = ra.first;
      if (choice[r] != UINT32_MAX) continue;
      choice[r] = ra.second;
      min_len_[r] = len;
      order.push_back(r);
      for (AltRef u : users[r])
        if (--unresolved[u.rule][u.alt] == 0 && choice[u.rule] == UINT32_MAX) pq.push({alt_length(u.rule, u.alt), {u.rule, u.alt}});
    }
    for (uint32_t r = 0; r < n; ++r)
      if (choice[r] == UINT32_MAX)
        fail(ErrorKind::invalid_argument, "grammar: rule '{}' can never finish (every alternative recurses forever)",
             display_name(r));
    g.shortest_.assign(n, {});
    constexpr uint64_t kMaxShortest = uint64_t{1} << 20;
    for (uint32_t r : order) {
      if (min_len_[r] > kMaxShortest)
        fail(ErrorKind::limit, "grammar: the shortest text of rule '{}' is longer than {} bytes", display_name(r), kMaxShortest);
      std::string s;
      for (const Element& e : rules_[r][choice[r]]) {
        if (e.kind == Kind::rule) {
          s += g.shortest_[e.value];
        } else {
          const auto& set = sets_or(g)[e.value];
          size_t pick = 0x20;
          while (pick < 256 && !set.test(pick)) ++pick;  // a printable byte when there is one
          if (pick == 256)
            for (pick = 0; !set.test(pick); ++pick) {
            }
          s += static_cast<char>(pick);
        }
      }
      g.shortest_[r] = std::move(s);
    }
  }
  const std::vector<std::bitset<256>>& sets_or(const Grammar& g) const { return g.byte_sets_; }

  std::string display_name(uint32_t r) const {
    // Generated rules are reported through the rule that used them first.
    return names_[r];
  }

  // A rule that can reach itself without consuming a byte would make the recogniser loop.
  void check_left_recursion() {
    const size_t n = rules_.size();
    std::vector<std::vector<uint32_t>> edges(n);
    for (uint32_t r = 0; r < n; ++r)
      for (const auto& alt : rules_[r])
        for (const Element& e : alt) {
          if (e.kind == Kind::bytes) break;
          edges[r].push_back(e.value);
          if (min_len_[e.value] != 0) break;
        }
    std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path;
    for (uint32_t start = 0; start < n; ++start) {
      if (color[start]) continue;
      path.push_back({start, 0});
      color[start] = 1;
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i == edges[r].size()) {
          color[r] = 2;
          path.pop_back();
          continue;
        }
        const uint32_t next = edges[r][i++];
        if (color[next] == 1) {
          // Name the first user-written rule on the cycle.
          std::string name = names_[next];
          for (auto it = path.rbegin(); it != path.rend(); ++it)
            if (ids_.count(names_[it->first])) name = names_[it->first];
          fail(ErrorKind::invalid_argument,
               "grammar: rule '{}' is left-recursive (it can reach itself before reading a character; "
               "a repetition of something that can be empty also counts)",
               name);
        }
        if (color[next] == 0) {
          color[next] = 1;
          path.push_back({next, 0});
        }
      }
    }
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<Alts> rules_;
  std::vector<bool> defined_;
  std::vector<int> def_line_;
  std::vector<std::bitset<256>> sets_;
  std::unordered_map<std::string, uint32_t> set_index_;
  std::vector<uint64_t> min_len_;
  size_t total_ = 0;
};

std::shared_ptr<const Grammar> Grammar::parse(std::string_view gbnf, std::string_view root) {
  return GrammarBuilder(gbnf).build(root);
}

std::shared_ptr<const Grammar> Grammar::cached(const std::string& gbnf) {
  static std::mutex mutex;
  static std::list<std::pair<std::string, std::shared_ptr<const Grammar>>> lru;  // most recent first
  {
    std::lock_guard lock(mutex);
    for (auto it = lru.begin(); it != lru.end(); ++it)
      if (it->first == gbnf) {
        lru.splice(lru.begin(), lru, it);
        return lru.front().second;
      }
  }
  auto g = parse(gbnf);  // outside the lock: compiling may be slow or throw
  std::lock_guard lock(mutex);
  lru.emplace_front(gbnf, g);
  if (lru.size() > 64) lru.pop_back();
  return g;
}

// ---- Recogniser ----------------------------------------------------------------------------

namespace {

// Expands stacks until each top is a bytes element (or the stack is empty), appending them to
// `out`. An explicit work list: no native recursion however the rules chain.
void expand(const Grammar& g, std::vector<Stack>& work, std::vector<Stack>& out) {
  const auto& el = g.elements();
  size_t steps = 0;
  while (!work.empty()) {
    Stack s = std::move(work.back());
    work.pop_back();
    if (++steps > 64 * GrammarState::kMaxStacks)
      fail(ErrorKind::limit, "grammar: too many ways to continue the parse at once (an ambiguous grammar)");
    for (;;) {
      if (s.empty()) {
        out.push_back(std::move(s));
        break;
      }
      const Element e = el[s.back()];
      if (e.kind == Kind::end) {
        s.pop_back();
        continue;
      }
      if (e.kind == Kind::bytes) {
        out.push_back(std::move(s));
        break;
      }
      // A reference: continue after it once the rule is done (dropping the frame when nothing
      // follows, so right recursion does not deepen the stack), and try every alternative.
      const uint32_t next = s.back() + 1;
      if (el[next].kind == Kind::end)
        s.pop_back();
      else
        s.back() = next;
      if (s.size() >= GrammarState::kMaxDepth) break;  // too deep: this parse is cut off
      const auto& alts = g.alternatives(e.value);
      for (size_t a = 1; a < alts.size(); ++a) {
        Stack t = s;
        t.push_back(alts[a]);
        work.push_back(std::move(t));
      }
      s.push_back(alts[0]);
    }
    if (out.size() > GrammarState::kMaxStacks)
      fail(ErrorKind::limit, "grammar: more than {} parses are open at once (an ambiguous grammar)", GrammarState::kMaxStacks);
  }
}

void normalise(std::vector<Stack>& stacks) {
  if (stacks.size() < 2) return;
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
}

}  // namespace

GrammarState::GrammarState(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
  std::vector<Stack> work;
  for (uint32_t a : grammar_->alternatives(grammar_->root())) work.push_back({a});
  std::reverse(work.begin(), work.end());
  expand(*grammar_, work, stacks_);
  normalise(stacks_);
}

bool GrammarState::advance(const Grammar& g, const std::vector<Stack>& from, uint8_t byte, std::vector<Stack>& to) {
  to.clear();
  std::vector<Stack> work;
  const auto& el = g.elements();
  const auto& sets = g.byte_sets();
  for (const Stack& s : from) {
    if (s.empty()) continue;
    if (!sets[el[s.back()].value].test(byte)) continue;
    Stack t = s;
    ++t.back();
    work.push_back(std::move(t));
    expand(g, work, to);
  }
  normalise(to);
  return !to.empty();
}

bool GrammarState::feed(std::string_view bytes) {
  std::vector<Stack> cur = stacks_, next;
  for (char c : bytes) {
    if (!advance(*grammar_, cur, static_cast<uint8_t>(c), next)) return false;
    cur.swap(next);
  }
  stacks_ = std::move(cur);
  return true;
}

bool GrammarState::accepts(std::string_view bytes) const {
  GrammarState copy = *this;
  return copy.feed(bytes);
}

bool GrammarState::accepting() const {
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return s.empty(); });
}

bool GrammarState::can_continue() const {
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return !s.empty(); });
}

std::bitset<256> GrammarState::next_bytes() const {
  std::bitset<256> out;
  for (const Stack& s : stacks_)
    if (!s.empty()) out |= grammar_->byte_sets()[grammar_->elements()[s.back()].value];
  return out;
}

std::string GrammarState::closing_text() const {
  const Grammar& g = *grammar_;
  const auto& el = g.elements();
  std::string best;
  bool found = false;
  for (const Stack& s : stacks_) {
    std::string text;
    for (auto frame = s.rbegin(); frame != s.rend(); ++frame) {
      for (uint32_t p = *frame; el[p].kind != Kind::end; ++p) {
        if (el[p].kind == Kind::rule) {
          text += g.shortest(el[p].value);
        } else {
          const auto& set = g.byte_sets()[el[p].value];
          size_t pick = 0x20;
          while (pick < 256 && !set.test(pick)) ++pick;
          if (pick == 256)
            for (pick = 0; !set.test(pick); ++pick) {
            }
          text += static_cast<char>(pick);
        }
      }
      if (found && text.size() >= best.size()) break;
    }
    if (!found || text.size() < best.size()) {
      best = std::move(text);
      found = true;
    }
  }
  return best;
}

// ---- Token masks ---------------------------------------------------------------------------

TokenTrie::TokenTrie(std::span<const std::string> pieces) : n_vocab_(pieces.size()) {
  nodes_.emplace_back();
  for (size_t t = 0; t < pieces.size(); ++t) {
    const std::string& p = pieces[t];
    if (p.empty()) continue;
    uint32_t node = 0;
    for (unsigned char b : p) {
      uint32_t child = nodes_[node].first_child;
      while (child != 0 && nodes_[child].byte != b) child = nodes_[child].next_sibling;
      if (child == 0) {
        child = static_cast<uint32_t>(nodes_.size());
        Node n;
        n.byte = b;
        n.next_sibling = nodes_[node].first_child;
        nodes_.push_back(std::move(n));
        nodes_[node].first_child = child;
      }
      node = child;
    }
    nodes_[node].tokens.push_back(static_cast<tokenizer::Token>(t));
  }
}

size_t GrammarMasker::Hash::operator()(const std::vector<Stack>& stacks) const {
  uint64_t h = 1469598103934665603ull;
  for (const Stack& s : stacks) {
    for (uint32_t p : s) h = (h ^ p) * 1099511628211ull;
    h = (h ^ 0xFFFFFFFFull) * 1099511628211ull;
  }
  return static_cast<size_t>(h);
}

GrammarMasker::GrammarMasker(std::shared_ptr<const TokenTrie> trie, size_t max_cached_masks)
    : trie_(std::move(trie)), max_cached_(max_cached_masks) {}

namespace {
constexpr size_t kMaxTokenBytes = 256;  // longer token texts are never allowed under a grammar
}

void GrammarMasker::reset() {
  ids_.clear();
  states_.clear();
  next_.clear();
  masks_.clear();
}

uint32_t GrammarMasker::intern(const std::vector<Stack>& stacks) {
  auto it = ids_.find(stacks);
  if (it != ids_.end()) return it->second;
  if (states_.size() >= kMaxStates) return kFull;
  const auto id = static_cast<uint32_t>(states_.size());
  auto [pos, inserted] = ids_.emplace(stacks, id);
  states_.push_back(&pos->first);
  next_.emplace_back(256, kUnknown);
  return id;
}

uint32_t GrammarMasker::step(const Grammar& g, uint32_t state, uint8_t byte) {
  const uint32_t known = next_[state][byte];
  if (known != kUnknown) return known;
  uint32_t r = kDead;
  if (GrammarState::advance(g, *states_[state], byte, tmp_)) r = intern(tmp_);
  if (r != kFull) next_[state][byte] = r;
  return r;
}

void GrammarMasker::walk(const Grammar& g, uint32_t node, uint32_t state, size_t depth, std::vector<uint64_t>& mask) {
  const auto& nodes = trie_->nodes();
  if (depth + 1 >= kMaxTokenBytes) return;
  for (uint32_t c = nodes[node].first_child; c != 0; c = nodes[c].next_sibling) {
    const auto& child = nodes[c];
    const uint32_t to = step(g, state, child.byte);
    if (to == kDead) continue;
    if (to == kFull) {
      // Out of table room: this subtree is walked with plain parse steps.
      if (scratch_.size() <= depth + 1) scratch_.resize(depth + 2);
      GrammarState::advance(g, *states_[state], child.byte, scratch_[depth + 1]);
      for (tokenizer::Token t : child.tokens) mask[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
      walk_direct(g, c, depth + 1, mask);
      continue;
    }
    for (tokenizer::Token t : child.tokens) mask[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
    walk(g, c, to, depth + 1, mask);
  }
}

void GrammarMasker::walk_direct(const Grammar& g, uint32_t node, size_t depth, std::vector<uint64_t>& mask) {
  const auto& nodes = trie_->nodes();
  if (depth + 1 >= kMaxTokenBytes) return;
  if (scratch_.size() <= depth + 1) scratch_.resize(depth + 2);
  for (uint32_t c = nodes[node].first_child; c != 0; c = nodes[c].next_sibling) {
    const auto& child = nodes[c];
    if (!GrammarState::advance(g, scratch_[depth], child.byte, scratch_[depth + 1])) continue;
    for (tokenizer::Token t : child.tokens) mask[static_cast<size_t>(t) / 64] |= uint64_t{1} << (t % 64);
    walk_direct(g, c, depth + 1, mask);
  }
}

const std::vector<uint64_t>& GrammarMasker::allowed(const GrammarState& state) {
  const Grammar& g = state.grammar();
  if (grammar_ != &g || states_.size() >= kMaxStates || masks_.size() >= max_cached_) {
    reset();
    grammar_ = &g;
  }
  uint32_t id = intern(state.stacks());
  if (id == kFull) {
    reset();
    id = intern(state.stacks());
  }
  auto it = masks_.find(id);
  if (it != masks_.end()) {
    ++hits_;
    return it->second;
  }
  ++misses_;
  std::vector<uint64_t> mask((trie_->n_vocab() + 63) / 64, 0);
  walk(g, 0, id, 0, mask);
  return masks_.emplace(id, std::move(mask)).first->second;
}

size_t GrammarMasker::apply(const GrammarState& state, std::span<float> logits, std::span<const tokenizer::Token> eog) {
  const std::vector<uint64_t>& mask = allowed(state);
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const bool accepting = state.accepting();
  std::vector<std::pair<size_t, float>> keep;
  if (accepting)
    for (tokenizer::Token t : eog)
      if (t >= 0 && static_cast<size_t>(t) < logits.size()) keep.emplace_back(static_cast<size_t>(t), logits[static_cast<size_t>(t)]);
  size_t allowed = 0;
  const size_t n = std::min(logits.size(), trie_->n_vocab());
  for (size_t i = 0; i < n; ++i) {
    if ((mask[i / 64] >> (i % 64)) & 1) {
      if (logits[i] != minus_inf) ++allowed;
    } else {
      logits[i] = minus_inf;
    }
  }
  for (size_t i = n; i < logits.size(); ++i) logits[i] = minus_inf;
  for (auto [i, v] : keep) {
    if (logits[i] == minus_inf && v != minus_inf) ++allowed;
    logits[i] = v;
  }
  return allowed;
}

}  // namespace etna::engine
