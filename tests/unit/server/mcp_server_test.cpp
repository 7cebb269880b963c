// The MCP dispatcher on its own (no transport): the JSON-RPC envelope (requests, notifications,
// batches, malformed messages), initialize's version negotiation, and the document tools and
// resources over a collection ingested with BM25 only; plus the stdio loop.
#include "etna/server/mcp_server.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "etna/rag/ingest.h"
#include "etna/rag/retriever.h"
#include "etna/server/docs_api.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class McpTest : public ::testing::Test {
 protected:
  McpTest() {
    const fs::path src = tmp_ / "src";
    fs::create_directories(src);
    std::ofstream(src / "etna.txt") << "Mount Etna is an active stratovolcano on the east coast of Sicily.\n";
    std::ofstream(src / "garden.md") << "# Garden\n\nBasil grows well next to tomatoes.\n";
    rag::ingest(rag::collection_dir(tmp_.path(), "notes"), {src}, rag::IngestOptions{}, {});
    DocsOptions d;
    d.data_dir = tmp_.path();
    docs_ = std::make_unique<DocsService>(d, nullptr);
    mcp_ = std::make_unique<McpServer>(*docs_, "test");
  }
  json call(const std::string& method, const json& params = json::object(), json id = 1) {
    auto r = mcp_->handle({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
    EXPECT_TRUE(r.has_value());
    return r ? *r : json();
  }

  etna::test::TempDir tmp_;
  std::unique_ptr<DocsService> docs_;
  std::unique_ptr<McpServer> mcp_;
};

TEST_F(McpTest, InitializeNegotiatesTheProtocolVersion) {
  json r = call("initialize", {{"protocolVersion", "2025-06-18"}, {"capabilities", json::object()}});
  EXPECT_EQ(r["result"]["protocolVersion"], "2025-06-18");
  EXPECT_EQ(r["result"]["serverInfo"]["name"], "etna");
  EXPECT_TRUE(r["result"]["capabilities"].contains("tools"));
  r = call("initialize", {{"protocolVersion", "1999-01-01"}});
  EXPECT_EQ(r["result"]["protocolVersion"], "2025-11-25");  // ours; the client decides whether to go on
}

TEST_F(McpTest, EnvelopeErrorsAndNotifications) {
  EXPECT_FALSE(mcp_->handle({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}).has_value());
  EXPECT_FALSE(mcp_->handle({{"jsonrpc", "2.0"}, {"id", 3}, {"result", json::object()}}).has_value());
  EXPECT_EQ(call("no/such")["error"]["code"], -32601);
  EXPECT_EQ(mcp_->handle(json::array({1, 2}))->at(0)["error"]["code"], -32600);
  EXPECT_EQ(mcp_->handle(json::array())->at("error")["code"], -32600);
  EXPECT_EQ((*mcp_->handle({{"jsonrpc", "1.0"}, {"id", 1}, {"method", "ping"}}))["error"]["code"], -32600);
  EXPECT_EQ((*mcp_->handle({{"jsonrpc", "2.0"}, {"id", json::object()}, {"method", "ping"}}))["error"]["code"], -32600);
  EXPECT_EQ((*mcp_->handle({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "ping"}, {"params", 5}}))["error"]["code"], -32602);
  EXPECT_EQ(json::parse(*mcp_->handle_text("{\"jsonrpc\":"))["error"]["code"], -32700);
  // A batch answers its requests, in order, and skips its notifications.
  auto batch = mcp_->handle(json::array({{{"jsonrpc", "2.0"}, {"id", "a"}, {"method", "ping"}},
                                         {{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}},
                                         {{"jsonrpc", "2.0"}, {"id", "b"}, {"method", "tools/list"}}}));
  ASSERT_TRUE(batch && batch->is_array());
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[0]["id"], "a");
  EXPECT_EQ((*batch)[1]["result"]["tools"].size(), 4u);
}

TEST_F(McpTest, ToolsOverTheCollection) {
  json r = call("tools/call", {{"name", "list_collections"}, {"arguments", json::object()}});
  EXPECT_EQ(r["result"]["structuredContent"]["collections"][0]["name"], "notes");
  r = call("tools/call", {{"name", "search"}, {"arguments", {{"collection", "notes"}, {"query", "stratovolcano"}}}});
  ASSERT_EQ(r["result"]["isError"], false) << r.dump();
  const json hits = r["result"]["structuredContent"]["hits"];
  ASSERT_GE(hits.size(), 1u);
  EXPECT_NE(hits[0]["text"].get<std::string>().find("Sicily"), std::string::npos);
  r = call("tools/call", {{"name", "get_passage"}, {"arguments", {{"collection", "notes"}, {"id", hits[0]["id"]}}}});
  EXPECT_EQ(r["result"]["structuredContent"]["text"], hits[0]["text"]);
  // Tool failures are results the model can read; an unknown tool is a protocol error.
  r = call("tools/call", {{"name", "search"}, {"arguments", {{"collection", "../etc"}, {"query", "x"}}}});
  EXPECT_EQ(r["result"]["isError"], true);
  r = call("tools/call", {{"name", "search"}, {"arguments", {{"collection", "notes"}, {"query", "x"}, {"k", 1000}}}});
  EXPECT_EQ(r["result"]["isError"], true);
  r = call("tools/call", {{"name", "ask"}, {"arguments", {{"collection", "notes"}, {"question", "Where?"}}}});
  EXPECT_EQ(r["result"]["isError"], true);
  EXPECT_NE(r["result"]["content"][0]["text"].get<std::string>().find("chat model"), std::string::npos);
  EXPECT_EQ(call("tools/call", {{"name", "rm"}})["error"]["code"], -32602);
  EXPECT_EQ(call("tools/call", {{"name", "search"}, {"arguments", "x"}})["error"]["code"], -32602);
}

TEST_F(McpTest, ResourcesListAndRead) {
  json r = call("resources/list");
  std::string file_uri;
  for (const auto& res : r["result"]["resources"])
    if (res["name"] == "garden.md") file_uri = res["uri"];
  ASSERT_FALSE(file_uri.empty()) << r.dump();
  r = call("resources/read", {{"uri", file_uri}});
  EXPECT_NE(r["result"]["contents"][0]["text"].get<std::string>().find("Basil grows well"), std::string::npos);
  EXPECT_EQ(call("resources/read", {{"uri", "etna://collections/notes/files/%2Fetc%2Fpasswd"}})["error"]["code"], -32002);
  EXPECT_EQ(call("resources/read", {{"uri", "file:///etc/passwd"}})["error"]["code"], -32002);
  EXPECT_EQ(call("resources/read", {{"uri", "etna://collections/nope"}})["error"]["code"], -32002);
  EXPECT_EQ(call("resources/list", {{"cursor", "x"}})["error"]["code"], -32602);
}

TEST_F(McpTest, StdioLoopAnswersLineByLine) {
  std::istringstream in("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\nnot json\n");
  std::ostringstream out;
  serve_mcp_stdio(*mcp_, in, out);
  std::vector<json> lines;
  std::istringstream reply(out.str());
  for (std::string line; std::getline(reply, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 2u) << out.str();  // the notification and the blank line get no answer
  EXPECT_EQ(lines[0], json({{"jsonrpc", "2.0"}, {"id", 1}, {"result", json::object()}}));
  EXPECT_EQ(lines[1]["error"]["code"], -32700);
}

}  // namespace
}  // namespace etna::server
