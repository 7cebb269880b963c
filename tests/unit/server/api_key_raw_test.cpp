// Issue 16 item 12: the API key is compared with the header's bytes exactly as sent (no
// percent-decoding, no cut at a NUL byte).
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/http_server.h"
#include "support/raw_socket.h"

namespace etna::server {
namespace {

class KeyedServer {
 public:
  explicit KeyedServer(std::vector<std::string> keys) {
    ServerOptions opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.api_keys = std::move(keys);
    server_ = std::make_unique<HttpServer>(opt);
    server_->route(Method::get, "/secret", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"ok", true}});
    });
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~KeyedServer() {
    server_->stop();
    thread_.join();
  }
  std::string get(const std::string& header_line) {
    return test::exchange(server_->port(), "GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_line +
                                         "\r\nConnection: close\r\n\r\n");
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

int status_of(const std::string& reply) { return reply.size() >= 12 ? std::atoi(reply.c_str() + 9) : 0; }

TEST(ApiKeyRaw, NulInsideTheHeaderIsNotCut) {
  KeyedServer s({"s3cret"});
  EXPECT_EQ(status_of(s.get("api-key: s3cret")), 200);
  EXPECT_EQ(status_of(s.get(std::string("api-key: s3cret\0zzz", 19))), 401);
  EXPECT_EQ(status_of(s.get(std::string("Authorization: Bearer s3cret\0zzz", 32))), 401);
  EXPECT_EQ(status_of(s.get(std::string("x-api-key: s3cret\0", 18))), 401);
}

TEST(ApiKeyRaw, PercentSignsAreComparedAsWritten) {
  KeyedServer s({"ab%41cd"});
  EXPECT_EQ(status_of(s.get("api-key: ab%41cd")), 200);
  EXPECT_EQ(status_of(s.get("Authorization: Bearer ab%41cd")), 200);
  EXPECT_EQ(status_of(s.get("api-key: abAcd")), 401);  // the decoded form is a different key
}

}  // namespace
}  // namespace etna::server
