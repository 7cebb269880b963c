// SentencePiece tokenizer, the shared Tokenizer layer and `etna tokenize`, checked against
// llama.cpp's test vectors and reference prompts in ../shared.
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace etna::tokenizer {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The .inp format: texts separated by "\n__ggml_vocab_test__\n" (the file ends with one).
std::vector<std::string> read_inputs(const std::filesystem::path& p) {
  const std::string s = slurp(p), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t m; (m = s.find(sep, pos)) != std::string::npos; pos = m + sep.size()) out.push_back(s.substr(pos, m - pos));
  return out;
}

std::vector<std::vector<Token>> read_outputs(const std::filesystem::path& p) {
  std::istringstream in(slurp(p));
  std::vector<std::vector<Token>> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::vector<Token> ids;
    for (Token t; ls >> t;) ids.push_back(t);
    out.push_back(std::move(ids));
  }
  return out;
}

struct Loaded {
  std::unique_ptr<gguf::GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};
Loaded load(const std::filesystem::path& p) {
  Loaded l;
  l.file = gguf::GgufFile::open(p.string());
  l.tok = Tokenizer::from_gguf(*l.file);
  return l;
}

std::string show(const std::vector<Token>& ids) {
  std::string s;
  for (auto t : ids) s += std::to_string(t) + " ";
  return s;
}

void check_vectors(const std::filesystem::path& gguf_path) {
  auto l = load(gguf_path);
  const auto inputs = read_inputs(gguf_path.string() + ".inp");
  const auto expected = read_outputs(gguf_path.string() + ".out");
  ASSERT_GT(inputs.size(), 30u);
  ASSERT_EQ(inputs.size(), expected.size());
  EncodeOptions opt;
  opt.add_special = false;
  opt.parse_special = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto got = l.tok->encode(inputs[i], opt);
    EXPECT_EQ(got, expected[i]) << "text #" << i << " '" << inputs[i] << "'\n got: " << show(got)
                                << "\nwant: " << show(expected[i]);
  }
}

TEST(SpmTokenizer, LlamaSpmVectors) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  check_vectors(p);
}

TEST(SpmTokenizer, Phi3Vectors) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-phi-3.gguf");
  check_vectors(p);
}

// Every SPM model's reference prompts (add_special = true: BOS included).
TEST(SpmTokenizer, ReferencePromptTokens) {
  ETNA_REQUIRE_SHARED(dir, "reference");
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    const auto ref = nlohmann::json::parse(slurp(entry.path()));
    const auto model = test::shared_file("models/" + ref.at("model").get<std::string>());
    ASSERT_FALSE(model.empty()) << "missing model for " << entry.path();
    auto l = load(model);
    if (l.tok->vocab().kind != VocabKind::spm) continue;
    for (const auto& c : ref.at("cases")) {
      const auto want = c.at("tokens").get<std::vector<Token>>();
      EXPECT_EQ(l.tok->encode(c.at("prompt").get<std::string>()), want)
          << entry.path().filename() << ": '" << c.at("prompt").get<std::string>() << "'";
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(SpmVocab, DefaultsAndSpecialIds) {
  ETNA_REQUIRE_SHARED(p, "models/stories260K.gguf");
  auto l = load(p);
  const Vocab& v = l.tok->vocab();
  EXPECT_EQ(v.kind, VocabKind::spm);
  EXPECT_EQ(v.size(), 512u);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.unk, 0);
  EXPECT_EQ(v.sep, kNoToken);  // stored as 0xFFFFFFFF: "none"
  EXPECT_EQ(v.pad, kNoToken);
  EXPECT_EQ(v.nl, 13);         // <0x0A>
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_TRUE(v.is_control(1));
  EXPECT_TRUE(v.is_end_of_generation(2));
  EXPECT_FALSE(v.is_end_of_generation(1));
  EXPECT_FALSE(v.is_end_of_generation(300));
  EXPECT_FALSE(v.is_end_of_generation(-1));
  EXPECT_FALSE(v.is_end_of_generation(100000));
}

TEST(SpmVocab, Phi3EndOfGeneration) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-phi-3.gguf");
  auto l = load(p);
  const Vocab& v = l.tok->vocab();
  const Token end = v.find("<|end|>").value();
  const Token eot = v.find("<|endoftext|>").value();
  EXPECT_EQ(v.eos, eot);
  EXPECT_TRUE(v.is_end_of_generation(end));
  EXPECT_TRUE(v.is_end_of_generation(eot));
  EXPECT_TRUE(v.is_control(end));
  EXPECT_NE(v.eot, kNoToken);
  EXPECT_FALSE(v.is_end_of_generation(v.find("<|user|>").value()));
  // Control text is only a token with parse_special; phi-3 strips the whitespace after it.
  EncodeOptions special{false, true};
  const auto ids = l.tok->encode("<|user|>\nHi<|end|>", special);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), v.find("<|user|>").value());
  EXPECT_EQ(ids.back(), end);
  EXPECT_EQ(l.tok->decode(ids), "Hi");
  const auto plain = l.tok->encode("<|user|>", EncodeOptions{false, false});
  EXPECT_GT(plain.size(), 1u);
}

// A tiny vocabulary written in memory: errors must name the file.
gguf::GgufWriter tiny_vocab_writer() {
  using gguf::Value, gguf::ValueType;
  gguf::GgufWriter w;
  w.set("tokenizer.ggml.model", Value::string("llama"));
  std::vector<Value> toks, scores, types;
  for (const char* t : {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab"}) {
    toks.push_back(Value::string(t));
    scores.push_back(Value::floating(ValueType::FLOAT32, 0.0));
    types.push_back(Value::signed_int(ValueType::INT32, toks.size() <= 1 ? 2 : toks.size() <= 3 ? 3 : 1));
  }
  w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, toks));
  w.set("tokenizer.ggml.scores", Value::array(ValueType::FLOAT32, scores));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, types));
  return w;
}

std::string load_error(const gguf::GgufWriter& w) {
  const auto bytes = w.to_bytes();
  auto f = gguf::GgufFile::parse(bytes.data(), bytes.size(), "memory.gguf");
  try {
    Tokenizer::from_gguf(*f);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SpmVocab, ValidationErrorsNameTheFile) {
  using gguf::Value, gguf::ValueType;
  EXPECT_EQ(load_error(tiny_vocab_writer()), "");

  auto w = tiny_vocab_writer();
  w.set("tokenizer.ggml.scores", Value::array(ValueType::FLOAT32, {Value::floating(ValueType::FLOAT32, 0.0)}));
  EXPECT_NE(load_error(w).find("memory.gguf"), std::string::npos);
  EXPECT_NE(load_error(w).find("scores"), std::string::npos);

  w = tiny_vocab_writer();
  w.set("tokenizer.ggml.eos_token_id", Value::unsigned_int(ValueType::UINT32, 8));
  EXPECT_NE(load_error(w).find("eos_token_id"), std::string::npos);

  w = tiny_vocab_writer();
  w.set("tokenizer.ggml.model", Value::string("klingon"));
  EXPECT_NE(load_error(w).find("klingon"), std::string::npos);

  w = tiny_vocab_writer();
  w.set("tokenizer.ggml.model", Value::string("no_vocab"));
  EXPECT_NE(load_error(w).find("no vocabulary"), std::string::npos);

  w = tiny_vocab_writer();
  w.remove("tokenizer.ggml.model");
  EXPECT_NE(load_error(w).find("tokenizer.ggml.model"), std::string::npos);

  w = tiny_vocab_writer();
  w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, {Value::string("a"), Value::string("a")}));
  w.remove("tokenizer.ggml.scores");
  w.remove("tokenizer.ggml.token_type");
  EXPECT_NE(load_error(w).find("repeats"), std::string::npos);
}

// Tiny vocabulary without byte tokens: unknown characters become <unk>, merges follow scores.
TEST(SpmTokenizer, TinyVocabUnknownAndMerges) {
  const auto bytes = tiny_vocab_writer().to_bytes();
  auto f = gguf::GgufFile::parse(bytes.data(), bytes.size(), "memory.gguf");
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->encode("ab", {false, false}), (std::vector<Token>{6, 5}));  // "▁a" "b": scores tie, leftmost
  EXPECT_EQ(tok->encode("ab", {true, false}), (std::vector<Token>{1, 6, 5}));
  EXPECT_EQ(tok->encode("axb", {false, false}), (std::vector<Token>{6, 0, 5}));
  EXPECT_EQ(tok->encode("", {false, false}), std::vector<Token>{});
  EXPECT_EQ(tok->encode("", {true, false}), std::vector<Token>{1});
}

// Byte fallback, user-defined tokens (split out even without parse_special, as in llama.cpp) and
// the streaming detokeniser on a vocabulary built in memory (needs no ../shared).
TEST(SpmTokenizer, TinyVocabBytesUserDefinedAndStreaming) {
  using gguf::Value, gguf::ValueType;
  std::vector<Value> toks, types;
  auto add = [&](const std::string& t, int type) {
    toks.push_back(Value::string(t));
    types.push_back(Value::signed_int(ValueType::INT32, type));
  };
  add("<unk>", 2), add("<s>", 3), add("</s>", 3);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 6);
  add("\xE2\x96\x81", 1), add("a", 1), add("\xE2\x96\x81" "a", 1), add("<user>", 4);  // ids 259..262
  gguf::GgufWriter w;
  w.set("tokenizer.ggml.model", Value::string("llama"));
  w.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, toks));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, types));
  const auto bytes = w.to_bytes();
  auto f = gguf::GgufFile::parse(bytes.data(), bytes.size(), "memory.gguf");
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->vocab().nl, 3 + 10);
  EXPECT_EQ(tok->encode("x<user>a", {false, false}), (std::vector<Token>{259, 3 + 'x', 262, 261}));
  EXPECT_EQ(tok->encode("\xC3\xA9", {true, false}), (std::vector<Token>{1, 259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->decode({1, 259, 3 + 0xC3, 3 + 0xA9}), "\xC3\xA9");
  EXPECT_EQ(tok->token_to_piece(262), "<user>");
  Detokenizer d(*tok);
  EXPECT_EQ(d.push(1), "");
  EXPECT_EQ(d.push(259), "");  // the prefix space, dropped after BOS
  EXPECT_EQ(d.push(3 + 0xC3), "");
  EXPECT_EQ(d.push(3 + 0xA9), "\xC3\xA9");
  EXPECT_EQ(d.push(3 + 0xA9), "\xEF\xBF\xBD");  // a stray continuation byte
  EXPECT_EQ(d.push(261), " a");
  EXPECT_EQ(d.flush(), "");
}

TEST(SpmTokenizer, DecodeRoundTrips) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  auto l = load(p);
  for (const auto& text : read_inputs(p.string() + ".inp")) {
    EXPECT_EQ(l.tok->decode(l.tok->encode(text)), text);                    // with BOS
    EXPECT_EQ(l.tok->decode(l.tok->encode(text, {false, false})), text);    // without
    if (!text.empty()) {
      EXPECT_EQ(l.tok->decode(l.tok->encode(text), false), " " + text);  // the prefix space kept
    }
  }
}

TEST(SpmTokenizer, SpecialTokensAndPieces) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  auto l = load(p);
  const auto& tok = *l.tok;
  // Without parse_special, "<s>" is ordinary text.
  const auto plain = tok.encode("<s>Hello", {false, false});
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  const auto parsed = tok.encode("<s>Hello</s>", {false, true});
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[0], 1);
  EXPECT_EQ(parsed[1], tok.encode("Hello", {false, false})[0]);  // space prefix again after a special
  EXPECT_EQ(parsed[2], 2);
  EXPECT_EQ(tok.token_to_piece(1), "");
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.token_to_piece(3 + 0x0A), "\n");
  EXPECT_EQ(tok.token_to_piece(parsed[1]), " Hello");
  EXPECT_THROW(tok.token_to_piece(-1), Error);
  EXPECT_THROW(tok.token_to_piece(32000), Error);
}

TEST(SpmTokenizer, DetokenizerHoldsBackSplitCharacters) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  auto l = load(p);
  const auto byte = [](int b) { return static_cast<Token>(3 + b); };  // <0x00> is token 3
  Detokenizer d(*l.tok);
  EXPECT_EQ(d.push(1), "");  // BOS
  const Token hello = l.tok->encode("Hello", {false, false})[0];
  EXPECT_EQ(d.push(hello), "Hello");  // the space after BOS is dropped
  // U+1F999 (🦙) as four byte tokens: nothing until the last byte.
  EXPECT_EQ(d.push(byte(0xF0)), "");
  EXPECT_EQ(d.push(byte(0x9F)), "");
  EXPECT_EQ(d.push(byte(0xA6)), "");
  EXPECT_EQ(d.push(byte(0x99)), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(d.push(hello), " Hello");
  // Invalid bytes come out as U+FFFD at once; a broken sequence yields one U+FFFD then the text.
  EXPECT_EQ(d.push(byte(0xFF)), "\xEF\xBF\xBD");
  EXPECT_EQ(d.push(byte(0xE2)), "");
  EXPECT_EQ(d.push(hello), "\xEF\xBF\xBD Hello");
  EXPECT_EQ(d.push(byte(0xC3)), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(d.flush(), "");

  // Streaming a whole sequence gives what decode gives.
  const std::string text = "Füße 🦙 and 日本語 text";
  const auto ids = l.tok->encode(text);
  Detokenizer d2(*l.tok);
  std::string streamed;
  for (auto t : ids) streamed += d2.push(t);
  streamed += d2.flush();
  EXPECT_EQ(streamed, text);
  // A continuation (no BOS first) keeps its leading space.
  Detokenizer d3(*l.tok);
  EXPECT_EQ(d3.push(hello), " Hello");
}

TEST(SpmTokenizer, MalformedEmptyAndLargeInputs) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  auto l = load(p);
  const auto& tok = *l.tok;
  EXPECT_TRUE(tok.encode("", {false, false}).empty());
  EXPECT_EQ(tok.encode("", {true, false}), std::vector<Token>{1});

  // Malformed UTF-8 falls back to byte tokens, so it survives a round trip byte for byte.
  for (std::string bad : {std::string("\xFF\xFE\xFD"), std::string("abc\xC3"), std::string("\xE2\x96"),
                          std::string("\x80\x80 x \xF4\x90\x80\x80"), std::string("a\0b", 3)}) {
    const auto ids = tok.encode(bad, {false, true});
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok.decode(ids), bad);
  }

  // 1 MB of valid text: lossless. Random bytes: no crash, ids in range (a broken lead byte may
  // swallow the following escaped space, exactly as in llama.cpp, so no round trip there).
  std::mt19937 rng(42);
  std::string big;
  const std::string words[] = {"the ", "quick ", "brown ", "fox ", "日本 ", "🦙", "\n", "  ", "Straße ", "x"};
  while (big.size() < (1u << 20)) big += words[rng() % std::size(words)];
  const auto ids = tok.encode(big, {false, false});
  EXPECT_GT(ids.size(), big.size() / 16);
  EXPECT_TRUE(tok.decode(ids) == big);
  std::string noise(1 << 16, '\0');
  for (char& c : noise) c = static_cast<char>(rng() % 256);
  for (Token t : tok.encode(noise, {true, true})) ASSERT_TRUE(t >= 0 && t < static_cast<Token>(tok.vocab().size()));

  // One long run without any merge opportunity and one long run of spaces.
  const std::string spaces(1 << 20, ' ');
  EXPECT_TRUE(tok.decode(tok.encode(spaces, {false, false})) == spaces);
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

TEST(SpmCli, TokenizeVerbatimText) {
  ETNA_REQUIRE_SHARED(p, "tokenizer/ggml-vocab-llama-spm.gguf");
  auto l = load(p);
  const std::string bin = test::etna_binary().string();
  const std::string model = shell_quote(p.string());
  std::string out;

  // A lone space after --, without BOS: exactly the library's ids.
  ASSERT_EQ(test::run_command(bin + " tokenize -m " + model + " --no-bos -- ' '", &out), 0) << out;
  const auto space = l.tok->encode(" ", {false, false});
  EXPECT_EQ(nlohmann::json::parse(out).get<std::vector<Token>>(), space);
  EXPECT_EQ(space, std::vector<Token>{259});  // "▁▁"

  ASSERT_EQ(test::run_command(bin + " tokenize -m " + model + " -- ''", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out), nlohmann::json::parse("[1]"));

  ASSERT_EQ(test::run_command(bin + " tokenize -m " + model + " --pieces 'Hello world'", &out), 0) << out;
  const auto pieces = nlohmann::json::parse(out);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0], nlohmann::json::parse(R"([1, "<s>"])"));
  EXPECT_EQ(pieces[1][1], " Hello");
  EXPECT_EQ(pieces[2][1], " world");

  ASSERT_EQ(test::run_command(bin + " tokenize -m " + model + " --no-bos --parse-special -- '<s>x'", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)[0], 1);

  // --file: newlines and trailing spaces kept verbatim.
  test::TempDir tmp;
  const std::string text = "line one\n  line two \n";
  std::ofstream(tmp / "t.txt", std::ios::binary) << text;
  ASSERT_EQ(test::run_command(bin + " tokenize -m " + model + " --no-bos --file " + shell_quote((tmp / "t.txt").string()), &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out).get<std::vector<Token>>(), l.tok->encode(text, {false, false}));

  // Errors: one line, non-zero exit.
  EXPECT_NE(test::run_command(bin + " tokenize -m /nonexistent.gguf hi", &out, true), 0);
  EXPECT_NE(out.find("nonexistent"), std::string::npos);
  EXPECT_NE(test::run_command(bin + " tokenize -m " + model, &out, true), 0);
}

}  // namespace
}  // namespace etna::tokenizer
