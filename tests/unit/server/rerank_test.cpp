// Cross-encoder reranking: a tiny reranker GGUF is built here from the shared bert model plus a
// random classification head; its scores must equal the head applied (independently, here) to the
// model's [CLS] state, rankings follow the scores, and POST /v1/rerank has the peer's shape.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/engine/reranker.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/bert.h"
#include "etna/rag/rerank.h"
#include "etna/rag/ingest.h"
#include "etna/server/docs_api.h"
#include "etna/server/rerank_api.h"
#include "support/test_support.h"

namespace etna {
namespace {

using nlohmann::json;

struct TinyReranker {
  std::vector<float> w1, b1, w2, b2;  // cls (E x E), cls.bias, cls.output (1 x E), cls.output.bias
  int E = 0;
};

// Writes `out`: the shared bert file with pooling_type rank and a seeded random head.
TinyReranker make_reranker(const std::filesystem::path& bert, const std::filesystem::path& out) {
  auto src = gguf::GgufFile::open(bert.string());
  gguf::GgufWriter w = gguf::GgufWriter::from_file(*src);
  w.set("bert.pooling_type", gguf::Value::unsigned_int(gguf::ValueType::UINT32, 4));
  TinyReranker r;
  r.E = static_cast<int>(src->get_uint("bert.embedding_length").value());
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  auto fill = [&](std::vector<float>& v, size_t n) {
    v.resize(n);
    for (float& x : v) x = nd(rng);
  };
  fill(r.w1, static_cast<size_t>(r.E) * r.E);
  fill(r.b1, r.E);
  fill(r.w2, r.E);
  fill(r.b2, 1);
  const auto E = static_cast<uint64_t>(r.E);
  w.add_tensor("cls.weight", {E, E}, gguf::GgmlType::F32, r.w1.data());
  w.add_tensor("cls.bias", {E}, gguf::GgmlType::F32, r.b1.data());
  w.add_tensor("cls.output.weight", {E, 1}, gguf::GgmlType::F32, r.w2.data());
  w.add_tensor("cls.output.bias", {1}, gguf::GgmlType::F32, r.b2.data());
  w.write(out.string());
  return r;
}

TEST(Reranker, ScoresAreTheHeadAppliedToTheClsState) {
  ETNA_REQUIRE_SHARED(bert, "models/tiny-bert-bge-f32.gguf");
  test::TempDir dir;
  const auto path = dir / "rerank.gguf";
  const TinyReranker head = make_reranker(bert, path);
  auto rr = engine::Reranker::load(path.string());
  auto plain = model::BertModel::load(path.string());
  const std::string query = "how often is the boiler serviced";
  const std::vector<std::string> docs = {"The boiler is serviced every year in autumn.", "Volcanoes erupt lava.",
                                         "Ships rest in the harbour at night."};
  const std::vector<float> got = rr->score(query, docs);
  ASSERT_EQ(got.size(), docs.size());
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<int32_t> toks = rr->pair_tokens(query, docs[d]);
    // [CLS] query [SEP] [SEP] document [SEP]
    const auto& v = rr->tokenizer().vocab();
    EXPECT_EQ(toks.front(), v.cls != tokenizer::kNoToken ? v.cls : v.bos);
    EXPECT_EQ(toks.back(), v.eos != tokenizer::kNoToken ? v.eos : v.sep);
    std::vector<float> hidden;
    plain->forward(toks, hidden);
    double s = head.b2[0];
    for (int i = 0; i < head.E; ++i) {
      double a = head.b1[i];
      for (int j = 0; j < head.E; ++j) a += static_cast<double>(head.w1[static_cast<size_t>(i) * head.E + j]) * hidden[j];
      s += head.w2[i] * std::tanh(a);
    }
    EXPECT_NEAR(got[d], s, 1e-4 * std::max(1.0, std::fabs(s))) << "document " << d;
  }
  EXPECT_NE(got[0], got[1]);  // the head is not degenerate

  // The rerank stage orders retrieval hits by these scores and keeps k.
  std::vector<rag::SearchHit> hits(3);
  for (size_t i = 0; i < 3; ++i) hits[i].chunk.text = docs[i], hits[i].chunk.id = static_cast<int64_t>(i);
  rag::rerank(hits, *rr, query, 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_GE(hits[0].score, hits[1].score);
  const float best = *std::max_element(got.begin(), got.end());
  EXPECT_FLOAT_EQ(static_cast<float>(hits[0].score), best);
}

TEST(Reranker, AnEmbeddingModelIsNotAReranker) {
  ETNA_REQUIRE_SHARED(bert, "models/tiny-bert-bge-f32.gguf");
  try {
    engine::Reranker::load(bert.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a reranker"), std::string::npos) << e.what();
  }
}

TEST(RerankApi, AnswersInThePeersShape) {
  ETNA_REQUIRE_SHARED(bert, "models/tiny-bert-bge-f32.gguf");
  test::TempDir dir;
  make_reranker(bert, dir / "tiny-rerank.gguf");
  auto rr = engine::Reranker::load((dir / "tiny-rerank.gguf").string());
  server::ServerOptions opt;
  opt.port = 0;
  opt.idle_timeout = std::chrono::milliseconds(500);
  server::HttpServer http(opt);
  server::register_rerank_routes(http, *rr);
  http.bind();
  std::thread t([&] { http.listen(); });
  http.wait_until_ready();
  httplib::Client c("127.0.0.1", http.port());
  const std::vector<std::string> docs = {"a boiler", "a volcano", "a ship", "a kettle"};
  json req = {{"model", "tiny-rerank"}, {"query", "boiler service"}, {"documents", docs}, {"top_n", 3},
              {"return_documents", true}};
  auto r = c.Post("/v1/rerank", req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["model"], "tiny-rerank");
  EXPECT_EQ(j["object"], "list");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  ASSERT_EQ(j["results"].size(), 3u);
  const std::vector<float> s = rr->score("boiler service", docs);
  double prev = INFINITY;
  for (const json& x : j["results"]) {
    const size_t i = x["index"].get<size_t>();
    EXPECT_FLOAT_EQ(x["relevance_score"].get<float>(), s[i]);
    EXPECT_EQ(x["document"]["text"], docs[i]);
    EXPECT_LE(x["relevance_score"].get<double>(), prev);
    prev = x["relevance_score"].get<double>();
  }
  // Jina/Cohere-style {"text"} documents, the /rerank alias, and errors in the OpenAI shape.
  r = c.Post("/rerank", json{{"query", "q"}, {"documents", {{{"text", "x"}}}}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_FALSE(json::parse(r->body)["results"][0].contains("document"));
  r = c.Post("/v1/rerank", json{{"query", "q"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find("documents"), std::string::npos);
  r = c.Post("/v1/rerank", json{{"model", "other"}, {"query", "q"}, {"documents", {"x"}}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  http.stop();
  t.join();
}

// serve --reranker: the documents API's search reranks the fused candidates with the cross-encoder
// (the order of its scores, k kept) and says so; without one, the retriever's order stands.
TEST(RerankApi, DocumentSearchHasARerankStage) {
  ETNA_REQUIRE_SHARED(bert, "models/tiny-bert-bge-f32.gguf");
  test::TempDir dir;
  make_reranker(bert, dir / "tiny-rerank.gguf");
  auto rr = engine::Reranker::load((dir / "tiny-rerank.gguf").string());
  std::filesystem::create_directories(dir / "docs");
  const std::vector<std::string> texts = {"the boiler is serviced every spring", "the boiler room has a red door",
                                          "boiler pressure should stay below two bar", "a boiler needs water",
                                          "boiler boiler boiler manuals"};
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string name = std::to_string(i);
    name += ".txt";
    std::ofstream(dir / "docs" / name) << texts[i] << "\n";
  }
  rag::ingest(rag::collection_dir(dir / "data", "manuals"), {dir / "docs"}, rag::IngestOptions{});

  server::DocsOptions plain_opt;
  plain_opt.data_dir = dir / "data";
  server::DocsService plain(plain_opt, nullptr);
  const json bm25 = plain.search("manuals", "boiler", 3);
  EXPECT_FALSE(bm25["reranked"].get<bool>());
  ASSERT_EQ(bm25["hits"].size(), 3u);

  server::DocsOptions opt = plain_opt;
  opt.reranker = rr.get();
  server::DocsService docs(opt, nullptr);
  const json j = docs.search("manuals", "boiler", 3);
  EXPECT_TRUE(j["reranked"].get<bool>());
  ASSERT_EQ(j["hits"].size(), 3u);
  std::vector<std::string> all;
  for (const auto& t : texts) all.push_back(t);
  const std::vector<float> s = rr->score("boiler", all);
  std::vector<size_t> order(all.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  for (size_t i = 0; i < 3; ++i) {
    const std::string text = j["hits"][i]["text"];
    EXPECT_NE(text.find(texts[order[i]]), std::string::npos) << i << ": " << text;
  }
}

}  // namespace
}  // namespace etna
