// OpenAI's Responses API over Etna's chat model, shaped so the official `openai` client's
// client.responses.create / .stream work unmodified: POST /v1/responses with `input` (a string or
// message items), `instructions`, max_output_tokens, temperature / top_p, `text.format`
// (text, json_object) and streaming (response.created, response.in_progress,
// response.output_item.added, response.content_part.added, response.output_text.delta,
// response.output_text.done, response.content_part.done, response.output_item.done,
// response.completed). Stateless: nothing is stored, so `previous_response_id` is refused and
// GET /v1/responses/{id} answers 404. Errors use OpenAI's body.
#pragma once
#include "etna/server/http_server.h"

namespace etna::server {

class OpenAIService;

// Registers the routes on `server` (before start); `service` must outlive it. Requests are counted
// in the service's /metrics.
void register_responses_routes(HttpServer& server, OpenAIService& service);

}  // namespace etna::server
