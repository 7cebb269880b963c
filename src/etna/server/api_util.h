// Request plumbing shared by the compatibility APIs built on OpenAIService (Ollama, Anthropic
// Messages, OpenAI Responses): body field readers that throw etna::Error(invalid_argument) naming
// the field (each API turns that into its own error body), ids and timestamps, and one streamed
// generation written through an httplib chunked content provider.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etna/engine/scheduler.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::server {

class OpenAIService;

namespace api {

using json = nlohmann::json;

// The member `name` of an object, null when absent or JSON null.
const json* field(const json& body, const char* name);
// Typed members: absent or null = `def`; a wrong type or a value outside [lo, hi] throws
// invalid_argument naming `where` (e.g. "options.temperature").
double number_field(const json& body, const char* name, double def, double lo, double hi, const std::string& where = "");
int64_t int_field(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi, const std::string& where = "");
bool bool_field(const json& body, const char* name, bool def, const std::string& where = "");
std::string string_field(const json& body, const char* name, const std::string& def, const std::string& where = "");
// A string or an array of non-empty strings (at most 16), as stop sequences.
std::vector<std::string> stop_strings(const json& value, const std::string& where);

// The request body as a JSON object; throws invalid_argument when it is not one.
json object_body(const httplib::Request& req);

// prefix + 24 random hex digits.
std::string random_id(const std::string& prefix);
int64_t unix_seconds();
// UTC now as RFC 3339 with nanoseconds ("2026-12-01T23:09:01.123456789Z").
std::string rfc3339_now();
// JSON text with invalid UTF-8 replaced (model output may split a character).
std::string dump(const json& j);

// Which of `stops` ended a finished generation (finish = stop), "" when none did (an
// end-of-generation token or a stop string the caller did not ask for). The earliest occurrence
// in the decoded tokens wins, as the engine stops at the first match.
std::string matched_stop(const tokenizer::Tokenizer& tok, const engine::GenerationEvent& result,
                         const std::vector<std::string>& stops);

// One generation streamed to the client. All callbacks return the bytes to send (possibly "").
struct StreamWriter {
  std::function<std::string()> start;                                       // before the first piece
  std::function<std::string(const std::string& piece)> piece;               // each piece of text
  std::function<std::string(const engine::GenerationEvent& result)> done;   // after the last piece
  std::function<std::string(const std::string& message)> error;             // instead of done
  std::string keep_alive;  // sent about every second while nothing arrives ("" = nothing)
};

// Sets `res` to stream `request` through `service.generate` with `content_type` (start_stream:
// uncompressed, UTF-8). The generation runs when httplib asks for the body (on the handler's
// thread); a client that leaves cancels it.
void stream_generation(const httplib::Request& req, httplib::Response& res, OpenAIService& service,
                       engine::GenerationRequest request, const std::string& content_type, StreamWriter writer);

}  // namespace api
}  // namespace etna::server
