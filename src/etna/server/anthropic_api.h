// Anthropic's Messages API over Etna's chat model, shaped so the official @anthropic-ai/sdk works
// unmodified: POST /v1/messages (system, multi-turn, max_tokens, stop_sequences, temperature /
// top_p / top_k, streaming with message_start, content_block_start, ping, content_block_delta,
// content_block_stop, message_delta and message_stop events) and POST /v1/messages/count_tokens.
// Authentication takes the server's API keys in `x-api-key` (as well as the other headers). Errors
// use Anthropic's body {"type": "error", "error": {"type", "message"}}.
#pragma once
#include "etna/server/http_server.h"

namespace etna::server {

class OpenAIService;

// Registers the routes on `server` (before start); `service` must outlive it. Requests are counted
// in the service's /metrics.
void register_anthropic_routes(HttpServer& server, OpenAIService& service);

// Anthropic's error body; the error type follows the status (400 invalid_request_error, 401
// authentication_error, 403 permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 503 overloaded_error, else api_error).
nlohmann::json anthropic_error_body(int status, const std::string& message);

}  // namespace etna::server
