// WordPiece (BERT): llama.cpp's bert-bge test vectors, the tiny-bert-bge reference prompts
// ([CLS] ... [SEP]), normalisation rules on a hand-built vocabulary, and bad input.
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/gguf/gguf_file.h"
#include "etna/tokenizer/encoder.h"
#include "etna/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace etna::tokenizer {
namespace {

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(WpmVectors, BertBge) {
  ETNA_REQUIRE_SHARED(path, "tokenizer/ggml-vocab-bert-bge.gguf");
  auto file = gguf::GgufFile::open(path.string());
  auto tok = Tokenizer::from_gguf(*file);
  const std::string inp = slurp(path.string() + ".inp");
  std::istringstream out(slurp(path.string() + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  EncodeOptions opts;
  opts.add_special = false;
  opts.parse_special = false;
  size_t n = 0;
  for (size_t pos = 0;;) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    const std::string text = inp.substr(pos, end - pos);
    pos = end + sep.size();
    std::string line;
    ASSERT_TRUE(std::getline(out, line)) << "missing .out line " << n;
    std::vector<Token> expected;
    std::istringstream ids(line);
    for (Token id; ids >> id;) expected.push_back(id);
    EXPECT_EQ(tok->encode(text, opts), expected) << "case " << n << ": [" << text << "]";
    ++n;
  }
  EXPECT_GE(n, 40u);
}

TEST(WpmReference, TinyBertBgePromptTokens) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/tiny-bert-bge-f32.json");
  auto file = gguf::GgufFile::open(model.string());
  auto tok = Tokenizer::from_gguf(*file);
  const auto json = nlohmann::json::parse(slurp(ref));
  ASSERT_FALSE(json.at("cases").empty());
  for (const auto& c : json.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const auto expected = c.at("tokens").get<std::vector<Token>>();
    EXPECT_EQ(tok->encode(prompt, EncodeOptions{}), expected) << prompt;  // [CLS] ... [SEP]
  }
}

// ---- a hand-built vocabulary ---------------------------------------------------------------

Vocab small_vocab() {
  Vocab v;
  v.kind = VocabKind::wpm;
  v.model = "bert";
  v.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁fu", "hrer", "▁hello", "▁,", "▁!", "▁東", "▁京",
              "▁un", "aff", "able", "▁unaffable", "▁a", "b", "▁$", "▁cafe", "▁—", "▁ab"};
  v.types.assign(v.tokens.size(), TokenType::normal);
  for (int i = 0; i < 4; ++i) v.types[i] = TokenType::control;
  v.types[1] = TokenType::unknown;
  v.unk = 1;
  v.cls = 2;
  v.sep = 3;
  for (size_t i = 0; i < v.tokens.size(); ++i) v.token_to_id[v.tokens[i]] = static_cast<Token>(i);
  return v;
}

std::vector<std::string> encode_texts(const std::string& text) {
  static const Vocab v = small_vocab();
  auto enc = make_wpm_encoder(v);
  std::vector<Token> ids;
  enc->encode(text, true, ids);
  std::vector<std::string> out;
  for (Token t : ids) out.push_back(v.tokens.at(t));
  return out;
}

using S = std::vector<std::string>;

TEST(WpmNormalisation, LowerCasesAndStripsAccents) {
  EXPECT_EQ(encode_texts("FÜHRER"), (S{"▁fu", "hrer"}));
  EXPECT_EQ(encode_texts("Fu\xCC\x88hrer"), (S{"▁fu", "hrer"}));  // already decomposed
  EXPECT_EQ(encode_texts("Café"), (S{"▁cafe"}));
}

TEST(WpmNormalisation, SplitsPunctuationSymbolsAndCjk) {
  EXPECT_EQ(encode_texts("hello,hello!"), (S{"▁hello", "▁,", "▁hello", "▁!"}));
  EXPECT_EQ(encode_texts("$hello"), (S{"▁$", "▁hello"}));
  EXPECT_EQ(encode_texts("東京"), (S{"▁東", "▁京"}));
  EXPECT_EQ(encode_texts("hello—hello"), (S{"▁hello", "▁—", "▁hello"}));
}

TEST(WpmNormalisation, DropsControlCharactersAndSplitsOnUnicodeSpace) {
  EXPECT_EQ(encode_texts("hel\x01lo\xE2\x80\x8B"), (S{"▁hello"}));  // U+0001, U+200B (Cf)
  EXPECT_EQ(encode_texts("hello\xE3\x80\x80hello\xC2\xA0\thello"), (S{"▁hello", "▁hello", "▁hello"}));
}

TEST(WpmGreedy, LongestMatchFirstWithContinuations) {
  EXPECT_EQ(encode_texts("unaffable"), (S{"▁unaffable"}));
  EXPECT_EQ(encode_texts("unaffableb"), (S{"▁unaffable", "b"}));
  EXPECT_EQ(encode_texts("abbb"), (S{"▁ab", "b", "b"}));
}

TEST(WpmGreedy, WordWithAnUnmatchablePartIsOneUnknown) {
  EXPECT_EQ(encode_texts("hello xyz hello"), (S{"▁hello", "[UNK]", "▁hello"}));
  EXPECT_EQ(encode_texts("unaffablez"), (S{"[UNK]"}));
  EXPECT_EQ(encode_texts("🦙"), (S{"[UNK]"}));
}

TEST(WpmPieces, WordStartMarkerIsASpace) {
  const Vocab v = small_vocab();
  auto enc = make_wpm_encoder(v);
  EXPECT_EQ(enc->token_to_piece(6), " hello");
  EXPECT_EQ(enc->token_to_piece(5), "hrer");
  EXPECT_EQ(enc->token_to_piece(9), " 東");
}

TEST(WpmRobustness, EmptyMalformedAndLargeInputs) {
  const Vocab v = small_vocab();
  auto enc = make_wpm_encoder(v);
  std::vector<Token> ids;
  enc->encode("", true, ids);
  EXPECT_TRUE(ids.empty());
  enc->encode(" \t\n ", true, ids);
  EXPECT_TRUE(ids.empty());

  // Invalid bytes read as U+FFFD, which BERT drops.
  ids.clear();
  enc->encode("hel\xFFlo \xC3 \xE2\x82hello", true, ids);
  std::vector<std::string> texts;
  for (Token t : ids) texts.push_back(v.tokens.at(t));
  EXPECT_EQ(texts, (S{"▁hello", "▁hello"}));

  std::mt19937 rng(7);
  std::string noise(1 << 20, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  ids.clear();
  enc->encode(noise, true, ids);
  for (Token t : ids) ASSERT_LT(static_cast<size_t>(t), v.size());

  // One 1 MB word of continuation pieces: "▁ab" then "b" repeated.
  ids.clear();
  enc->encode("a" + std::string((1 << 20) - 1, 'b'), true, ids);
  ASSERT_EQ(ids.size(), static_cast<size_t>((1 << 20) - 1));
  EXPECT_EQ(v.tokens[ids[0]], "▁ab");
}

}  // namespace
}  // namespace etna::tokenizer
