// Issue 16 item 6 (the rest): the conversation list comes from a small index, not from parsing
// every conversation file, and the number of conversations kept is bounded (507 past it).
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/http_server.h"
#include "etna/server/web_app.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using nlohmann::json;
using etna::test::TempDir;
namespace fs = std::filesystem;

class ConvServer {
 public:
  explicit ConvServer(WebOptions w) {
    ServerOptions opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<HttpServer>(opt);
    register_web_routes(*server_, std::move(w));
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~ConvServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    return c;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

std::string conv(const std::string& title) {
  return json{{"title", title}, {"messages", json::array({{{"role", "user"}, {"content", "hello"}}})}}.dump();
}

TEST(ConversationStore, ListComesFromTheIndexNotTheFiles) {
  TempDir dir;
  ConvServer s({.data_dir = dir.path()});
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/conversations/a", conv("first"), "application/json")->status, 201);
  ASSERT_EQ(c.Put("/api/conversations/b", conv("second"), "application/json")->status, 201);
  // A conversation file the list would have had to parse: now unreadable. The list still
  // names it (from the index); opening it reports the damage.
  std::ofstream(dir.path() / "conversations" / "a.json", std::ios::trunc) << "{not json";
  auto r = c.Get("/api/conversations");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json list = json::parse(r->body)["conversations"];
  ASSERT_EQ(list.size(), 2u) << r->body;
  EXPECT_EQ(list[0]["id"], "b");
  EXPECT_EQ(list[1]["title"], "first");
  // Deleting keeps the index in step.
  ASSERT_EQ(c.Delete("/api/conversations/b")->status, 200);
  EXPECT_EQ(json::parse(c.Get("/api/conversations")->body)["conversations"].size(), 1u);
}

TEST(ConversationStore, IndexIsRebuiltFromFilesWhenMissing) {
  TempDir dir;
  {
    ConvServer s({.data_dir = dir.path()});
    auto c = s.client();
    ASSERT_EQ(c.Put("/api/conversations/old", conv("kept"), "application/json")->status, 201);
  }
  fs::remove(dir.path() / "conversations" / ".index.json");  // e.g. a data folder from before the index
  ConvServer s({.data_dir = dir.path()});
  auto c = s.client();
  const json list = json::parse(c.Get("/api/conversations")->body)["conversations"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["title"], "kept");
}

TEST(ConversationStore, NumberKeptIsBounded) {
  TempDir dir;
  ConvServer s({.data_dir = dir.path(), .max_conversations = 3});
  auto c = s.client();
  for (const char* id : {"a", "b", "c"}) ASSERT_EQ(c.Put(std::string("/api/conversations/") + id, conv(id), "application/json")->status, 201);
  auto over = c.Put("/api/conversations/d", conv("d"), "application/json");
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 507) << over->body;
  EXPECT_NE(over->body.find("3 conversations"), std::string::npos) << over->body;
  EXPECT_EQ(c.Put("/api/conversations/a", conv("a2"), "application/json")->status, 200);  // updates still work
  ASSERT_EQ(c.Delete("/api/conversations/b")->status, 200);
  EXPECT_EQ(c.Put("/api/conversations/d", conv("d"), "application/json")->status, 201);
}

}  // namespace
}  // namespace etna::server
