// Embedder tests: the bert encoder against llama.cpp's embeddings of tiny-bert-bge-f32 (tokens
// and vectors), batching, length limits, the pooling types, mean-pooled decoder embeddings,
// and `etna embed` end to end.
#include "etna/engine/embedder.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/bert.h"
#include "etna/model/model.h"
#include "support/test_support.h"

namespace etna::engine {
namespace {

using nlohmann::json;

struct RefCase {
  std::string prompt;
  std::vector<int32_t> tokens;
  std::vector<float> embedding;
};

std::vector<RefCase> load_cases(const std::filesystem::path& path) {
  std::ifstream in(path);
  const json j = json::parse(in);
  EXPECT_EQ(j["mode"], "embd");
  std::vector<RefCase> out;
  for (const json& c : j["cases"])
    out.push_back({c["prompt"], c["tokens"].get<std::vector<int32_t>>(), c["embedding"].get<std::vector<float>>()});
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

std::vector<float> normalized(std::vector<float> v) {
  const double n = norm(v);
  for (float& x : v) x = static_cast<float>(x / n);
  return v;
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

constexpr double kMinCosine = 0.9999;  // ../shared/reference/README.md

TEST(BertEmbedder, MatchesLlamaCppReference) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/tiny-bert-bge-f32.json");
  const std::vector<RefCase> cases = load_cases(ref);
  ASSERT_FALSE(cases.empty());
  auto e = Embedder::load(model.string());
  EXPECT_EQ(e->dim(), 64);
  EXPECT_EQ(e->max_tokens(), 128);
  EXPECT_EQ(e->model_name(), "tiny-bert-bge-f32");

  double min_cos = 1.0;
  for (const RefCase& c : cases) {
    tokenizer::EncodeOptions opt;
    opt.add_special = true;
    EXPECT_EQ(e->tokenizer().encode(c.prompt, opt), c.tokens) << c.prompt;
    EXPECT_EQ(e->count_tokens({c.prompt}), std::vector<int>{static_cast<int>(c.tokens.size())});
    const std::vector<std::vector<float>> got = e->embed({c.prompt});
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].size(), c.embedding.size());
    EXPECT_NEAR(norm(got[0]), 1.0, 1e-5);
    const double cos = cosine(got[0], c.embedding);
    EXPECT_GE(cos, kMinCosine) << c.prompt;
    min_cos = std::min(min_cos, cos);
  }
  // The reference vectors are llama.cpp's mean-pooled states before normalisation (norm ~6.6),
  // so the encoder's own mean can be compared element by element too.
  auto bert = model::BertModel::load(model.string());
  double max_raw = 0.0;
  for (const RefCase& c : cases) {
    std::vector<float> hidden;
    bert->forward(c.tokens, hidden);
    const int n = static_cast<int>(c.tokens.size()), E = bert->config().n_embd;
    for (int i = 0; i < E; ++i) {
      float mean = 0.0f;
      for (int t = 0; t < n; ++t) mean += hidden[static_cast<size_t>(t) * E + i] / n;
      max_raw = std::max(max_raw, static_cast<double>(std::fabs(mean - c.embedding[i])));
    }
  }
  EXPECT_LT(max_raw, 1e-4);
  std::cout << "[ measured ] tiny-bert-bge-f32: max |mean-pooled - llama.cpp| = " << max_raw << "\n";
  std::cout << "[ measured ] tiny-bert-bge-f32: min cosine with llama.cpp = " << min_cos << " (1 - cos = "
            << 1.0 - min_cos << ")\n";
  RecordProperty("min_cosine", std::to_string(min_cos));
}

TEST(BertEmbedder, BatchEqualsEachAlone) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/tiny-bert-bge-f32.json");
  auto e = Embedder::load(model.string());
  std::vector<std::string> texts;
  for (const RefCase& c : load_cases(ref)) texts.push_back(c.prompt);
  texts.push_back("");  // [CLS] [SEP] only
  texts.push_back(texts[0]);
  const auto batch = e->embed(texts);
  ASSERT_EQ(batch.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], e->embed({texts[i]})[0]) << texts[i];
  EXPECT_EQ(batch.front(), batch.back());
  EXPECT_NE(batch[0], batch[1]);
  EXPECT_TRUE(e->embed({}).empty());
}

TEST(BertEmbedder, TooLongFailsUnlessTruncated) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  auto e = Embedder::load(model.string());
  // "a" is one WordPiece token: [CLS] a x n [SEP] is n + 2 tokens.
  const std::string fits = repeat("a ", e->max_tokens() - 2);
  const std::string too_long = repeat("a ", e->max_tokens() + 50);
  ASSERT_EQ(e->count_tokens({fits, too_long}), (std::vector<int>{e->max_tokens(), e->max_tokens() + 52}));
  EXPECT_EQ(e->embed({fits}).size(), 1u);
  try {
    e->embed({"short", too_long});
    FAIL() << "no error for a text longer than max_tokens";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::limit);
    EXPECT_NE(std::string(err.what()).find("input 1 is too long: 180 tokens"), std::string::npos) << err.what();
  }
  // Truncation keeps [CLS], the first tokens and the closing [SEP]: the same as the text that fits.
  const auto cut = e->embed({too_long}, /*truncate=*/true);
  EXPECT_EQ(cut[0], e->embed({fits})[0]);
}

// Rewrites the bert model with another pooling_type and compares against its hidden states.
TEST(BertEmbedder, PoolingTypeFromTheFile) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  auto bert = model::BertModel::load(model.string());
  ASSERT_EQ(bert->config().pooling, model::Pooling::mean);
  const std::string text = "pooling decides which tokens count";
  auto mean_e = Embedder::load(model.string());
  tokenizer::EncodeOptions opt;
  const std::vector<int32_t> tokens = mean_e->tokenizer().encode(text, opt);
  const int n = static_cast<int>(tokens.size()), E = bert->config().n_embd;
  std::vector<float> hidden;
  bert->forward(tokens, hidden);
  ASSERT_EQ(hidden.size(), static_cast<size_t>(n) * E);

  std::vector<float> mean(E, 0.0f);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < E; ++i) mean[i] += hidden[static_cast<size_t>(t) * E + i] / n;
  EXPECT_GE(cosine(mean_e->embed({text})[0], mean), 0.999999);

  etna::test::TempDir dir;
  const std::vector<std::pair<int, int>> row_of = {{2, 0}, {3, n - 1}};  // cls: first token, last: last token
  for (auto [pooling, row] : row_of) {
    auto file = gguf::GgufFile::open(model.string());
    gguf::GgufWriter w = gguf::GgufWriter::from_file(*file);
    w.set("bert.pooling_type", gguf::Value::unsigned_int(gguf::ValueType::UINT32, pooling));
    const std::string path = (dir / ("pooling" + std::to_string(pooling) + ".gguf")).string();
    w.write(path);
    auto e = Embedder::load(path);
    const std::vector<float> want =
        normalized(std::vector<float>(hidden.begin() + static_cast<size_t>(row) * E,
                                      hidden.begin() + static_cast<size_t>(row + 1) * E));
    const std::vector<float> got = e->embed({text})[0];
    ASSERT_EQ(got.size(), want.size());
    for (int i = 0; i < E; ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << "pooling " << pooling << " dim " << i;
  }
  // A reranker is not an embedding model.
  auto file = gguf::GgufFile::open(model.string());
  gguf::GgufWriter w = gguf::GgufWriter::from_file(*file);
  w.set("bert.pooling_type", gguf::Value::unsigned_int(gguf::ValueType::UINT32, 4));
  w.write((dir / "rank.gguf").string());
  EXPECT_THROW(Embedder::load((dir / "rank.gguf").string()), Error);
}

TEST(BertEmbedder, BadInputIsOneError) {
  EXPECT_THROW(Embedder::load("/nonexistent/model.gguf"), Error);
  ETNA_REQUIRE_SHARED(vocab_only, "tokenizer/ggml-vocab-bert-bge.gguf");
  try {
    Embedder::load(vocab_only.string());
    FAIL() << "a vocabulary-only file loaded as an embedder";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find(vocab_only.string()), std::string::npos) << err.what();
  }
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  auto bert = model::BertModel::load(model.string());
  std::vector<float> hidden;
  EXPECT_THROW(bert->forward({}, hidden), Error);
  EXPECT_THROW(bert->forward({101, 30522, 102}, hidden), Error);
  EXPECT_THROW(bert->forward(std::vector<int32_t>(129, 1037), hidden), Error);
}

// The decoder's hidden states are what the logits are made from: projecting them with the
// output matrix gives forward()'s logits, so they are the normalised pre-projection states.
TEST(DecoderEmbedder, HiddenStatesProjectToTheLogits) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto m = model::Model::load(path.string());
  const model::ModelConfig& c = m->config();
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378};
  model::Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int>(i), 0, true);
  std::vector<float> logits, hidden;
  auto cache = m->make_cache(1, 16);
  m->forward(b, *cache, logits);
  auto cache2 = m->make_cache(1, 16);
  m->forward_hidden(b, *cache2, hidden);
  ASSERT_EQ(hidden.size(), tokens.size() * c.n_embd);
  EXPECT_EQ(cache2->length(0), static_cast<int>(tokens.size()));

  const gguf::TensorInfo* out = m->file().find_tensor(c.tied_output ? "token_embd.weight" : "output.weight");
  ASSERT_NE(out, nullptr);
  tensor::Matrix w;
  w.type = out->type;
  w.cols = static_cast<int64_t>(out->dims[0]);
  w.rows = static_cast<int64_t>(out->dims[1]);
  w.data = out->data;
  w.row_bytes = tensor::row_bytes(out->type, w.cols);
  std::vector<float> projected(tokens.size() * c.n_vocab);
  tensor::matmul(w, hidden.data(), static_cast<int64_t>(tokens.size()), projected.data());
  ASSERT_EQ(projected.size(), logits.size());
  for (size_t i = 0; i < logits.size(); ++i) ASSERT_NEAR(projected[i], logits[i], 1e-4f * (1 + std::fabs(logits[i])));
}

TEST(DecoderEmbedder, MeanPooledUnitVectors) {
  ETNA_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto e = Embedder::load(path.string());
  auto m = model::Model::load(path.string());
  const int E = m->config().n_embd;
  EXPECT_EQ(e->dim(), E);
  EXPECT_EQ(e->max_tokens(), m->config().n_ctx_train);

  const std::vector<std::string> texts = {"Once upon a time", "The cat sat on the mat.", "Once upon a time"};
  const auto v = e->embed(texts);
  ASSERT_EQ(v.size(), 3u);
  for (const auto& x : v) {
    ASSERT_EQ(x.size(), static_cast<size_t>(E));
    EXPECT_NEAR(norm(x), 1.0, 1e-5);
  }
  EXPECT_EQ(v[0], v[2]);
  EXPECT_LT(cosine(v[0], v[1]), 0.9999);
  EXPECT_EQ(e->embed({texts[1]})[0], v[1]);

  // The mean over every token (BOS included) of the final-normalised hidden states.
  tokenizer::EncodeOptions opt;
  const std::vector<int32_t> tokens = e->tokenizer().encode(texts[0], opt);
  EXPECT_EQ(e->count_tokens({texts[0]}), std::vector<int>{static_cast<int>(tokens.size())});
  model::Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int>(i), 0, false);
  auto cache = m->make_cache(1, static_cast<int>(tokens.size()));
  std::vector<float> hidden;
  m->forward_hidden(b, *cache, hidden);
  std::vector<float> mean(E, 0.0f);
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int i = 0; i < E; ++i) mean[i] += hidden[t * E + i];
  EXPECT_GE(cosine(v[0], mean), 0.999999);
}

TEST(DecoderEmbedder, QuantisedLlamaLoads) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-spm-q8_0.gguf");
  auto e = Embedder::load(path.string());
  const auto v = e->embed({"hello world", "hello world"});
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].size(), static_cast<size_t>(e->dim()));
  EXPECT_NEAR(norm(v[0]), 1.0, 1e-5);
  EXPECT_EQ(v[0], v[1]);
}

TEST(CliEmbed, MatchesReference) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/tiny-bert-bge-f32.json");
  const std::vector<RefCase> cases = load_cases(ref);
  etna::test::TempDir dir;
  // The first case as an argument, the rest from --file (one per line; the fourth case's
  // prompt has a newline, so it goes as an argument too).
  std::string cmd = etna::test::etna_binary().string() + " embed -m " + quote(model.string()) + " " +
                    quote(cases[0].prompt) + " " + quote(cases[3].prompt) + " --file " +
                    quote((dir / "texts.txt").string());
  {
    std::ofstream f(dir / "texts.txt");
    f << cases[1].prompt << "\n\n" << cases[2].prompt << "\r\n";
  }
  std::string out;
  ASSERT_EQ(etna::test::run_command(cmd, &out), 0) << out;
  const json got = json::parse(out);
  ASSERT_TRUE(got.is_array());
  ASSERT_EQ(got.size(), 4u);
  const int order[] = {0, 3, 1, 2};
  for (int i = 0; i < 4; ++i)
    EXPECT_GE(cosine(got[i].get<std::vector<float>>(), cases[order[i]].embedding), kMinCosine) << i;
}

TEST(CliEmbed, ErrorsAreOneLine) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  const std::string bin = etna::test::etna_binary().string() + " embed -m " + quote(model.string());
  std::string out;
  EXPECT_NE(etna::test::run_command(bin + " " + quote(repeat("a ", 200)), &out, true), 0);
  EXPECT_EQ(out, "etna: error: input 0 is too long: 202 tokens, the model takes at most 128\n");
  ASSERT_EQ(etna::test::run_command(bin + " --truncate " + quote(repeat("a ", 200)), &out), 0) << out;
  EXPECT_EQ(json::parse(out).size(), 1u);
  EXPECT_NE(etna::test::run_command(bin, &out, true), 0);
  EXPECT_EQ(out.rfind("etna: error: ", 0), 0u) << out;
  EXPECT_NE(etna::test::run_command(bin + " --file /nonexistent.txt", &out, true), 0);
  EXPECT_EQ(out.rfind("etna: error: ", 0), 0u) << out;
}

}  // namespace
}  // namespace etna::engine
