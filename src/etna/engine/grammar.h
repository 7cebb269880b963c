// Grammar-constrained decoding. A GBNF grammar (the notation llama.cpp's server accepts in its
// `grammar` field) is compiled to byte-level rules: every terminal is a set of bytes, and a
// character class over code points becomes the UTF-8 byte sequences of its ranges, so tokens that
// end inside a multi-byte character are handled like any other prefix. A GrammarState is the set
// of parse stacks of a pushdown recogniser (each stack: where to continue in each open rule);
// GrammarMasker turns a state into the set of vocabulary tokens that may come next by walking a
// prefix trie of the token texts, caching the answer per state.
//
// GBNF accepted:
//   rule ::= alternatives            names [a-zA-Z0-9_-]+; the start rule is "root"
//   a b c      sequence              a | b    alternatives        ( ... )   group
//   "text"     literal (escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH)
//   [a-z0-9_]  character class; [^...] negated; ranges; the same escapes
//   .          any character         # comment to the end of the line
//   x*  x+  x?  x{m}  x{m,}  x{m,n}  repetition (m, n <= kMaxRepeat)
// Rules may span lines; a new rule starts at `name ::=`.
//
// Hostile grammars are refused with etna::Error before any decoding: left recursion (also through
// parts that can be empty, such as ("a"?)*), rules that can never finish, undefined rules, and
// sizes over the limits below. During decoding the work per byte is bounded by kMaxStacks and
// kMaxDepth (a parse needing more is cut off, as if the text were not allowed).
#pragma once
#include <bitset>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::engine {

class Grammar {
 public:
  static constexpr size_t kMaxSourceBytes = size_t{1} << 20;
  static constexpr size_t kMaxElements = size_t{1} << 20;  // compiled terminals + references
  static constexpr size_t kMaxRules = size_t{1} << 16;
  static constexpr uint32_t kMaxRepeat = 10000;
  static constexpr int kMaxNesting = 128;                 // nested groups in the source

  // Compiles `gbnf`. Throws etna::Error(invalid_argument) "grammar: ... (line L)" for syntax
  // errors, undefined or missing rules, left recursion and rules that cannot finish; (limit) when
  // a limit above is exceeded.
  static std::shared_ptr<const Grammar> parse(std::string_view gbnf, std::string_view root = "root");
  // As parse(), but the same text gives the same Grammar object while it is among the last 64
  // compiled (thread-safe): requests repeating a schema then share the scheduler's token masks.
  static std::shared_ptr<const Grammar> cached(const std::string& gbnf);

  // ---- Compiled form (read by GrammarState) ----
  enum class Kind : uint8_t { end, bytes, rule };
  struct Element {
    Kind kind;
    uint32_t value;  // bytes: index into byte_sets(); rule: rule id
  };
  const std::vector<Element>& elements() const { return elements_; }
  const std::vector<std::bitset<256>>& byte_sets() const { return byte_sets_; }
  // Start positions (into elements()) of each alternative of rule r; each ends at a Kind::end.
  const std::vector<uint32_t>& alternatives(uint32_t r) const { return rules_[r]; }
  uint32_t root() const { return root_; }
  size_t rule_count() const { return rules_.size(); }
  // A shortest text rule r can produce (used to close a truncated output).
  const std::string& shortest(uint32_t r) const { return shortest_[r]; }

  Grammar() = default;  // use parse()

 private:
  friend class GrammarBuilder;
  std::vector<Element> elements_;
  std::vector<std::bitset<256>> byte_sets_;
  std::vector<std::vector<uint32_t>> rules_;
  std::vector<std::string> names_;
  std::vector<std::string> shortest_;
  uint32_t root_ = 0;
};

// Where a parse stands: every stack is a list of element positions, innermost last, whose top is a
// bytes element (an empty stack means the text so far is a complete sentence). Copyable value.
class GrammarState {
 public:
  static constexpr size_t kMaxStacks = 4096;
  static constexpr size_t kMaxDepth = 512;
  using Stack = std::vector<uint32_t>;

  // The state before any text.
  explicit GrammarState(std::shared_ptr<const Grammar> grammar);

  // Appends bytes; false (and the state unchanged) when the grammar does not allow them.
  bool feed(std::string_view bytes);
  bool accepts(std::string_view bytes) const;
  // The text so far is a complete sentence of the grammar (generation may stop here).
  bool accepting() const;
  // Some byte may follow.
  bool can_continue() const;
  // A shortest text that makes the sentence complete ("" when accepting()).
  std::string closing_text() const;

  const std::vector<Stack>& stacks() const { return stacks_; }
  const Grammar& grammar() const { return *grammar_; }
  // The bytes any stack allows next.
  std::bitset<256> next_bytes() const;

  // Low level: the stacks after `byte` from `from` into `to` (reusing its storage). Returns
  // false when no stack allows the byte.
  static bool advance(const Grammar& g, const std::vector<Stack>& from, uint8_t byte, std::vector<Stack>& to);

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::vector<Stack> stacks_;
};

// Every token's text in a prefix trie (control tokens and empty texts are left out).
class TokenTrie {
 public:
  explicit TokenTrie(std::span<const std::string> pieces);
  struct Node {
    uint32_t first_child = 0;   // 0: none (the root is node 0 and is nobody's child)
    uint32_t next_sibling = 0;
    uint8_t byte = 0;
    std::vector<tokenizer::Token> tokens;  // tokens whose text ends here
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  size_t n_vocab() const { return n_vocab_; }

 private:
  std::vector<Node> nodes_;
  size_t n_vocab_;
};

// Token masks for one grammar-constrained generation. The states met while walking the trie are
// interned and their byte transitions memoised (a lazily built automaton), so a state seen before
// costs a table look-up per trie node instead of a parse step; whole masks are cached per state.
// Memory is bounded: past kMaxStates interned states new ones are walked without memoising, and the
// tables start over at the next mask.
class GrammarMasker {
 public:
  static constexpr size_t kMaxStates = 4096;
  explicit GrammarMasker(std::shared_ptr<const TokenTrie> trie, size_t max_cached_masks = 512);

  // Bit t of the result is set when token t's whole text may follow `state`.
  const std::vector<uint64_t>& allowed(const GrammarState& state);
  // Sets every logit whose token is not allowed to -inf; the end-of-generation tokens
  // `eog` stay allowed exactly when the state is accepting. Returns the number allowed.
  size_t apply(const GrammarState& state, std::span<float> logits, std::span<const tokenizer::Token> eog);

  uint64_t cache_hits() const { return hits_; }
  uint64_t cache_misses() const { return misses_; }

 private:
  struct Hash {
    size_t operator()(const std::vector<GrammarState::Stack>& s) const;
  };
  static constexpr uint32_t kUnknown = UINT32_MAX, kDead = UINT32_MAX - 1, kFull = UINT32_MAX - 2;
  uint32_t intern(const std::vector<GrammarState::Stack>& stacks);
  uint32_t step(const Grammar& g, uint32_t state, uint8_t byte);
  void walk(const Grammar& g, uint32_t node, uint32_t state, size_t depth, std::vector<uint64_t>& mask);
  void walk_direct(const Grammar& g, uint32_t node, size_t depth, std::vector<uint64_t>& mask);
  void reset();

  std::shared_ptr<const TokenTrie> trie_;
  size_t max_cached_;
  const Grammar* grammar_ = nullptr;  // the grammar the tables belong to
  std::unordered_map<std::vector<GrammarState::Stack>, uint32_t, Hash> ids_;
  std::vector<const std::vector<GrammarState::Stack>*> states_;  // id -> its stacks (keys of ids_)
  std::vector<std::vector<uint32_t>> next_;                       // id -> 256 transitions
  std::unordered_map<uint32_t, std::vector<uint64_t>> masks_;
  std::vector<GrammarState::Stack> tmp_;
  std::vector<std::vector<GrammarState::Stack>> scratch_;  // one state per trie depth (direct walk)
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace etna::engine
