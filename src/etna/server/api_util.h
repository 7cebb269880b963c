// Request plumbing shared by the compatibility APIs built on OpenAIService (Ollama, Anthropic
// Messages, OpenAI Responses): body field readers that throw etna::Error(invalid_argument) naming
// the field (each API turns that into its own error body), ids and timestamps, tools and schemas
// as /v1/chat/completions uses them, server-sent events, and one streamed generation written
// through an httplib chunked content provider.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etna/engine/grammar.h"
#include "etna/engine/scheduler.h"
#include "etna/engine/tool_calls.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::server {

class OpenAIService;

namespace api {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

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

// The same body with its keys in the client's order (schemas generate properties in that order).
// REQUIRES object_body(req) succeeded.
ojson ordered_body(const httplib::Request& req);

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

// One server-sent event: "event: <name>\ndata: <json>\n\n".
std::string sse_event(const std::string& name, const json& data);

// The grammar of JSON texts valid under `schema` (engine/json_schema.h); a schema the compiler
// refuses throws invalid_argument "<where>: <why>".
std::shared_ptr<const engine::Grammar> schema_grammar(const ojson& schema, bool strict, const std::string& where);

// Tools an adapter's request asks for, translated to OpenAI's shape.
struct ToolUse {
  ojson tools = ojson::array();  // [{type: "function", function: {name, description, parameters}}]
  std::string choice = "auto";   // auto | none | required | function (then `name`)
  std::string name;
  bool parallel = true;
  bool active() const { return choice != "none" && !tools.empty(); }
};

// What /v1/chat/completions does with tools, for an adapter: validates `use` (at most 128 tools,
// a named choice among them), sets request.prompt from `messages` (OpenAI's shape, see
// OpenAIService::tool_chat_prompt; tools left out when not active) and, when the choice is
// required or named, request.grammar forcing calls whose arguments follow the parameter schemas.
// Returns the format replies are parsed with. Throws invalid_argument naming `where`.
engine::ToolFormat prepare_tool_chat(OpenAIService& service, const ojson& messages, const ToolUse& use,
                                     engine::GenerationRequest& request, const std::string& where = "tools");

// Arguments of a parsed call (compact JSON text of an object) as a JSON value.
json call_arguments(const engine::ToolCall& call);

// A streamed reply's tool calls as events, each piece sent once: a call starts (id and name
// known), then pieces of its arguments as they are generated. update() after each push to the
// filter; finish() with the filter's final calls sends what is left (a call first seen there
// starts and gets all its arguments).
class ToolCallDeltas {
 public:
  struct Event {
    size_t index = 0;
    bool start = false;              // a new call: id and name set, arguments ""
    std::string id, name, arguments;  // otherwise: the next piece of call `index`'s arguments
  };
  std::vector<Event> update(engine::ToolCallFilter& filter);
  std::vector<Event> finish(const std::vector<engine::ToolCall>& calls);
  // The arguments sent so far of call `index`.
  const std::string& sent(size_t index) const { return sent_.at(index); }

 private:
  std::vector<std::string> sent_;
};

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
