// A Model Context Protocol server over the user's documents (the rag layer through DocsService),
// so desktop assistants and agents can search a private knowledge base without it leaving the
// machine. JSON-RPC 2.0 as the official @modelcontextprotocol/sdk speaks it (protocol versions
// 2024-11-05 .. 2025-11-25): initialize, ping, tools/list, tools/call, resources/list,
// resources/templates/list, resources/read. Tools: list_collections, search, get_passage, ask.
// Resources: etna://collections, etna://collections/{name} and each ingested file's text at
// etna://collections/{name}/files/{path, percent-encoded}. Two transports: stdio (`etna mcp`, one
// message per line) and Streamable HTTP (POST /mcp answering application/json; no server-initiated
// stream, so GET /mcp is 405), behind the HTTP server's API keys.
#pragma once
#include <iosfwd>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "etna/server/http_server.h"

namespace etna::server {

class DocsService;
class OpenAIService;

class McpServer {
 public:
  // `docs` must outlive the server. `version` is reported as serverInfo.version.
  McpServer(DocsService& docs, std::string version);

  // Handles one parsed JSON-RPC message or batch; returns the response (an array for a batch),
  // or nullopt when there is nothing to answer (notifications and responses only).
  std::optional<nlohmann::json> handle(const nlohmann::json& message);
  // The same for raw text; malformed JSON is answered with a -32700 parse error.
  std::optional<std::string> handle_text(const std::string& text);

 private:
  nlohmann::json dispatch(const std::string& method, const nlohmann::json& params);
  nlohmann::json call_tool(const std::string& name, const nlohmann::json& args);
  nlohmann::json read_resource(const std::string& uri);
  nlohmann::json list_resources(const nlohmann::json& params);

  DocsService& docs_;
  std::string version_;
};

// Serves JSON-RPC messages, one per line, from `in` to `out` until `in` ends (stdio transport).
// Lines longer than 32 MiB are answered with an error and skipped.
void serve_mcp_stdio(McpServer& server, std::istream& in, std::ostream& out);

// Registers POST /mcp (and GET/DELETE /mcp, 405) on `server`. `metrics` (may be null) counts the
// requests in /metrics. `mcp` must outlive the server.
void register_mcp_routes(HttpServer& server, McpServer& mcp, OpenAIService* metrics);

}  // namespace etna::server
