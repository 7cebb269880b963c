// The web app routes: embedded assets (content types, ETag, CSP, 404), GET / shared with the
// Qdrant banner by Accept header, /api/status without a model, /api/conversations CRUD.
#include "etna/server/web_app.h"

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/qdrant_api.h"
#include "etna/server/web_assets.h"
#include "etna/store/database.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using nlohmann::json;

// A server with the Qdrant and web routes (no model) on a free port, data in `data`.
class WebServer {
 public:
  explicit WebServer(const std::filesystem::path& data, std::size_t max_conversation_bytes = 8u << 20,
                     std::vector<std::string> api_keys = {}) {
    db_ = store::Database::open(data / "vectors");
    ServerOptions opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.version = "9.9.9-test";
    opt.idle_timeout = std::chrono::milliseconds(1000);
    opt.api_keys = std::move(api_keys);
    server_ = std::make_unique<HttpServer>(opt);
    register_qdrant_routes(*server_, *db_);
    register_web_routes(*server_, {.data_dir = data, .openai = nullptr, .max_conversation_bytes = max_conversation_bytes});
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~WebServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    return c;
  }

 private:
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

const WebAsset* find_asset(const std::string& path) {
  for (const auto& a : web_assets())
    if (path == a.path) return &a;
  return nullptr;
}

TEST(WebAppTest, AssetsAreEmbeddedAndSelfContained) {
  ASSERT_NE(find_asset("/index.html"), nullptr);
  ASSERT_NE(find_asset("/style.css"), nullptr);
  ASSERT_NE(find_asset("/js/app.js"), nullptr);
  EXPECT_EQ(find_asset("/README.md"), nullptr) << "documentation is not served";
  // Nothing may load from another origin: no absolute URLs in src/href/url()/import.
  const std::regex external(R"re((src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|@import|import\s*\(?\s*["'](https?:)?//)re",
                            std::regex::icase);
  for (const auto& a : web_assets()) {
    const std::string text(a.data, a.size);
    EXPECT_FALSE(std::regex_search(text, external)) << a.path << " refers to another origin";
    EXPECT_EQ(text.find("<script>"), std::string::npos) << a.path << " has an inline script (the CSP forbids it)";
  }
  // Every local reference of index.html and every module import resolves to an embedded file.
  const std::string index(find_asset("/index.html")->data, find_asset("/index.html")->size);
  const std::regex ref(R"re((?:src|href)="([^"#][^"]*)")re");
  int refs = 0;
  for (std::sregex_iterator it(index.begin(), index.end(), ref), end; it != end; ++it, ++refs)
    EXPECT_NE(find_asset("/" + (*it)[1].str()), nullptr) << "index.html refers to a missing " << (*it)[1];
  EXPECT_GE(refs, 3);
  const std::regex import(R"re(from\s+'\./([\w.-]+)')re");
  for (const auto& a : web_assets()) {
    const std::string path = a.path;
    if (path.rfind("/js/", 0) != 0) continue;
    const std::string text(a.data, a.size);
    for (std::sregex_iterator it(text.begin(), text.end(), import), end; it != end; ++it)
      EXPECT_NE(find_asset("/js/" + (*it)[1].str()), nullptr) << path << " imports a missing " << (*it)[1];
  }
}

TEST(WebAppTest, RootServesTheAppToBrowsersAndQdrantJsonToClients) {
  test::TempDir dir;
  WebServer server(dir.path());
  auto c = server.client();

  auto html = c.Get("/", {{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}});
  ASSERT_TRUE(html);
  EXPECT_EQ(html->status, 200);
  EXPECT_EQ(html->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(html->body.find("<title>Etna</title>"), std::string::npos);
  const std::string csp = html->get_header_value("Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(html->get_header_value("X-Content-Type-Options"), "nosniff");

  for (const char* accept : {"application/json", "*/*", ""}) {
    httplib::Headers h;
    if (*accept) h.emplace("Accept", accept);
    auto r = c.Get("/", h);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << accept;
    json j = json::parse(r->body);
    EXPECT_EQ(j["version"], kQdrantCompatVersion) << accept;
    EXPECT_EQ(j["etna_version"], "9.9.9-test");
  }

  auto index = c.Get("/index.html");  // no Accept needed on the explicit path
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_EQ(index->body, html->body);
}

TEST(WebAppTest, AssetsHaveContentTypesEtagsAndUnknownOnesAre404) {
  test::TempDir dir;
  WebServer server(dir.path());
  auto c = server.client();
  const std::pair<const char*, const char*> expected[] = {
      {"/style.css", "text/css; charset=utf-8"},
      {"/js/app.js", "text/javascript; charset=utf-8"},
      {"/js/markdown.js", "text/javascript; charset=utf-8"},
      {"/favicon.svg", "image/svg+xml"},
  };
  for (const auto& [path, type] : expected) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), type) << path;
    const WebAsset* a = find_asset(path);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(r->body, std::string(a->data, a->size)) << path;
    const std::string etag = r->get_header_value("ETag");
    ASSERT_FALSE(etag.empty()) << path;
    EXPECT_FALSE(r->get_header_value("Cache-Control").empty());
    auto again = c.Get(path, {{"If-None-Match", etag}});
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 304) << path;
    EXPECT_TRUE(again->body.empty());
    auto stale = c.Get(path, {{"If-None-Match", "\"0000\""}});
    ASSERT_TRUE(stale);
    EXPECT_EQ(stale->status, 200);
  }
  EXPECT_NE(c.Get("/style.css")->get_header_value("ETag"), c.Get("/js/app.js")->get_header_value("ETag"));
  for (const char* missing : {"/js/nope.js", "/assets/logo.png", "/README.md", "/nope.css"}) {
    auto r = c.Get(missing);
    ASSERT_TRUE(r) << missing;
    EXPECT_EQ(r->status, 404) << missing;
    EXPECT_TRUE(json::parse(r->body).contains("error")) << missing;
  }
}

TEST(WebAppTest, WithAnApiKeyTheAppLoadsButTheApiNeedsTheKey) {
  test::TempDir dir;
  WebServer server(dir.path(), 8u << 20, {"sekrit"});
  auto c = server.client();
  for (const char* path : {"/index.html", "/style.css", "/js/app.js", "/favicon.svg"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
  }
  EXPECT_EQ(c.Get("/js/nope.js")->status, 404);
  EXPECT_EQ(c.Get("/api/status")->status, 401);
  EXPECT_EQ(c.Get("/api/conversations")->status, 401);
  // A browser's "/" is the page (no data in it); "/" as JSON is Qdrant's banner and needs the key.
  auto page = c.Get("/", {{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}});
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<title>Etna</title>"), std::string::npos);
  EXPECT_EQ(page->body, c.Get("/index.html")->body);
  for (const char* accept : {"application/json", "*/*", ""}) {
    httplib::Headers h;
    if (*accept) h.emplace("Accept", accept);
    EXPECT_EQ(c.Get("/", h)->status, 401) << accept;
  }
  EXPECT_EQ(c.Post("/", "{}", "application/json")->status, 401);
  EXPECT_EQ(c.Get("/collections", {{"Accept", "text/html"}})->status, 401) << "only / itself is public";
  EXPECT_EQ(c.Get("/api/status", {{"Accept", "text/html"}})->status, 401);
  EXPECT_EQ(c.Get("/api/status", {{"Authorization", "Bearer sekrit"}})->status, 200);
}

TEST(WebAppTest, StatusWithoutAModel) {
  test::TempDir dir;
  WebServer server(dir.path());
  auto c = server.client();
  auto r = c.Get("/api/status");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  json s = json::parse(r->body);
  EXPECT_EQ(s["version"], "9.9.9-test");
  EXPECT_TRUE(s["model"].is_null());
  EXPECT_TRUE(s["embedding_model"].is_null());
  EXPECT_GE(s["uptime_s"].get<double>(), 0.0);
  EXPECT_GT(s["memory"]["rss"].get<uint64_t>(), 0u);
  EXPECT_EQ(s["memory"]["weights"], 0);
  EXPECT_EQ(s["memory"]["kv"], 0);
  for (const char* k : {"active", "waiting", "capacity"}) EXPECT_EQ(s["queue"][k], 0) << k;
  EXPECT_TRUE(s["tokens_per_second"]["decode"].is_number());
  EXPECT_EQ(s["requests"], 0);
  EXPECT_TRUE(s["kernels"].is_string());
  EXPECT_FALSE(s["kernels"].get<std::string>().empty());
}

TEST(WebAppTest, StatusWithAModel) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  OpenAIOptions oo;
  oo.model_path = model.string();
  oo.n_parallel = 2;
  oo.n_ctx = 256;
  oo.queue_capacity = 5;
  OpenAIService service(oo);
  service.load();
  ServerOptions opt;
  opt.host = "127.0.0.1";
  opt.port = 0;
  opt.idle_timeout = std::chrono::milliseconds(1000);
  HttpServer server(opt);
  register_openai_routes(server, service);
  register_web_routes(server, {.data_dir = dir.path(), .openai = &service});
  server.bind();
  std::thread t([&] { server.listen(); });
  server.wait_until_ready();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);
  auto gen = c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0})",
                    "application/json");
  ASSERT_TRUE(gen);
  EXPECT_EQ(gen->status, 200) << gen->body;
  auto r = c.Get("/api/status");
  server.stop();
  t.join();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  json s = json::parse(r->body);
  EXPECT_EQ(s["model"]["id"], "stories260K");
  EXPECT_EQ(s["model"]["path"], model.string());
  EXPECT_EQ(s["model"]["n_ctx"], 256);
  EXPECT_EQ(s["model"]["parallel"], 2);
  EXPECT_EQ(s["loading"], false);
  EXPECT_GT(s["memory"]["weights"].get<uint64_t>(), 100000u);
  EXPECT_GT(s["memory"]["kv"].get<uint64_t>(), 0u);
  EXPECT_EQ(s["queue"]["capacity"], 5);
  EXPECT_EQ(s["queue"]["active"], 0);
  EXPECT_GE(s["requests"].get<uint64_t>(), 1u);
  EXPECT_GT(s["tokens"]["generated"].get<uint64_t>(), 0u);
  EXPECT_GT(s["tokens"]["prompt"].get<uint64_t>(), 0u);
}

TEST(WebAppTest, ConversationIds) {
  EXPECT_TRUE(valid_conversation_id("a"));
  EXPECT_TRUE(valid_conversation_id("3f2c9a1e-6b7d-4c1e-9f00-aa11bb22cc33"));
  EXPECT_TRUE(valid_conversation_id(std::string(64, 'x')));
  EXPECT_FALSE(valid_conversation_id(""));
  EXPECT_FALSE(valid_conversation_id(std::string(65, 'x')));
  for (const char* bad : {"a.b", "..", "a/b", "a b", "é", "x%2e"}) EXPECT_FALSE(valid_conversation_id(bad)) << bad;
}

TEST(WebAppTest, ConversationsCrudAndPersistence) {
  test::TempDir dir;
  const json conv = {{"id", "chat-1"},
                     {"title", "First chat"},
                     {"messages", {{{"role", "user"}, {"content", "Hi <b>there</b>"}}, {{"role", "assistant"}, {"content", "Hello!"}}}},
                     {"settings", {{"temperature", 0.5}, {"system", "Be brief."}}}};
  {
    WebServer server(dir.path());
    auto c = server.client();
    auto empty = c.Get("/api/conversations");
    ASSERT_TRUE(empty);
    EXPECT_EQ(json::parse(empty->body)["conversations"], json::array());

    auto put = c.Put("/api/conversations/chat-1", conv.dump(), "application/json");
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 201) << put->body;
    auto got = c.Get("/api/conversations/chat-1");
    ASSERT_EQ(got->status, 200);
    json g = json::parse(got->body);
    EXPECT_EQ(g["title"], "First chat");
    EXPECT_EQ(g["messages"], conv["messages"]);
    EXPECT_EQ(g["settings"], conv["settings"]);
    EXPECT_TRUE(g["updated"].is_number_integer());

    // Without an id in the body; replacing keeps the creation time.
    json second = {{"title", "Second"}, {"messages", json::array()}};
    ASSERT_EQ(c.Put("/api/conversations/chat_2", second.dump(), "application/json")->status, 201);
    json renamed = g;
    renamed["title"] = "Renamed";
    auto replaced = c.Put("/api/conversations/chat-1", renamed.dump(), "application/json");
    ASSERT_EQ(replaced->status, 200);
    EXPECT_EQ(json::parse(replaced->body)["created"], g["created"]);

    json list = json::parse(c.Get("/api/conversations")->body)["conversations"];
    ASSERT_EQ(list.size(), 2u);
    std::set<std::string> ids;
    for (const auto& e : list) {
      ids.insert(e["id"].get<std::string>());
      EXPECT_TRUE(e.contains("title") && e.contains("updated"));
    }
    EXPECT_EQ(ids, (std::set<std::string>{"chat-1", "chat_2"}));
    EXPECT_GE(list[0]["updated"].get<int64_t>(), list[1]["updated"].get<int64_t>()) << "most recently updated first";

    ASSERT_EQ(c.Delete("/api/conversations/chat_2")->status, 200);
    EXPECT_EQ(c.Get("/api/conversations/chat_2")->status, 404);
    EXPECT_EQ(c.Delete("/api/conversations/chat_2")->status, 404);
    // No temporary files are left behind by the atomic writes.
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path() / "conversations")) {
      ++files;
      EXPECT_EQ(e.path().extension(), ".json") << e.path();
    }
    EXPECT_EQ(files, 1);
  }
  {
    WebServer again(dir.path());  // a restart keeps the conversation
    auto c = again.client();
    auto got = c.Get("/api/conversations/chat-1");
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200);
    json g = json::parse(got->body);
    EXPECT_EQ(g["title"], "Renamed");
    EXPECT_EQ(g["messages"], conv["messages"]);
    EXPECT_EQ(json::parse(c.Get("/api/conversations")->body)["conversations"].size(), 1u);
  }
}

TEST(WebAppTest, ConversationsRejectBadInput) {
  test::TempDir dir;
  WebServer server(dir.path(), 4096);
  auto c = server.client();
  auto status_of = [&](const std::string& path, const std::string& body) {
    auto r = c.Put(path, body, "application/json");
    EXPECT_TRUE(r);
    if (r && r->status >= 400) {
      EXPECT_TRUE(json::parse(r->body)["error"].contains("message")) << r->body;
    }
    return r ? r->status : -1;
  };
  const std::string ok = R"({"title":"t","messages":[]})";
  EXPECT_EQ(status_of("/api/conversations/a.b", ok), 400);
  EXPECT_EQ(status_of("/api/conversations/" + std::string(65, 'x'), ok), 400);
  EXPECT_EQ(status_of("/api/conversations/%2e%2e", ok), 400);
  EXPECT_EQ(c.Get("/api/conversations/a.b")->status, 400);
  EXPECT_EQ(c.Delete("/api/conversations/bad%20id")->status, 400);
  EXPECT_EQ(c.Get("/api/conversations/missing")->status, 404);
  EXPECT_EQ(status_of("/api/conversations/x", "{not json"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", "[1,2]"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"id":"y"})"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"title":5})"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"messages":{}})"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"messages":[{"role":"robot","content":"x"}]})"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"messages":[{"role":"user","content":7}]})"), 400);
  EXPECT_EQ(status_of("/api/conversations/x", R"({"settings":[]})"), 400);
  const json big = {{"messages", {{{"role", "user"}, {"content", std::string(5000, 'a')}}}}};
  EXPECT_EQ(status_of("/api/conversations/x", big.dump()), 413);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "conversations" / "x.json"));
  EXPECT_EQ(status_of("/api/conversations/x", ok), 201);
}

}  // namespace
}  // namespace etna::server
