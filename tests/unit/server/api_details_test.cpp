// Issue 16 items 15 and 25: API details a client trips over. The real server and real models
// (stories260K, tiny-bert-bge), driven with httplib::Client over loopback.
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/http_server.h"
#include "etna/server/openai_api.h"
#include "etna/server/qdrant_api.h"
#include "etna/server/docs_api.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using nlohmann::json;
using etna::test::TempDir;

class Running {
 public:
  Running(ServerOptions opt, const std::function<void(HttpServer&)>& setup) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<HttpServer>(opt);
    setup(*server_);
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~Running() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    return c;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

json body(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }

TEST(ApiDetails, NoModelServerHasHealthAndAnEmptyModelList) {
  TempDir dir;
  auto db = store::Database::open(dir.path() / "vectors");
  Running s({}, [&](HttpServer& h) {
    register_qdrant_routes(h, *db);
    register_no_model_routes(h);
  });
  auto c = s.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(body(health)["status"], "ok");
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(body(models)["object"], "list");
  EXPECT_TRUE(body(models)["data"].empty());
  auto chat = c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})", "application/json");
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 404);
  EXPECT_EQ(body(chat)["error"]["code"], "model_not_found");
}

TEST(ApiDetails, UnauthorizedBodyCodeIsInvalidApiKey) {
  ServerOptions opt;
  opt.api_keys = {"k"};
  Running s(opt, [](HttpServer& h) {
    h.route(Method::get, "/api/thing", [](const httplib::Request&, httplib::Response& res) { send_json(res, {}); });
  });
  auto c = s.client();
  auto r = c.Get("/api/thing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(body(r)["error"]["code"], "invalid_api_key") << r->body;
}

TEST(ApiDetails, QdrantRootRoutesAnswer404InQdrantsEnvelope) {
  TempDir dir;
  auto db = store::Database::open(dir.path() / "vectors");
  Running s({}, [&](HttpServer& h) { register_qdrant_routes(h, *db); });
  auto c = s.client();
  for (const char* path : {"/cluster", "/telemetry", "/snapshots", "/issues"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
    const json b = body(r);
    EXPECT_TRUE(b.contains("status") && b["status"].contains("error")) << path << ": " << r->body;
    EXPECT_FALSE(b.contains("error")) << path << ": " << r->body;
  }
}

TEST(ApiDetails, NulInRequestPathIs400) {
  TempDir dir;
  auto db = store::Database::open(dir.path() / "vectors");
  Running s({}, [&](HttpServer& h) { register_qdrant_routes(h, *db); });
  auto c = s.client();
  auto r = c.Get("/collections/ab%00cd");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("NUL"), std::string::npos) << r->body;
}

TEST(ApiDetails, IngestPathWithNulIsRefused) {
  TempDir dir, allowed;
  std::ofstream(allowed.path() / "a.txt") << "text\n";
  DocsOptions d;
  d.data_dir = dir.path();
  d.allowed_ingest_dirs = {allowed.path()};
  DocsService docs(d, nullptr);
  Running s({}, [&](HttpServer& h) { register_docs_routes(h, docs); });
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/c")->status, 201);
  // "a.txt\0zzz": before, the NUL cut the path to a.txt, which was ingested.
  const json req = {{"path", (allowed.path() / "a.txt").string() + std::string("\0zzz", 4)}};
  auto r = c.Post("/api/collections/c/ingest?wait=true", req.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("NUL"), std::string::npos) << r->body;
}

class WithModels : public ::testing::Test {
 protected:
  void SetUp() override {
    ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
    ETNA_REQUIRE_SHARED(emb, "models/tiny-bert-bge-f32.gguf");
    OpenAIOptions oo;
    oo.model_path = model.string();
    oo.embedding_model_path = emb.string();
    oo.n_ctx = 256;
    oo.n_parallel = 1;
    service_ = std::make_unique<OpenAIService>(oo);
    service_->load();
    server_ = std::make_unique<Running>(ServerOptions{}, [&](HttpServer& h) { register_openai_routes(h, *service_); });
  }
  void TearDown() override {
    server_.reset();
    service_.reset();
  }
  httplib::Result post(const std::string& path, const json& b) {
    auto c = server_->client();
    return c.Post(path, b.dump(), "application/json");
  }
  std::unique_ptr<OpenAIService> service_;
  std::unique_ptr<Running> server_;
};

TEST_F(WithModels, MaxTokensZeroOrAboveTheContextIs400) {
  const json msgs = json::array({{{"role", "user"}, {"content", "Once upon a time"}}});
  for (const json& b : {json{{"messages", msgs}, {"max_tokens", 0}}, json{{"messages", msgs}, {"max_completion_tokens", 0}}}) {
    auto r = post("/v1/chat/completions", b);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << b.dump() << ": " << r->body;
  }
  auto zero = post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 0}});
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->status, 400) << zero->body;
  auto big = post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 100000}});
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 400) << big->body;
  EXPECT_EQ(body(big)["error"]["param"], "max_tokens") << big->body;
  // Within the context still works.
  auto ok = post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 3}, {"temperature", 0}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(WithModels, EmbeddingsTakeTokenIdsAndExplainDimensions) {
  const std::string text = "zebra crossings were introduced in 1951";
  auto by_text = post("/v1/embeddings", {{"input", text}});
  ASSERT_TRUE(by_text);
  ASSERT_EQ(by_text->status, 200) << by_text->body;
  tokenizer::EncodeOptions opt;
  opt.add_special = true;
  const auto ids = service_->shared_embedder()->tokenizer().encode(text, opt);
  auto by_ids = post("/v1/embeddings", {{"input", ids}});
  ASSERT_TRUE(by_ids);
  ASSERT_EQ(by_ids->status, 200) << by_ids->body;
  const auto a = body(by_text)["data"][0]["embedding"].get<std::vector<float>>();
  const auto b = body(by_ids)["data"][0]["embedding"].get<std::vector<float>>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << i;
  EXPECT_EQ(body(by_ids)["usage"]["prompt_tokens"], ids.size());
  auto two = post("/v1/embeddings", {{"input", json::array({ids, json::array({ids[0], ids[1]})})}});
  ASSERT_TRUE(two);
  ASSERT_EQ(two->status, 200) << two->body;
  EXPECT_EQ(body(two)["data"].size(), 2u);
  auto bad_id = post("/v1/embeddings", {{"input", json::array({1, 99999999})}});
  ASSERT_TRUE(bad_id);
  EXPECT_EQ(bad_id->status, 400) << bad_id->body;
  auto dims = post("/v1/embeddings", {{"input", text}, {"dimensions", 16}});
  ASSERT_TRUE(dims);
  EXPECT_EQ(dims->status, 400) << dims->body;
  EXPECT_NE(dims->body.find("Matryoshka"), std::string::npos) << dims->body;
  auto same = post("/v1/embeddings", {{"input", text}, {"dimensions", a.size()}});
  ASSERT_TRUE(same);
  EXPECT_EQ(same->status, 200) << same->body;
}

}  // namespace
}  // namespace etna::server
