#include "etna/server/rerank_api.h"

#include <algorithm>
#include <numeric>

namespace etna::server {

using nlohmann::json;

namespace {

void bad(const std::string& message) { throw HttpError(400, ErrorKind::invalid_argument, message); }

void handle(const engine::Reranker& reranker, const httplib::Request& req, httplib::Response& res) {
  const json body = parse_json_body(req);
  if (!body.is_object()) bad("the request body must be a JSON object");
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) bad("'model' must be a string");
    const std::string m = body["model"].get<std::string>();
    if (!m.empty() && m != reranker.model_name())
      throw HttpError(404, ErrorKind::not_found, "the model '" + m + "' does not exist; this server reranks with '" +
                                                     reranker.model_name() + "'");
  }
  if (!body.contains("query") || !body["query"].is_string() || body["query"].get<std::string>().empty())
    bad("'query' is required and must be a non-empty string");
  if (!body.contains("documents") || !body["documents"].is_array()) bad("'documents' is required and must be a list");
  const std::string query = body["query"].get<std::string>();
  std::vector<std::string> docs;
  for (const json& d : body["documents"]) {
    if (d.is_string()) docs.push_back(d.get<std::string>());
    else if (d.is_object() && d.contains("text") && d["text"].is_string()) docs.push_back(d["text"].get<std::string>());
    else bad("each document must be a string or {\"text\": string}");
  }
  if (docs.empty()) bad("'documents' is empty");
  if (docs.size() > 1024) bad("at most 1024 documents per request");
  size_t top_n = docs.size();
  if (body.contains("top_n") && !body["top_n"].is_null()) {
    if (!body["top_n"].is_number_integer() || body["top_n"].get<int64_t>() < 1) bad("'top_n' must be a positive integer");
    top_n = std::min(top_n, static_cast<size_t>(body["top_n"].get<int64_t>()));
  }
  const bool return_documents = body.value("return_documents", false);
  const std::vector<float> scores = reranker.score(query, docs);
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  json results = json::array();
  for (size_t i = 0; i < top_n; ++i) {
    json r = {{"index", order[i]}, {"relevance_score", scores[order[i]]}};
    if (return_documents) r["document"] = {{"text", docs[order[i]]}};
    results.push_back(std::move(r));
  }
  const int tokens = reranker.count_tokens(query, docs);
  send_json(res, {{"model", reranker.model_name()},
                  {"object", "list"},
                  {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}},
                  {"results", std::move(results)}});
}

}  // namespace

void register_rerank_routes(HttpServer& server, const engine::Reranker& reranker) {
  for (const char* path : {"/v1/rerank", "/rerank", "/v1/reranking"})
    server.route(Method::post, path,
                 [&reranker](const httplib::Request& req, httplib::Response& res) { handle(reranker, req, res); });
}

}  // namespace etna::server
