#include "etna/server/mcp_server.h"

#include <algorithm>
#include <istream>
#include <ostream>

#include <fmt/format.h>

#include "etna/base/log.h"
#include "etna/server/api_util.h"
#include "etna/server/docs_api.h"
#include "etna/server/openai_api.h"

namespace etna::server {

using json = nlohmann::json;

namespace {

constexpr const char* kVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};
constexpr size_t kMaxLine = 32u << 20;
constexpr size_t kPageSize = 500;  // resources per resources/list page

// A JSON-RPC error (code, message) raised while dispatching.
struct RpcError {
  int code;
  std::string message;
};

constexpr int kParseError = -32700, kInvalidRequest = -32600, kMethodNotFound = -32601, kInvalidParams = -32602,
              kInternalError = -32603, kResourceNotFound = -32002;

json rpc_error(const json& id, int code, const std::string& message) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

std::string percent_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

const std::string kRoot = "etna://collections";

json text_result(const json& value) {
  json r = {{"content", json::array({{{"type", "text"}, {"text", value.dump(2, ' ', false, json::error_handler_t::replace)}}})},
            {"isError", false}};
  if (value.is_object()) r["structuredContent"] = value;
  return r;
}

json tool_error(const std::string& message) {
  return {{"content", json::array({{{"type", "text"}, {"text", message}}})}, {"isError", true}};
}

json string_prop(const char* description) { return {{"type", "string"}, {"description", description}}; }

json tools_json() {
  json collection = string_prop("Name of a document collection (see list_collections)");
  return json::array({
      {{"name", "list_collections"},
       {"title", "List document collections"},
       {"description", "Lists the user's document collections with their file and chunk counts."},
       {"inputSchema", {{"type", "object"}, {"properties", json::object()}}}},
      {{"name", "search"},
       {"title", "Search documents"},
       {"description",
        "Finds the passages of a document collection that best match a query (hybrid BM25 + vector search when the "
        "collection has embeddings, else BM25). Each hit has its chunk id, file, page and line range."},
       {"inputSchema",
        {{"type", "object"},
         {"properties",
          {{"collection", collection},
           {"query", string_prop("What to look for")},
           {"k", {{"type", "integer"}, {"minimum", 1}, {"maximum", 100}, {"description", "Number of hits (default 5)"}}}}},
         {"required", json::array({"collection", "query"})}}}},
      {{"name", "get_passage"},
       {"title", "Get a passage"},
       {"description", "Returns one passage (chunk) of a collection by the id a search hit gave, with its location."},
       {"inputSchema",
        {{"type", "object"},
         {"properties", {{"collection", collection}, {"id", {{"type", "integer"}, {"description", "The chunk id"}}}}},
         {"required", json::array({"collection", "id"})}}}},
      {{"name", "ask"},
       {"title", "Ask the documents"},
       {"description",
        "Answers a question from a collection with the server's local model, citing the retrieved passages as [n]. "
        "Needs the server to run with a chat model."},
       {"inputSchema",
        {{"type", "object"},
         {"properties",
          {{"collection", collection},
           {"question", string_prop("The question")},
           {"k", {{"type", "integer"}, {"minimum", 1}, {"maximum", 50}, {"description", "Passages to retrieve (default 5)"}}},
           {"max_tokens", {{"type", "integer"}, {"minimum", 1}, {"maximum", 4096}, {"description", "Longest answer (default 256)"}}}}},
         {"required", json::array({"collection", "question"})}}}},
  });
}

}  // namespace

McpServer::McpServer(DocsService& docs, std::string version) : docs_(docs), version_(std::move(version)) {}

json McpServer::call_tool(const std::string& name, const json& args) {
  const auto str = [&](const char* key) {
    const json* f = api::field(args, key);
    if (!f || !f->is_string() || f->get<std::string>().empty()) fail(ErrorKind::invalid_argument, "'{}' (a non-empty string) is required", key);
    return f->get<std::string>();
  };
  if (name == "list_collections") return {{"collections", docs_.collections()}};
  if (name == "search") {
    const std::string collection = str("collection"), query = str("query");
    return docs_.search(collection, query, static_cast<int>(api::int_field(args, "k", 5, 1, 100)));
  }
  if (name == "get_passage") {
    const std::string collection = str("collection");
    if (!api::field(args, "id")) fail(ErrorKind::invalid_argument, "'id' (a chunk id) is required");
    return docs_.passage(collection, api::int_field(args, "id", 0, 0, INT64_MAX / 2));
  }
  if (name == "ask") {
    const std::string collection = str("collection"), question = str("question");
    return docs_.ask(collection, question, static_cast<int>(api::int_field(args, "k", 5, 1, 50)),
                     static_cast<int>(api::int_field(args, "max_tokens", 256, 1, 4096)));
  }
  throw RpcError{kInvalidParams, fmt::format("unknown tool '{}' (list_collections, search, get_passage, ask)", name)};
}

json McpServer::list_resources(const json& params) {
  size_t offset = 0;
  if (const json* c = api::field(params, "cursor")) {
    if (!c->is_string()) throw RpcError{kInvalidParams, "'cursor' must be a string"};
    try {
      offset = std::stoul(c->get<std::string>());
    } catch (const std::exception&) {
      throw RpcError{kInvalidParams, "invalid cursor"};
    }
  }
  json all = json::array();
  all.push_back({{"uri", kRoot},
                 {"name", "collections"},
                 {"title", "Document collections"},
                 {"description", "Every document collection with its file and chunk counts"},
                 {"mimeType", "application/json"}});
  for (const auto& c : docs_.collections()) {
    const std::string name = c["name"];
    all.push_back({{"uri", kRoot + "/" + percent_encode(name)},
                   {"name", name},
                   {"title", "Collection " + name},
                   {"description", fmt::format("{} files, {} chunks", c["files"].dump(), c["chunks"].dump())},
                   {"mimeType", "application/json"}});
    for (const auto& f : docs_.files(name)) {
      all.push_back({{"uri", kRoot + "/" + percent_encode(name) + "/files/" + percent_encode(f["path"])},
                     {"name", f["name"]},
                     {"title", f["name"]},
                     {"description", fmt::format("{} in collection {} ({} chunks)", f["path"].get<std::string>(), name, f["chunks"].dump())},
                     {"mimeType", "text/plain"},
                     {"size", f["size"]}});
    }
  }
  json page = json::array();
  for (size_t i = offset; i < all.size() && page.size() < kPageSize; ++i) page.push_back(all[i]);
  json out = {{"resources", page}};
  if (offset + kPageSize < all.size()) out["nextCursor"] = std::to_string(offset + kPageSize);
  return out;
}

json McpServer::read_resource(const std::string& uri) {
  auto contents = [&](const std::string& mime, const std::string& text) {
    return json{{"contents", json::array({{{"uri", uri}, {"mimeType", mime}, {"text", text}}})}};
  };
  if (uri == kRoot) return contents("application/json", json{{"collections", docs_.collections()}}.dump(2));
  if (uri.rfind(kRoot + "/", 0) != 0) throw RpcError{kResourceNotFound, fmt::format("Resource not found: {}", uri)};
  const std::string rest = uri.substr(kRoot.size() + 1);
  const size_t slash = rest.find('/');
  const std::string name = percent_decode(rest.substr(0, slash));
  try {
    if (slash == std::string::npos) {
      json info = {{"name", name}, {"files", docs_.files(name)}};
      return contents("application/json", info.dump(2, ' ', false, json::error_handler_t::replace));
    }
    const std::string tail = rest.substr(slash + 1);
    if (tail.rfind("files/", 0) != 0) throw RpcError{kResourceNotFound, fmt::format("Resource not found: {}", uri)};
    return contents("text/plain", docs_.file_text(name, percent_decode(tail.substr(6))));
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::not_found) throw RpcError{kResourceNotFound, fmt::format("Resource not found: {}: {}", uri, e.what())};
    throw;
  }
}

json McpServer::dispatch(const std::string& method, const json& params) {
  if (method == "initialize") {
    std::string version = kVersions[0];
    if (const json* v = api::field(params, "protocolVersion"); v && v->is_string())
      for (const char* known : kVersions)
        if (v->get<std::string>() == known) version = known;
    return {{"protocolVersion", version},
            {"capabilities", {{"tools", {{"listChanged", false}}}, {"resources", {{"listChanged", false}, {"subscribe", false}}}}},
            {"serverInfo", {{"name", "etna"}, {"title", "Etna documents"}, {"version", version_}}},
            {"instructions",
             "Search the user's private document collections: list_collections, then search or ask a collection; "
             "get_passage returns a hit's full text."}};
  }
  if (method == "ping") return json::object();
  if (method == "tools/list") return {{"tools", tools_json()}};
  if (method == "tools/call") {
    const json* name = api::field(params, "name");
    if (!name || !name->is_string()) throw RpcError{kInvalidParams, "tools/call needs a string 'name'"};
    const json* args = api::field(params, "arguments");
    if (args && !args->is_object()) throw RpcError{kInvalidParams, "'arguments' must be an object"};
    try {
      return text_result(call_tool(name->get<std::string>(), args ? *args : json::object()));
    } catch (const Error& e) {
      return tool_error(e.what());  // a tool's failure is its result, for the model to read
    }
  }
  if (method == "resources/list") return list_resources(params);
  if (method == "resources/templates/list")
    return {{"resourceTemplates",
             json::array({{{"uriTemplate", kRoot + "/{collection}"},
                           {"name", "collection"},
                           {"description", "A collection's files (JSON)"},
                           {"mimeType", "application/json"}},
                          {{"uriTemplate", kRoot + "/{collection}/files/{path}"},
                           {"name", "file"},
                           {"description", "The extracted text of an ingested file (path percent-encoded)"},
                           {"mimeType", "text/plain"}}})}};
  if (method == "resources/read") {
    const json* uri = api::field(params, "uri");
    if (!uri || !uri->is_string()) throw RpcError{kInvalidParams, "resources/read needs a string 'uri'"};
    return read_resource(uri->get<std::string>());
  }
  if (method == "prompts/list") return {{"prompts", json::array()}};
  if (method == "logging/setLevel") return json::object();
  throw RpcError{kMethodNotFound, fmt::format("Method not found: {}", method)};
}

std::optional<json> McpServer::handle(const json& message) {
  if (message.is_array()) {
    if (message.empty()) return rpc_error(nullptr, kInvalidRequest, "empty batch");
    json out = json::array();
    for (const auto& m : message)
      if (auto r = handle(m); r) out.push_back(std::move(*r));
    if (out.empty()) return std::nullopt;
    return out;
  }
  if (!message.is_object() || message.value("jsonrpc", "") != "2.0")
    return rpc_error(nullptr, kInvalidRequest, "not a JSON-RPC 2.0 message");
  const auto id_it = message.find("id");
  const bool is_request = id_it != message.end();
  const json id = is_request ? *id_it : json(nullptr);
  if (is_request && !id.is_string() && !id.is_number_integer()) return rpc_error(nullptr, kInvalidRequest, "'id' must be a string or an integer");
  const auto method_it = message.find("method");
  if (method_it == message.end()) return std::nullopt;  // a response to us: we send no requests
  if (!method_it->is_string()) return is_request ? std::optional(rpc_error(id, kInvalidRequest, "'method' must be a string")) : std::nullopt;
  const std::string method = method_it->get<std::string>();
  if (!is_request) return std::nullopt;  // notifications (initialized, cancelled, ...) need no answer
  const json* params = api::field(message, "params");
  if (params && !params->is_object()) return rpc_error(id, kInvalidParams, "'params' must be an object");
  try {
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", dispatch(method, params ? *params : json::object())}};
  } catch (const RpcError& e) {
    return rpc_error(id, e.code, e.message);
  } catch (const Error& e) {
    return rpc_error(id, e.kind() == ErrorKind::invalid_argument ? kInvalidParams : kInternalError, e.what());
  } catch (const std::exception& e) {
    return rpc_error(id, kInternalError, std::string("internal error: ") + e.what());
  }
}

std::optional<std::string> McpServer::handle_text(const std::string& text) {
  json message;
  try {
    message = json::parse(text);
  } catch (const json::exception& e) {
    return rpc_error(nullptr, kParseError, std::string("Parse error: ") + e.what()).dump();
  }
  auto r = handle(message);
  if (!r) return std::nullopt;
  return api::dump(*r);
}

void serve_mcp_stdio(McpServer& server, std::istream& in, std::ostream& out) {
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::optional<std::string> reply;
    if (line.size() > kMaxLine)
      reply = rpc_error(nullptr, kInvalidRequest, "message larger than 32 MiB").dump();
    else
      reply = server.handle_text(line);
    if (reply) out << *reply << "\n" << std::flush;
  }
}

void register_mcp_routes(HttpServer& server, McpServer& mcp, OpenAIService* metrics) {
  server.set_error_format("/mcp", [](int, const std::string& message) { return rpc_error(nullptr, kInvalidRequest, message); });
  server.route(Method::post, "/mcp", [&mcp, metrics](const httplib::Request& req, httplib::Response& res) {
    const std::optional<std::string> reply = mcp.handle_text(req.body);
    if (!reply) {
      res.status = 202;  // notifications and responses only
    } else {
      // A message that could not be read at all (no id to answer) is also an HTTP 400.
      const json r = json::parse(*reply);
      res.status = r.is_object() && r.contains("error") && r["id"].is_null() ? 400 : 200;
      res.set_content(*reply, "application/json");
    }
    if (metrics) metrics->count_request("/mcp", res.status);
  });
  auto not_allowed = [metrics](const httplib::Request&, httplib::Response& res) {
    res.set_header("Allow", "POST");
    send_json(res, rpc_error(nullptr, kInvalidRequest, "this server sends no server-initiated messages: POST JSON-RPC to /mcp"), 405);
    if (metrics) metrics->count_request("/mcp", 405);
  };
  server.route(Method::get, "/mcp", not_allowed);
  server.route(Method::del, "/mcp", not_allowed);
}

}  // namespace etna::server
