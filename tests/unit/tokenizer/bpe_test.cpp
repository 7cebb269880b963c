// Byte-level BPE: llama.cpp's test vectors (gpt-2, starcoder, falcon), the qwen2/gpt-2 model's
// reference prompt tokens, merge order on a hand-built vocabulary, every named pre-tokeniser,
// and bad input (malformed UTF-8, empty, 1 MB).
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/tokenizer/encoder.h"
#include "etna/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace etna::tokenizer {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct VectorCase {
  std::string text;
  std::vector<Token> expected;
};

// llama.cpp's .inp/.out pairs: texts separated by "\n__ggml_vocab_test__\n", one id line each.
std::vector<VectorCase> load_vectors(const std::filesystem::path& gguf_path) {
  const std::string inp = read_file(gguf_path.string() + ".inp");
  const std::string out = read_file(gguf_path.string() + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<VectorCase> cases;
  for (size_t pos = 0;;) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (auto& c : cases) {
    if (!std::getline(lines, line)) break;
    std::istringstream ids(line);
    Token id;
    while (ids >> id) c.expected.push_back(id);
  }
  return cases;
}

void check_vectors(const std::string& name) {
  const std::filesystem::path path = test::shared_file("tokenizer/" + name);
  ASSERT_FALSE(path.empty());
  auto file = gguf::GgufFile::open(path.string());
  auto tok = Tokenizer::from_gguf(*file);
  const auto cases = load_vectors(path);
  ASSERT_GE(cases.size(), 40u) << name;
  EncodeOptions opts;
  opts.add_special = false;
  opts.parse_special = false;
  size_t index = 0;
  for (const auto& c : cases) {
    EXPECT_EQ(tok->encode(c.text, opts), c.expected) << name << " case " << index << ": [" << c.text << "]";
    ++index;
  }
}

std::string concat_pieces(const Encoder& enc, const std::vector<Token>& ids) {
  std::string s;
  for (Token t : ids) s += enc.token_to_piece(t);
  return s;
}

TEST(BpeVectors, Gpt2) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-gpt-2.gguf");
  check_vectors("ggml-vocab-gpt-2.gguf");
}

TEST(BpeVectors, Starcoder) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-starcoder.gguf");
  check_vectors("ggml-vocab-starcoder.gguf");
}

TEST(BpeVectors, Falcon) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-falcon.gguf");
  check_vectors("ggml-vocab-falcon.gguf");
}

TEST(BpeReference, TinyQwen2PromptTokens) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-qwen2-gpt2-q8_0.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/tiny-qwen2-gpt2-q8_0.json");
  auto file = gguf::GgufFile::open(model.string());
  auto tok = Tokenizer::from_gguf(*file);
  const auto json = nlohmann::json::parse(read_file(ref));
  ASSERT_FALSE(json.at("cases").empty());
  for (const auto& c : json.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const auto expected = c.at("tokens").get<std::vector<Token>>();
    EncodeOptions opts;  // add_special = true, parse_special = false, as the reference was made
    EXPECT_EQ(tok->encode(prompt, opts), expected) << prompt;
  }
}

// ---- a hand-built vocabulary: every byte, plus the merges a test names ----------------------

std::string byte_char(unsigned char b) {
  // GPT-2's table: printable Latin-1 stands for itself, the rest maps to U+0100.. in order.
  auto printable = [](int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE); };
  uint32_t cpt = b;
  if (!printable(b)) {
    cpt = 256;
    for (int c = 0; c < b; ++c) cpt += printable(c) ? 0 : 1;
  }
  std::string s;
  if (cpt < 0x80) {
    s.push_back(static_cast<char>(cpt));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    s.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
  return s;
}

Vocab byte_vocab(const std::string& pre, const std::vector<std::string>& merges,
                 const std::vector<std::string>& extra_tokens = {}) {
  Vocab v;
  v.kind = VocabKind::bpe;
  v.model = "gpt2";
  v.pre = pre;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_char(static_cast<unsigned char>(b)));
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    v.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  for (const auto& t : extra_tokens) v.tokens.push_back(t);
  v.merges = merges;
  v.types.assign(v.tokens.size(), TokenType::normal);
  for (size_t i = 0; i < v.tokens.size(); ++i) v.token_to_id[v.tokens[i]] = static_cast<Token>(i);
  return v;
}

std::vector<std::string> texts_of(const Vocab& v, const std::vector<Token>& ids) {
  std::vector<std::string> out;
  for (Token t : ids) out.push_back(v.tokens.at(t));
  return out;
}

TEST(BpeMerges, LowestRankFirst) {
  {
    Vocab v = byte_vocab("gpt-2", {"b c", "a bc"});
    auto enc = make_bpe_encoder(v);
    std::vector<Token> out;
    enc->encode("abc", true, out);
    EXPECT_EQ(texts_of(v, out), std::vector<std::string>{"abc"});
  }
  {
    // "a b" outranks "b c", so "bc" never forms and "a bc" cannot apply.
    Vocab v = byte_vocab("gpt-2", {"a b", "b c", "a bc"});
    auto enc = make_bpe_encoder(v);
    std::vector<Token> out;
    enc->encode("abc", true, out);
    EXPECT_EQ(texts_of(v, out), (std::vector<std::string>{"ab", "c"}));
  }
}

TEST(BpeMerges, EqualRanksMergeLeftmostFirst) {
  Vocab v = byte_vocab("gpt-2", {"a a", "aa aa"});
  auto enc = make_bpe_encoder(v);
  std::vector<Token> out;
  enc->encode("aaaaa", true, out);
  EXPECT_EQ(texts_of(v, out), (std::vector<std::string>{"aaaa", "a"}));
}

TEST(BpeMerges, SpaceIsByteMapped) {
  const std::string g = byte_char(' ');  // "Ġ"
  Vocab v = byte_vocab("gpt-2", {g + " h", g + "h i"});
  auto enc = make_bpe_encoder(v);
  std::vector<Token> out;
  enc->encode("hi hi", true, out);
  EXPECT_EQ(texts_of(v, out), (std::vector<std::string>{"h", "i", g + "hi"}));
  EXPECT_EQ(concat_pieces(*enc, out), "hi hi");
}

TEST(BpeMerges, LongWordsStayFast) {
  // A 200 kB single pre-token with a ladder of merges: quadratic merging would take minutes.
  Vocab v = byte_vocab("gpt-2", {"a a", "aa aa", "aaaa aaaa", "aaaaaaaa aaaaaaaa"});
  auto enc = make_bpe_encoder(v);
  std::vector<Token> out;
  enc->encode(std::string(200000, 'a'), true, out);
  ASSERT_EQ(out.size(), 200000u / 16);
  EXPECT_EQ(v.tokens[out[0]], std::string(16, 'a'));
}

TEST(BpePreTokenizers, IgnoreMergesTakesWholeTokens) {
  // llama-bpe takes a pre-token that is itself a token without merging.
  const std::string g = byte_char(' ');
  Vocab v = byte_vocab("llama-bpe", {}, {"Hello", g + "world", "123", g + "!!"});
  auto enc = make_bpe_encoder(v);
  std::vector<Token> out;
  enc->encode("Hello world 12345 !!", true, out);
  EXPECT_EQ(texts_of(v, out),
            (std::vector<std::string>{"Hello", g + "world", g, "123", "4", "5", g + "!!"}));
}

TEST(BpePreTokenizers, DigitSplittingByPreTokenizer) {
  ETNA_REQUIRE_SHARED(path, "tokenizer/ggml-vocab-gpt-2.gguf");
  auto file = gguf::GgufFile::open(path.string());
  Vocab base = Vocab::from_gguf(*file);
  auto encode_with = [&](const std::string& pre, const std::string& text) {
    Vocab v = base;
    v.pre = pre;
    auto enc = make_bpe_encoder(v);
    std::vector<Token> out;
    enc->encode(text, true, out);
    return texts_of(v, out);
  };
  using S = std::vector<std::string>;
  // gpt-2 keeps a run of digits as one pre-token; its merges happen to give "123" "45".
  EXPECT_EQ(encode_with("gpt-2", "12345"), (S{"123", "45"}));
  // qwen2 and starcoder split every digit; llama3 groups digits by three.
  EXPECT_EQ(encode_with("qwen2", "12345"), (S{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(encode_with("starcoder", "12345"), (S{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(encode_with("llama-bpe", "1234567"), (S{"123", "456", "7"}));
  EXPECT_EQ(encode_with("falcon", "1234567"), (S{"123", "456", "7"}));
  // qwen2/llama3 keep newlines apart from the following text; gpt-2 does too, but attaches
  // the space before a word to the word.
  EXPECT_EQ(encode_with("qwen2", "a\n\nb"), (S{"a", "ĊĊ", "b"}));
  EXPECT_EQ(encode_with("gpt-2", "a  b"), (S{"a", "Ġ", "Ġb"}));
}

TEST(BpePreTokenizers, EveryNamedPreTokenizerRoundTrips) {
  ETNA_REQUIRE_SHARED(path, "tokenizer/ggml-vocab-gpt-2.gguf");
  auto file = gguf::GgufFile::open(path.string());
  Vocab base = Vocab::from_gguf(*file);
  const std::string text =
      "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～\n\n  \tcode(x) { return x+1; }  "
      "Führer ½ 東京. l'été 𝔘𝔫𝔦 \r\n end   ";
  for (const char* pre : {"default", "gpt-2", "llama-bpe", "llama3", "qwen2", "starcoder", "falcon",
                          "deepseek-llm", "deepseek-coder", "deepseek-v3", "mpt", "refact", "gpt-neox",
                          "olmo", "dbrx", "smaug-bpe", "command-r", "poro-chat", "viking", "tekken",
                          "chameleon", "bloom", "chatglm-bpe", "not-a-known-pre-tokenizer"}) {
    Vocab v = base;
    v.pre = pre;
    auto enc = make_bpe_encoder(v);
    std::vector<Token> out;
    enc->encode(text, true, out);
    EXPECT_FALSE(out.empty()) << pre;
    EXPECT_EQ(concat_pieces(*enc, out), text) << pre;
  }
}

// ---- bad input --------------------------------------------------------------------------------

class BpeRobustness : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto path = test::shared_file("tokenizer/ggml-vocab-gpt-2.gguf");
    if (path.empty()) GTEST_SKIP() << "skipped: ../shared not found (tokenizer/ggml-vocab-gpt-2.gguf)";
    auto file = gguf::GgufFile::open(path.string());
    tok_ = Tokenizer::from_gguf(*file);
  }
  std::vector<Token> encode(std::string_view text) const {
    EncodeOptions opts;
    opts.add_special = false;
    return tok_->encode(text, opts);
  }
  std::string decode_pieces(const std::vector<Token>& ids) const {
    std::string s;
    for (Token t : ids) s += tok_->token_to_piece(t);
    return s;
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(BpeRobustness, EmptyGivesNothing) { EXPECT_TRUE(encode("").empty()); }

TEST_F(BpeRobustness, MalformedUtf8BecomesReplacementCharacters) {
  // As in llama.cpp, every byte that does not start a well-formed sequence reads as U+FFFD.
  const std::string bad[] = {"\x80", "a\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xFF\xFE",
                             "\xED\xA0\x80", "\xF5\x80\x80\x80", std::string("nul\0byte", 8)};
  for (const auto& text : bad) {
    const auto ids = encode(text);
    EXPECT_FALSE(ids.empty());
    const std::string decoded = decode_pieces(ids);
    // Valid UTF-8 out, and the ASCII parts kept in order.
    std::string ascii_in, ascii_out;
    for (char c : text) if (static_cast<unsigned char>(c) < 0x80) ascii_in += c;
    for (char c : decoded) if (static_cast<unsigned char>(c) < 0x80) ascii_out += c;
    EXPECT_EQ(ascii_out, ascii_in);
  }
  EXPECT_EQ(decode_pieces(encode("a\xFF" "b")), "a\xEF\xBF\xBD" "b");
  // An overlong form reads as its code point (llama.cpp only checks continuation bytes).
  EXPECT_EQ(decode_pieces(encode("x\xC0\xAFy")), "x/y");
  EXPECT_EQ(decode_pieces(encode("\xE2\x82 ok")), "\xEF\xBF\xBD\xEF\xBF\xBD ok");
}

TEST_F(BpeRobustness, RandomBytesNeverCrash) {
  std::mt19937 rng(42);
  std::string text(20000, '\0');
  for (char& c : text) c = static_cast<char>(rng());
  const auto ids = encode(text);
  EXPECT_FALSE(ids.empty());
  for (Token t : ids) ASSERT_LT(static_cast<size_t>(t), tok_->vocab().size());
}

TEST_F(BpeRobustness, OneMegabyteInputs) {
  const size_t mb = 1 << 20;
  std::string words;
  while (words.size() < mb) words += "The quick brown fox, 12345 times; émigré 東京!\n";
  for (const std::string& text : {std::string(mb, 'a'), std::string(mb, ' '), std::string(mb, '!'), words}) {
    const auto ids = encode(text);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(decode_pieces(ids), text);
  }
}

}  // namespace
}  // namespace etna::tokenizer
