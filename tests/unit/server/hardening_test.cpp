// Hostile input against the real server (Qdrant, documents and web routes on one HttpServer,
// driven over loopback with httplib::Client or a raw socket): nesting bombs, body-limit bypasses,
// slow or flooding clients, cross-site requests, reserved names. Each test pins one item of
// issue 16 and failed before its fix.

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/docs_api.h"
#include "etna/server/http_server.h"
#include "etna/server/qdrant_api.h"
#include "etna/server/web_app.h"
#include "support/raw_socket.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using test::RawSocket;

namespace fs = std::filesystem;
using nlohmann::json;
using etna::test::TempDir;

class FullServer {
 public:
  explicit FullServer(const fs::path& data, ServerOptions opt = {}, std::vector<fs::path> allowed = {}) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.idle_timeout = std::chrono::milliseconds(1000);
    server_ = std::make_unique<HttpServer>(opt);
    db_ = store::Database::open(data / "collections");
    register_qdrant_routes(*server_, *db_);
    DocsOptions d;
    d.data_dir = data;
    d.allowed_ingest_dirs = std::move(allowed);
    docs_ = std::make_unique<DocsService>(d, nullptr);
    register_docs_routes(*server_, *docs_);
    WebOptions w;
    w.data_dir = data;
    register_web_routes(*server_, w);
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~FullServer() {
    server_->stop();
    thread_.join();
  }
  int port() const { return server_->port(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(60, 0);
    c.set_connection_timeout(30, 0);
    return c;
  }
  store::Database& db() { return *db_; }

 private:
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<DocsService> docs_;
  std::thread thread_;
};

json body_of(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no response";
  if (!r) return json();
  return json::parse(r->body, nullptr, false);
}

std::string error_text(const httplib::Result& r) { return r ? r->body : std::string("(no response)"); }

void create_collection(httplib::Client& c, const std::string& name) {
  auto r = c.Put(("/collections/" + name).c_str(), R"({"vectors": {"size": 2, "distance": "Dot"}})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
}

// ---- item 1: nesting bombs ----

TEST(Hardening, DeeplyNestedPayloadIs400NamingTheLimit) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  create_collection(c, "c");
  std::string nested = std::string(100000, '[') + std::string(100000, ']');
  std::string body = R"({"points": [{"id": 1, "vector": [1, 0], "payload": {"x": )" + nested + "}}]}";
  auto r = c.Put("/collections/c/points?wait=true", body, "application/json");
  ASSERT_TRUE(r) << "the server died";
  EXPECT_EQ(r->status, 400) << error_text(r);
  EXPECT_NE(r->body.find("128"), std::string::npos) << r->body;
  // Still serving; a payload nested 100 deep is fine.
  std::string ok_nested = std::string(100, '[') + std::string(100, ']');
  auto ok = c.Put("/collections/c/points?wait=true",
                  R"({"points": [{"id": 1, "vector": [1, 0], "payload": {"x": )" + ok_nested + "}}]}", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST(Hardening, DeeplyNestedFilterIs400NamingTheLimit) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  create_collection(c, "c");
  // A clause may be one condition object, so each filter level costs one JSON level: 70 filter
  // levels stay under the body's 128 but are over the filter limit of 64.
  std::string filter = R"({"key": "a", "match": {"value": 1}})";
  for (int i = 0; i < 70; ++i) filter = R"({"must": )" + filter + "}";
  auto ok = c.Post("/collections/c/points/scroll", R"({"filter": )" + filter + "}", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 400) << ok->body;
  EXPECT_NE(ok->body.find("64"), std::string::npos) << ok->body;
  std::string shallow = R"({"key": "a", "match": {"value": 1}})";
  for (int i = 0; i < 30; ++i) shallow = R"({"must": [)" + shallow + "]}";
  auto fine = c.Post("/collections/c/points/scroll", R"({"filter": )" + shallow + "}", "application/json");
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->status, 200) << fine->body;
  // 10 000 deep: refused by the body bound before any recursion.
  std::string deep = R"({"key": "a", "match": {"value": 1}})";
  std::string open, close;
  for (int i = 0; i < 10000; ++i) {
    open += R"({"must": [)";
    close += "]}";
  }
  auto r = c.Post("/collections/c/points/scroll", R"({"filter": )" + open + deep + close + "}", "application/json");
  ASSERT_TRUE(r) << "the server died";
  EXPECT_EQ(r->status, 400) << error_text(r);
}

TEST(Hardening, DeeplyNestedConversationIs400) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  std::string nested = std::string(100000, '[') + std::string(100000, ']');
  auto r = c.Put("/api/conversations/abc", R"({"title": "t", "messages": [], "settings": {"x": )" + nested + "}}",
                 "application/json");
  ASSERT_TRUE(r) << "the server died";
  EXPECT_EQ(r->status, 400) << error_text(r);
  EXPECT_TRUE(c.Get("/api/conversations"));
}

// ---- item 10: a symlink inside an allowed folder must not read outside it ----

TEST(Hardening, AllowIngestFollowsNoSymlinkOutOfTheAllowedFolders) {
  TempDir data, allowed, outside;
  std::ofstream(allowed / "inside.txt") << "The harbour master rings the bell at noon.\n";
  std::ofstream(outside / "secret.txt") << "Quartermaster password swordfish.\n";
  fs::create_symlink(outside / "secret.txt", allowed / "link.txt");
  FullServer s(data.path(), {}, {allowed.path()});
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/docs")->status, 201);
  auto r = c.Post("/api/collections/docs/ingest?wait=true", json{{"path", allowed.path().string()}}.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json rep = body_of(r)["report"];
  EXPECT_EQ(rep["files_new"], 1) << rep.dump();
  json hits = body_of(c.Post("/api/collections/docs/search", R"({"query":"quartermaster swordfish"})", "application/json"));
  EXPECT_TRUE(hits["hits"].empty()) << hits.dump();
  EXPECT_NE(rep.dump().find("link.txt"), std::string::npos) << "the refused link is reported: " << rep.dump();
}

// ---- item 3: the body limit applies to the decoded body ----

TEST(Hardening, ChunkedBodyOverTheLimitIs413) {
  TempDir dir;
  ServerOptions opt;
  opt.max_body_bytes = 64 << 10;
  FullServer s(dir.path(), opt);
  RawSocket sock(s.port());
  ASSERT_TRUE(sock.connected());
  std::string head = "PUT /collections/c HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n";
  sock.send_text(head);
  std::string chunk(16 << 10, ' ');
  std::string framed = fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
  for (int i = 0; i < 64; ++i)  // 1 MiB in chunks; the server may stop reading (send fails) once over
    if (!sock.send_text(framed)) break;
  sock.send_text("0\r\n\r\n");
  std::string reply = sock.read_response();
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 413"), 0) << reply.substr(0, 200);
}

TEST(Hardening, GzipBodyIsLimitedByItsDecodedSize) {
  TempDir dir;
  ServerOptions opt;
  opt.max_body_bytes = 64 << 10;
  FullServer s(dir.path(), opt);
  auto c = s.client();
  create_collection(c, "c");
  // 4 MiB of spaces compress to a few KiB: under the limit on the wire, far over it decoded.
  std::string body = R"({"points": [{"id": 1, "vector": [1, 0], "payload": {"x": ")" + std::string(4 << 20, 'a') + "\"}}]}";
  std::string gz;
  {
    httplib::detail::gzip_compressor comp;
    comp.compress(body.data(), body.size(), true, [&](const char* d, size_t n) {
      gz.append(d, n);
      return true;
    });
  }
  ASSERT_LT(gz.size(), opt.max_body_bytes);
  httplib::Headers h = {{"Content-Encoding", "gzip"}};
  auto r = c.Put("/collections/c/points?wait=true", h, gz, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << r->body.substr(0, 200);
  EXPECT_EQ(body_of(c.Post("/collections/c/points/count", "{}", "application/json"))["result"]["count"], 0);
}

// ---- item 11: cross-site requests and DNS rebinding ----

TEST(Hardening, CrossSiteStateChangesAreRefused) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  create_collection(c, "c");
  // A page on another site posting a "simple" request (no preflight).
  httplib::Headers evil = {{"Origin", "http://evil.example"}};
  auto del = c.Post("/collections/c/points/delete?wait=true", evil, R"({"filter": {}})", "text/plain");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 403) << del->body;
  auto drop = c.Delete("/collections/c", evil);
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->status, 403) << drop->body;
  EXPECT_EQ(c.Get("/collections/c")->status, 200);
  // JSON routes want a JSON content type even without an Origin.
  auto plain = c.Post("/collections/c/points/delete?wait=true", R"({"points": [1]})", "text/plain");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 415) << plain->body;
  // The app's own origin is fine.
  httplib::Headers own = {{"Origin", fmt::format("http://127.0.0.1:{}", s.port())}};
  auto ok = c.Post("/collections/c/points/delete?wait=true", own, R"({"points": [1]})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST(Hardening, HostHeaderMustNameThisServer) {
  TempDir dir;
  FullServer s(dir.path());
  for (const std::string host : {"evil.example", "rebind.attacker.test:8080"}) {
    RawSocket sock(s.port());
    sock.send_text("GET /collections HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    std::string reply = sock.read_all();
    EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 403"), 0) << host << ": " << reply.substr(0, 200);
  }
  for (const std::string& host : {std::string("localhost"), fmt::format("127.0.0.1:{}", s.port()), std::string("localhost:1")}) {
    RawSocket sock(s.port());
    sock.send_text("GET /collections HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    std::string reply = sock.read_all();
    EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 200"), 0) << host << ": " << reply.substr(0, 200);
  }
}

TEST(Hardening, AllowedHostOptionAddsNames) {
  TempDir dir;
  ServerOptions opt;
  opt.allowed_hosts = {"etna.lan"};
  FullServer s(dir.path(), opt);
  RawSocket sock(s.port());
  sock.send_text("GET /collections HTTP/1.1\r\nHost: etna.lan:8080\r\nConnection: close\r\n\r\n");
  std::string reply = sock.read_all();
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 200"), 0) << reply.substr(0, 200);
}

// ---- item 13: one Access-Control-Allow-Origin on preflights ----

TEST(Hardening, PreflightHasNoDuplicateCorsHeaders) {
  TempDir dir;
  ServerOptions opt;
  opt.cors_origins = {"http://app.example"};
  FullServer s(dir.path(), opt);
  RawSocket sock(s.port());
  sock.send_text("OPTIONS /collections/c HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://app.example\r\n"
                 "Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n");
  std::string reply = sock.read_all();
  auto count = [&](const std::string& h) {
    size_t n = 0;
    for (size_t p = reply.find(h); p != std::string::npos; p = reply.find(h, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("Access-Control-Allow-Origin:"), 1u) << reply;
  EXPECT_EQ(count("Vary:"), 1u) << reply;
}

// ---- item 6: conversations are stored compactly ----

TEST(Hardening, ConversationIsStoredCompactly) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  std::string nested = std::string(120, '[') + std::string(120, ']');
  std::string settings = "{";
  for (int i = 0; i < 80; ++i) settings += fmt::format("{}\"k{}\": {}", i ? ", " : "", i, nested);
  settings += "}";
  std::string body = R"({"title": "t", "messages": [], "settings": )" + settings + "}";
  auto r = c.Put("/api/conversations/abc", body, "application/json");
  ASSERT_TRUE(r);
  ASSERT_LT(r->status, 300) << r->body;
  const auto stored = fs::file_size(dir / "conversations" / "abc.json");
  EXPECT_LT(stored, 2 * body.size()) << "a " << body.size() << "-byte conversation took " << stored << " bytes";
}

// ---- items 7 and 8: bodiless POSTs and impossible Content-Lengths ----

TEST(Hardening, BodilessPostIsAnEmptyBodyNotAWait) {
  TempDir dir;
  FullServer s(dir.path());
  auto c = s.client();
  create_collection(c, "c");
  RawSocket sock(s.port(), 20);  // the guard is far below the 30 s read timeout the old code waited for
  sock.send_text("POST /collections/c/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  std::string reply = sock.read_response();
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 200"), 0) << reply.substr(0, 300);
}

TEST(Hardening, ImpossibleContentLengthIs400) {
  TempDir dir;
  FullServer s(dir.path());
  for (const std::string cl : {"9223372036854775808", "-1", "18446744073709551618", "12abc"}) {
    RawSocket sock(s.port(), 20);
    sock.send_text("PUT /collections/c HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   "Content-Length: " + cl + "\r\n\r\n{}");
    std::string reply = sock.read_response();
    EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 400"), 0) << cl << ": " << reply.substr(0, 300);
  }
}

// The body wrapper (item 3) hands handlers a copy of the request: a stream started from a POST
// must still go out uncompressed (start_stream's Accept-Encoding removal reaches cpp-httplib).
TEST(Hardening, PostedStreamIsNotCompressed) {
  ServerOptions opt;
  opt.host = "127.0.0.1";
  opt.port = 0;
  opt.idle_timeout = std::chrono::milliseconds(1000);
  HttpServer server(opt);
  server.route(Method::post, "/stream", [](const httplib::Request& req, httplib::Response& res) {
    start_stream(req, res, "text/event-stream", [](size_t, httplib::DataSink& sink) {
      sink.write("data: hello\n\n", 13);
      sink.done();
      return true;
    });
  });
  server.bind();
  std::thread t([&] { server.listen(); });
  server.wait_until_ready();
  {
    RawSocket sock(server.port());
    sock.send_text("POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, br\r\nContent-Type: application/json\r\n"
                   "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
    std::string reply = sock.read_all();
    EXPECT_EQ(reply.find("Content-Encoding"), std::string::npos) << reply;
    EXPECT_NE(reply.find("data: hello"), std::string::npos) << reply;
  }
  server.stop();
  t.join();
}

}  // namespace
}  // namespace etna::server
