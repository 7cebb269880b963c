// The GBNF grammar engine: parsing, byte-level recognition (UTF-8 classes included), closing
// text, token masks over a prefix trie, and refusal of hostile grammars with bounded work.
#include "etna/engine/grammar.h"

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/base/error.h"

namespace etna::engine {
namespace {

bool matches(const std::string& gbnf, const std::string& text) {
  GrammarState s(Grammar::parse(gbnf));
  return s.feed(text) && s.accepting();
}

bool prefix_ok(const std::string& gbnf, const std::string& text) {
  GrammarState s(Grammar::parse(gbnf));
  return s.feed(text);
}

std::string error_of(const std::string& gbnf) {
  try {
    Grammar::parse(gbnf);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Grammar, LiteralsSequencesAlternatives) {
  const std::string g = "root ::= \"yes\" | \"no\" | \"maybe\" \" \" (\"so\" | \"not\")";
  EXPECT_TRUE(matches(g, "yes"));
  EXPECT_TRUE(matches(g, "no"));
  EXPECT_TRUE(matches(g, "maybe so"));
  EXPECT_TRUE(matches(g, "maybe not"));
  EXPECT_FALSE(matches(g, "ye"));
  EXPECT_TRUE(prefix_ok(g, "ye"));
  EXPECT_FALSE(prefix_ok(g, "yess"));
  EXPECT_FALSE(matches(g, "maybe"));
}

TEST(Grammar, EscapesInLiteralsAndClasses) {
  EXPECT_TRUE(matches(R"(root ::= "a\nb\t\"\\\x41\u00e9")", "a\nb\t\"\\A\xc3\xa9"));
  EXPECT_TRUE(matches(R"(root ::= [\[\]\-]+)", "[-]"));
  EXPECT_TRUE(matches(R"(root ::= [\x00-\x1f])", std::string(1, '\x05')));
}

TEST(Grammar, CharacterClassesRangesAndNegation) {
  const std::string g = "root ::= [a-c0-9_]+";
  EXPECT_TRUE(matches(g, "abc_019"));
  EXPECT_FALSE(matches(g, "abd"));
  const std::string neg = "root ::= \"\\\"\" [^\"\\\\]* \"\\\"\"";
  EXPECT_TRUE(matches(neg, "\"hello w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80\""));
  EXPECT_FALSE(matches(neg, "\"a\"b\""));
  // A negated class never admits broken UTF-8.
  EXPECT_FALSE(prefix_ok(neg, "\"\xc3\x28"));
  EXPECT_FALSE(prefix_ok(neg, "\"\xed\xa0\x80"));  // a surrogate
  EXPECT_FALSE(prefix_ok(neg, "\"\xff"));
  // Non-ASCII ranges, and a token ending in the middle of a character.
  const std::string greek = "root ::= [α-ω]+";
  EXPECT_TRUE(matches(greek, "αβγω"));
  EXPECT_FALSE(matches(greek, "αA"));
  GrammarState s(Grammar::parse(greek));
  EXPECT_TRUE(s.feed("\xce"));  // the first byte of α
  EXPECT_FALSE(s.accepting());
  EXPECT_TRUE(s.feed("\xb1"));
  EXPECT_TRUE(s.accepting());
}

TEST(Grammar, AnyCharacter) {
  EXPECT_TRUE(matches("root ::= . . .", "a\xc3\xa9z"));
  EXPECT_FALSE(matches("root ::= . .", "abc"));
}

TEST(Grammar, Repetitions) {
  EXPECT_TRUE(matches("root ::= \"a\"*", ""));
  EXPECT_TRUE(matches("root ::= \"a\"*", "aaaa"));
  EXPECT_FALSE(matches("root ::= \"a\"+", ""));
  EXPECT_TRUE(matches("root ::= \"ab\"+", "ababab"));
  EXPECT_FALSE(matches("root ::= \"ab\"+", "aba"));
  EXPECT_TRUE(matches("root ::= \"a\"? \"b\"", "b"));
  EXPECT_TRUE(matches("root ::= \"a\"? \"b\"", "ab"));
  const std::string g = "root ::= [0-9]{2,4}";
  EXPECT_FALSE(matches(g, "1"));
  EXPECT_TRUE(matches(g, "12"));
  EXPECT_TRUE(matches(g, "1234"));
  EXPECT_FALSE(prefix_ok(g, "12345"));
  EXPECT_TRUE(matches("root ::= \"x\"{3}", "xxx"));
  EXPECT_FALSE(matches("root ::= \"x\"{3}", "xx"));
  EXPECT_TRUE(matches("root ::= \"x\"{2,}", "xxxxxxx"));
  EXPECT_FALSE(matches("root ::= \"x\"{2,}", "x"));
}

TEST(Grammar, LongRepetitionKeepsStacksShallow) {
  GrammarState s(Grammar::parse("root ::= [a-z]*"));
  EXPECT_TRUE(s.feed(std::string(100000, 'q')));
  EXPECT_TRUE(s.accepting());
  for (const auto& st : s.stacks()) EXPECT_LE(st.size(), 2u);
}

TEST(Grammar, RulesCommentsAndMultiLineAlternatives) {
  const std::string g = R"G(
# a tiny arithmetic grammar
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= num
       | "(" expr ")"   # nested
num  ::= [0-9]+
)G";
  EXPECT_TRUE(matches(g, "1+(2-30)+4"));
  EXPECT_FALSE(matches(g, "1+"));
  EXPECT_FALSE(matches(g, "(1"));
}

TEST(Grammar, ClosingTextCompletesTheSentence) {
  const std::string g = R"(
root ::= "{" ws "\"a\"" ws ":" ws num ws "}"
ws ::= [ ]?
num ::= [0-9]+)";
  GrammarState s(Grammar::parse(g));
  ASSERT_TRUE(s.feed("{ \"a\": "));
  const std::string close = s.closing_text();
  EXPECT_EQ(close, "0}");
  ASSERT_TRUE(s.feed(close));
  EXPECT_TRUE(s.accepting());
  EXPECT_EQ(s.closing_text(), "");
}

TEST(Grammar, SyntaxErrorsNameTheProblem) {
  EXPECT_NE(error_of("root ::= \"abc").find("not closed"), std::string::npos);
  EXPECT_NE(error_of("root ::= foo").find("rule 'foo' is used"), std::string::npos);
  EXPECT_NE(error_of("start ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"").find("expected ')'"), std::string::npos);
  EXPECT_NE(error_of("root ::= [b-a]").find("reversed"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{3,2}").find("below"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

TEST(Grammar, HostileGrammarsAreRefusedWithBoundedWork) {
  // Left recursion, direct and indirect, and through an empty-able repetition.
  EXPECT_NE(error_of("root ::= root \"a\" | \"a\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= b \"x\"\nb ::= c | \"y\"\nc ::= root").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"?)*").find("left-recursive"), std::string::npos);
  // A rule that can never finish.
  EXPECT_NE(error_of("root ::= \"a\" root").find("never finish"), std::string::npos);
  // Repetition counts and the expanded size are bounded.
  EXPECT_NE(error_of("root ::= \"a\"{1000000}").find("over"), std::string::npos);
  std::string big = "root ::=";
  for (int i = 0; i < 200; ++i) big += " \"x\"{10000}";
  EXPECT_NE(error_of(big).find("elements"), std::string::npos);
  std::string many = "root ::=";
  for (int i = 0; i < 8; ++i) many += " \"x\"{0,10000}";
  EXPECT_NE(error_of(many).find("rules"), std::string::npos);
  // Deep nesting in the source.
  EXPECT_NE(error_of("root ::= " + std::string(1000, '(') + "\"a\"" + std::string(1000, ')')).find("deeper"),
            std::string::npos);
  // A long chain of rules is handled without native recursion; one with more open parses than
  // kMaxStacks is refused.
  auto chain = [](int n) {
    std::string g;
    for (int i = 0; i < n; ++i) g += fmt::format("r{} ::= r{} | \"z\"\n", i, i + 1);
    return g + fmt::format("r{} ::= \"end\"\nroot ::= r0\n", n);
  };
  GrammarState s(Grammar::parse(chain(3000)));
  EXPECT_TRUE(s.accepts("z"));
  EXPECT_TRUE(s.accepts("end"));
  try {
    GrammarState big(Grammar::parse(chain(20000)));
    FAIL() << "expected a limit error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::limit);
  }
  // Deep nesting in the text is cut off at kMaxDepth instead of growing without bound.
  GrammarState deep(Grammar::parse("root ::= \"[\" root \"]\" | \"x\""));
  EXPECT_FALSE(deep.feed(std::string(GrammarState::kMaxDepth + 10, '[')));
}

TEST(Grammar, AmbiguityIsBounded) {
  // 2^k parses of the same text: the stack sets are deduplicated, or refused past the limit.
  std::string g = "root ::= x*\nx ::= \"a\" | \"a\" | [a] | (\"a\")";
  GrammarState s(Grammar::parse(g));
  EXPECT_TRUE(s.feed(std::string(200, 'a')));
  EXPECT_LE(s.stacks().size(), 8u);
}

TEST(GrammarMasker, MasksTokensThroughTheTrie) {
  std::vector<std::string> pieces = {"", "{", "\"", "a", "ab", "\"}", "}", "x", "{\"", "\xce", "\xb1"};
  auto trie = std::make_shared<TokenTrie>(pieces);
  auto grammar = Grammar::parse("root ::= \"{\" \"\\\"\" [a-b]* \"\\\"\" \"}\"");
  GrammarMasker masker(trie);
  GrammarState s(grammar);
  std::vector<float> logits(pieces.size(), 1.0f);
  const tokenizer::Token eog[] = {0};
  EXPECT_EQ(masker.apply(s, logits, eog), 2u);  // "{" and "{\""
  EXPECT_TRUE(std::isinf(logits[0]));
  EXPECT_EQ(logits[1], 1.0f);
  EXPECT_EQ(logits[8], 1.0f);
  ASSERT_TRUE(s.feed("{\"a"));
  std::fill(logits.begin(), logits.end(), 1.0f);
  EXPECT_EQ(masker.apply(s, logits, eog), 4u);  // a, ab, ", "}
  ASSERT_TRUE(s.feed("\"}"));
  std::fill(logits.begin(), logits.end(), 1.0f);
  EXPECT_EQ(masker.apply(s, logits, eog), 1u);  // only the end of generation
  EXPECT_EQ(logits[0], 1.0f);
  // The cache answers a repeated state.
  GrammarState again(grammar);
  masker.allowed(again);
  EXPECT_GE(masker.cache_hits(), 1u);
}

}  // namespace
}  // namespace etna::engine
