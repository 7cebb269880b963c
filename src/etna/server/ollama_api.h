// Ollama's API over Etna's loaded models, shaped so the official `ollama` clients (and tools that
// speak Ollama: Open WebUI, Continue, editor plugins) work unmodified: POST /api/chat and
// /api/generate (NDJSON streaming by default, format "json", options, raw, context), /api/embed
// and /api/embeddings, GET /api/tags, POST /api/show, GET /api/ps, GET /api/version. Pulling,
// deleting, creating, copying and pushing models answer 501 (Etna serves the files given on its
// command line; there is no model library yet). Errors use Ollama's body {"error": "message"}.
#pragma once
#include <string>

#include "etna/server/http_server.h"

namespace etna::server {

class OpenAIService;

// Registers the /api/{chat,generate,embed,embeddings,tags,show,ps,version,...} routes on `server`
// (before start). `service` (may be null: then the model routes answer 404 "model not found") must
// outlive the server. Requests are counted in the service's /metrics.
// With `root`, GET / answers "Ollama is running" as Ollama does (for a listener of its own, where
// clients probe it; the main listener's / is the web app).
void register_ollama_routes(HttpServer& server, OpenAIService* service, const std::string& version, bool root = false);

}  // namespace etna::server
