// libFuzzer target for the HTTP request path: bytes are served as one client's connection
// through HttpServer::serve_bytes, that is the head limits, cpp-httplib's request parser, the
// server's hooks (Host/Origin checks, API keys from the raw head, body limits and decoding) and
// the real router with the Qdrant, documents, web-app and no-model OpenAI routes on a store in a
// temporary folder. Every input must get a response or none (no crash, hang or unbounded memory).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "etna/server/docs_api.h"
#include "etna/server/http_server.h"
#include "etna/server/openai_api.h"
#include "etna/server/qdrant_api.h"
#include "etna/server/web_app.h"
#include "etna/store/database.h"

namespace {

struct Target {
  Target() {
    char tmpl[] = "/tmp/etna-fuzz-http-XXXXXX";
    dir = mkdtemp(tmpl);
    etna::server::ServerOptions opt;
    opt.max_body_bytes = 1u << 20;
    server = std::make_unique<etna::server::HttpServer>(opt);
    db = etna::store::Database::open(dir / "vectors");
    etna::server::register_qdrant_routes(*server, *db);
    etna::server::register_no_model_routes(*server);
    etna::server::DocsOptions d;
    d.data_dir = dir;
    docs = std::make_unique<etna::server::DocsService>(d, nullptr);
    etna::server::register_docs_routes(*server, *docs);
    etna::server::WebOptions w;
    w.data_dir = dir;
    etna::server::register_web_routes(*server, w);
  }
  ~Target() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  std::unique_ptr<etna::server::HttpServer> server;
  std::unique_ptr<etna::store::Database> db;
  std::unique_ptr<etna::server::DocsService> docs;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target t;
  (void)t.server->serve_bytes(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
