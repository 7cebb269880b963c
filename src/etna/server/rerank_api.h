// POST /v1/rerank (also /rerank and /v1/reranking): documents scored against a query by the
// server's cross-encoder (`etna serve --reranker MODEL`), in the request and response shape of
// llama.cpp's server and the Jina / Cohere rerank APIs:
//   {"model"?, "query", "documents": [string | {"text"}], "top_n"?, "return_documents"?}
//   -> {"model", "object": "list", "usage": {"prompt_tokens", "total_tokens"},
//       "results": [{"index", "relevance_score", "document"?: {"text"}}]}  best first.
#pragma once
#include "etna/engine/reranker.h"
#include "etna/server/http_server.h"

namespace etna::server {

// REQUIRES: `reranker` outlives the server.
void register_rerank_routes(HttpServer& server, const engine::Reranker& reranker);

}  // namespace etna::server
