#include "etna/server/responses_api.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "etna/base/log.h"
#include "etna/server/api_util.h"
#include "etna/server/openai_api.h"

namespace etna::server {

using json = nlohmann::json;
using namespace api;

namespace {

// An error naming OpenAI's `param`.
class ParamError : public HttpError {
 public:
  ParamError(int status, std::string param, const std::string& message)
      : HttpError(status, ErrorKind::invalid_argument, message), param_(std::move(param)) {}
  const std::string& param() const { return param_; }

 private:
  std::string param_;
};

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ParamError(400, param, message); }

std::string item_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(where, fmt::format("'{}' must be a string or an array of content parts", where));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string w = fmt::format("{}[{}]", where, i);
    const std::string type = string_field(part, "type", "", w + ".type");
    if (type == "input_image" || type == "input_file" || type == "input_audio")
      bad(w, fmt::format("content parts of type '{}' are not supported: Etna's models read text only", type));
    if (type != "input_text" && type != "output_text" && type != "text")
      bad(w + ".type", fmt::format("content part type '{}' is not supported (input_text, output_text)", type));
    text += string_field(part, "text", "", w + ".text");
  }
  return text;
}

struct Parsed {
  std::string model, instructions;
  engine::GenerationRequest gr;
  bool stream = false, store = false;
  json format = {{"type", "text"}};
  json metadata = json::object();
  json tools_echo = json::array(), tool_choice_echo = "auto";
  ToolUse tools;
  engine::ToolFormat tool_format = engine::ToolFormat::generic;
  int64_t max_output_tokens = -1;
  double temperature = 1.0, top_p = 1.0;
};

// tools [{type: "function", name, description, parameters, strict}], tool_choice, parallel_tool_calls.
void parse_tools(const json& body, const ojson& obody, Parsed& p) {
  if (const json* t = field(body, "tools")) {
    if (!t->is_array()) bad("tools", "'tools' must be an array");
    p.tools_echo = *t;
    const ojson& ot = obody["tools"];
    for (size_t i = 0; i < ot.size(); ++i) {
      const ojson& tool = ot[i];
      const std::string w = fmt::format("tools[{}]", i);
      if (!tool.is_object()) bad(w, fmt::format("'{}' must be an object", w));
      const std::string type = tool.contains("type") && tool["type"].is_string() ? tool["type"].get<std::string>() : "";
      if (type != "function")
        bad(w + ".type", fmt::format("tools of type '{}' are not supported: only function tools (the server runs no hosted tools)", type));
      ojson fn = {{"name", tool.value("name", ojson())}};
      if (auto d = tool.find("description"); d != tool.end() && d->is_string()) fn["description"] = *d;
      if (auto params = tool.find("parameters"); params != tool.end() && !params->is_null()) fn["parameters"] = *params;
      p.tools.tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
  }
  p.tools.choice = "auto";
  if (const json* tc = field(body, "tool_choice")) {
    p.tool_choice_echo = *tc;
    if (tc->is_string()) {
      p.tools.choice = tc->get<std::string>();
      if (p.tools.choice != "auto" && p.tools.choice != "none" && p.tools.choice != "required")
        bad("tool_choice", fmt::format("tool_choice must be 'auto', 'none', 'required' or {{\"type\": \"function\", \"name\": ...}} (got '{}')", p.tools.choice));
    } else if (tc->is_object() && string_field(*tc, "type", "", "tool_choice.type") == "function") {
      p.tools.choice = "function";
      p.tools.name = string_field(*tc, "name", "", "tool_choice.name");
      if (p.tools.name.empty()) bad("tool_choice.name", "a function tool_choice needs a 'name'");
    } else {
      bad("tool_choice", "tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...} (hosted tools are not supported)");
    }
    if (p.tools.choice != "auto" && p.tools.choice != "none" && p.tools.tools.empty())
      bad("tool_choice", fmt::format("tool_choice '{}' needs 'tools'", p.tools.choice));
  }
  p.tools.parallel = bool_field(body, "parallel_tool_calls", true);
}

// input: a string, or items (messages, function_call, function_call_output) as OpenAI-shaped
// chat messages; consecutive function calls form one assistant turn.
ojson parse_input(const json& body, const std::string& instructions) {
  ojson messages = ojson::array();
  if (!instructions.empty()) messages.push_back({{"role", "system"}, {"content", instructions}});
  const json* input = field(body, "input");
  if (!input) bad("input", "'input' is required");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", input->get<std::string>()}});
    return messages;
  }
  if (!input->is_array()) bad("input", "'input' must be a string or an array of input items");
  if (input->empty()) bad("input", "'input' must not be empty");
  bool last_is_calls = false;  // the last message is an assistant turn made of function_call items
  for (size_t i = 0; i < input->size(); ++i) {
    const json& item = (*input)[i];
    const std::string where = fmt::format("input[{}]", i);
    if (!item.is_object()) bad(where, fmt::format("'{}' must be an object", where));
    const std::string type = string_field(item, "type", "message", where + ".type");
    if (type == "function_call") {
      const std::string call_id = string_field(item, "call_id", "", where + ".call_id");
      const std::string name = string_field(item, "name", "", where + ".name");
      if (call_id.empty() || name.empty()) bad(where, "a function_call item needs 'call_id' and 'name'");
      const std::string args = string_field(item, "arguments", "{}", where + ".arguments");
      if (!last_is_calls) messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", ojson::array()}});
      messages.back()["tool_calls"].push_back({{"id", call_id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", args}}}});
      last_is_calls = true;
      continue;
    }
    last_is_calls = false;
    if (type == "function_call_output") {
      const std::string call_id = string_field(item, "call_id", "", where + ".call_id");
      if (call_id.empty()) bad(where + ".call_id", "a function_call_output item needs 'call_id'");
      const json* out = field(item, "output");
      if (!out) bad(where + ".output", fmt::format("'{}.output' is required", where));
      messages.push_back({{"role", "tool"}, {"tool_call_id", call_id}, {"content", item_text(*out, where + ".output")}});
      continue;
    }
    if (type == "item_reference") bad(where, "item references are not supported: this server stores no items");
    if (type != "message")
      bad(where + ".type", fmt::format("input items of type '{}' are not supported (message, function_call, function_call_output)", type));
    std::string role = string_field(item, "role", "", where + ".role");
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      bad(where + ".role", fmt::format("role '{}' is not supported (user, assistant, system, developer)", role));
    const json* content = field(item, "content");
    if (!content) bad(where + ".content", fmt::format("'{}.content' is required", where));
    messages.push_back({{"role", role}, {"content", item_text(*content, where + ".content")}});
  }
  return messages;
}

Parsed parse(OpenAIService& s, const httplib::Request& req, const json& body) {
  Parsed p;
  p.model = string_field(body, "model", "");
  if (p.model.empty()) bad("model", "'model' is required");
  if (!s.ready()) throw HttpError(503, ErrorKind::unavailable, "the model is still loading; retry shortly");
  if (!s.has_chat_model()) throw ParamError(404, "model", "this server has no chat model (start it with -m)");
  if (p.model != s.model_id())
    throw ParamError(404, "model", fmt::format("the model '{}' does not exist; this server serves '{}'", p.model, s.model_id()));
  if (field(body, "previous_response_id"))
    bad("previous_response_id",
        "'previous_response_id' is not supported: this server is stateless (store: false); send the whole conversation in 'input'");
  if (field(body, "conversation")) bad("conversation", "'conversation' is not supported: this server stores no conversations");
  const ojson obody = ordered_body(req);
  parse_tools(body, obody, p);
  if (const json* r = field(body, "reasoning"); r && field(*r, "effort"))
    bad("reasoning", "'reasoning' is not supported: the served model has no reasoning mode");
  if (const json* bg = field(body, "background"); bg && bg->is_boolean() && bg->get<bool>())
    bad("background", "background responses are not supported (the server stores nothing)");
  p.store = bool_field(body, "store", false);  // accepted, but nothing is ever stored
  p.instructions = string_field(body, "instructions", "");
  auto& params = p.gr.params;
  p.max_output_tokens = int_field(body, "max_output_tokens", -1, 1, INT32_MAX);
  params.max_tokens = static_cast<int>(p.max_output_tokens);
  p.temperature = number_field(body, "temperature", 1.0, 0.0, 2.0);
  p.top_p = number_field(body, "top_p", 1.0, 0.0, 1.0);
  if (p.top_p <= 0) bad("top_p", "'top_p' must be greater than 0");
  params.temperature = static_cast<float>(p.temperature);
  params.top_p = static_cast<float>(p.top_p);
  if (const json* md = field(body, "metadata")) {
    if (!md->is_object()) bad("metadata", "'metadata' must be an object");
    p.metadata = *md;
  }
  if (const json* text = field(body, "text")) {
    if (!text->is_object()) bad("text", "'text' must be an object");
    if (const json* f = field(*text, "format")) {
      const std::string type = string_field(*f, "type", "", "text.format.type");
      if (type == "json_object")
        p.gr.json_object = true;
      else if (type == "json_schema") {
        const ojson& of = obody["text"]["format"];
        auto schema = of.find("schema");
        if (schema == of.end()) bad("text.format.schema", "text.format 'json_schema' needs a 'schema'");
        const bool strict = of.contains("strict") && of["strict"].is_boolean() && of["strict"].get<bool>();
        try {
          p.gr.grammar = schema_grammar(*schema, strict, "text.format.schema");
        } catch (const Error& e) {
          bad("text.format.schema", e.what());
        }
      } else if (type != "text")
        bad("text.format.type", fmt::format("text.format type '{}' is not supported (text, json_object, json_schema)", type));
      p.format = *f;
    }
  }
  p.stream = bool_field(body, "stream", false);
  const ojson messages = parse_input(body, p.instructions);
  if (p.tools.active() && p.tools.choice != "auto" && (p.gr.grammar || p.gr.json_object))
    bad("tool_choice", "a required or named tool_choice cannot be combined with a JSON text.format");
  try {
    p.tool_format = prepare_tool_chat(s, messages, p.tools, p.gr);
  } catch (const ParamError&) {
    throw;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::invalid_argument) throw;
    bad(std::string(e.what()).rfind("'tools'", 0) == 0 ? "tools" : "input", e.what());
  }
  if (p.gr.prompt.size() > static_cast<size_t>(s.n_ctx()))
    throw ParamError(400, "input", fmt::format("this model's maximum context length is {} tokens, but the input has {} tokens",
                                               s.n_ctx(), p.gr.prompt.size()));
  return p;
}

json message_item(const std::string& id, const std::string& status, const json& content) {
  return {{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"}, {"content", content}};
}

json text_part(const std::string& text) {
  return {{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}};
}

// The response object; `result` null while in progress.
json response_json(const Parsed& p, const std::string& id, int64_t created, const std::string& status, const json& output,
                   const engine::GenerationEvent* result) {
  json r = {{"id", id},
            {"object", "response"},
            {"created_at", created},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", nullptr},
            {"instructions", p.instructions.empty() ? json(nullptr) : json(p.instructions)},
            {"max_output_tokens", p.max_output_tokens < 0 ? json(nullptr) : json(p.max_output_tokens)},
            {"model", p.model},
            {"output", output},
            {"parallel_tool_calls", p.tools.parallel},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"temperature", p.temperature},
            {"text", {{"format", p.format}}},
            {"tool_choice", p.tool_choice_echo},
            {"tools", p.tools_echo},
            {"top_p", p.top_p},
            {"truncation", "disabled"},
            {"usage", nullptr},
            {"user", nullptr},
            {"metadata", p.metadata}};
  if (result) {
    if (result->finish == engine::FinishReason::length) {
      r["status"] = "incomplete";
      r["incomplete_details"] = {{"reason", "max_output_tokens"}};
    }
    r["usage"] = {{"input_tokens", result->prompt_tokens},
                  {"input_tokens_details", {{"cached_tokens", result->cached_tokens}}},
                  {"output_tokens", result->completion_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", result->prompt_tokens + result->completion_tokens}};
  }
  return r;
}

json function_call_item(const std::string& id, const engine::ToolCall& c, const std::string& status, bool with_arguments) {
  return {{"type", "function_call"}, {"id", id},         {"call_id", c.id},
          {"name", c.name},          {"arguments", with_arguments ? c.arguments : ""}, {"status", status}};
}

void handle_create(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  auto p = std::make_shared<Parsed>(parse(s, req, body));
  const std::string id = random_id("resp_"), msg_id = random_id("msg_");
  const int64_t created = unix_seconds();
  engine::GenerationRequest gr = std::move(p->gr);
  const bool tools = p->tools.active();
  if (!p->stream) {
    const engine::GenerationEvent r = s.generate(std::move(gr), {});
    const std::string status = r.finish == engine::FinishReason::length ? "incomplete" : "completed";
    engine::ParsedReply reply;
    if (tools) reply = engine::parse_tool_calls(p->tool_format, r.text);
    else reply.content = r.text;
    json output = json::array();
    if (!reply.content.empty() || reply.calls.empty())
      output.push_back(message_item(msg_id, status, json::array({text_part(reply.content)})));
    for (const auto& c : reply.calls) output.push_back(function_call_item(random_id("fc_"), c, "completed", true));
    send_json(res, response_json(*p, id, created, "completed", output, &r));
    return;
  }
  // The message item is opened at once without tools; with tools only when text outside the
  // calls appears. Each call is an item as soon as its name is generated, its arguments following
  // as function_call_arguments.delta pieces.
  struct Call {
    std::string item_id;
    engine::ToolCall call;
    int index = 0;
    bool done = false;
  };
  struct State {
    int seq = 0;
    std::string text;
    std::optional<engine::ToolCallFilter> filter;
    ToolCallDeltas deltas;
    bool message_open = false, message_done = false;
    int items = 0;     // output items opened so far
    int msg_index = -1;
    std::vector<Call> calls;
    std::vector<std::pair<int, json>> output;  // finished items by output index
  };
  auto st = std::make_shared<State>();
  if (tools) st->filter.emplace(p->tool_format);
  auto event = [st](const char* type, json data) {
    data["type"] = type;
    data["sequence_number"] = st->seq++;
    return sse_event(type, data);
  };
  auto close_message = [=](const std::string& status) {
    if (!st->message_open || st->message_done) return std::string();
    st->message_done = true;
    const json item = message_item(msg_id, status, json::array({text_part(st->text)}));
    std::string out = event("response.output_text.done", {{"item_id", msg_id},
                                                          {"output_index", st->msg_index},
                                                          {"content_index", 0},
                                                          {"text", st->text},
                                                          {"logprobs", json::array()}});
    out += event("response.content_part.done",
                 {{"item_id", msg_id}, {"output_index", st->msg_index}, {"content_index", 0}, {"part", text_part(st->text)}});
    out += event("response.output_item.done", {{"output_index", st->msg_index}, {"item", item}});
    st->output.emplace_back(st->msg_index, item);
    return out;
  };
  auto close_call = [=](Call& c) {
    if (c.done) return std::string();
    c.done = true;
    std::string out = event("response.function_call_arguments.done",
                            {{"item_id", c.item_id}, {"output_index", c.index}, {"name", c.call.name}, {"arguments", c.call.arguments}});
    const json item = function_call_item(c.item_id, c.call, "completed", true);
    st->output.emplace_back(c.index, item);
    return out + event("response.output_item.done", {{"output_index", c.index}, {"item", item}});
  };
  auto open_message = [=] {
    st->message_open = true;
    st->msg_index = st->items++;
    std::string out = event("response.output_item.added", {{"output_index", st->msg_index}, {"item", message_item(msg_id, "in_progress", json::array())}});
    return out + event("response.content_part.added",
                       {{"item_id", msg_id}, {"output_index", st->msg_index}, {"content_index", 0}, {"part", text_part("")}});
  };
  auto text_delta = [=](const std::string& piece) {
    if (piece.empty() || st->message_done) return std::string();  // (text after the calls: in the final message only)
    std::string out = st->message_open ? "" : open_message();
    st->text += piece;
    return out + event("response.output_text.delta", {{"item_id", msg_id},
                                                      {"output_index", st->msg_index},
                                                      {"content_index", 0},
                                                      {"delta", piece},
                                                      {"logprobs", json::array()}});
  };
  auto call_events = [=](const std::vector<ToolCallDeltas::Event>& events) {
    std::string out;
    for (const auto& ev : events) {
      if (ev.start) {
        out += close_message("completed");
        if (!st->calls.empty()) out += close_call(st->calls.back());
        Call c;
        c.item_id = random_id("fc_");
        c.call.id = ev.id;
        c.call.name = ev.name;
        c.index = st->items++;
        out += event("response.output_item.added", {{"output_index", c.index}, {"item", function_call_item(c.item_id, c.call, "in_progress", false)}});
        st->calls.push_back(std::move(c));
      } else if (ev.index < st->calls.size() && !st->calls[ev.index].done) {
        Call& c = st->calls[ev.index];
        c.call.arguments += ev.arguments;
        out += event("response.function_call_arguments.delta", {{"item_id", c.item_id}, {"output_index", c.index}, {"delta", ev.arguments}});
      }
    }
    return out;
  };
  StreamWriter w;
  w.start = [=] {
    const json r = response_json(*p, id, created, "in_progress", json::array(), nullptr);
    std::string out = event("response.created", {{"response", r}});  // one by one: sequence numbers in order
    out += event("response.in_progress", {{"response", r}});
    return tools ? out : out + open_message();
  };
  w.piece = [=](const std::string& piece) {
    if (!st->filter) return text_delta(piece);
    std::string out = text_delta(st->filter->push(piece));
    return out + call_events(st->deltas.update(*st->filter));
  };
  w.done = [=](const engine::GenerationEvent& r) {
    engine::ParsedReply reply;
    std::string out;
    if (st->filter) {
      reply = st->filter->finish();
      out += call_events(st->deltas.finish(reply.calls));
      for (size_t i = 0; i < reply.calls.size() && i < st->calls.size(); ++i)
        if (!st->calls[i].done) st->calls[i].call.arguments = reply.calls[i].arguments;  // the final word
      if (st->calls.empty()) out += text_delta(reply.content);
      else if (st->message_open) st->text += reply.content;  // text after the calls joins the message, as non-streamed
    }
    if (!st->message_open && st->calls.empty()) out += open_message();  // an empty reply is an empty message
    const std::string item_status = r.finish == engine::FinishReason::length ? "incomplete" : "completed";
    out += close_message(item_status);
    for (auto& c : st->calls) out += close_call(c);
    std::sort(st->output.begin(), st->output.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    json output = json::array();
    for (auto& [index, item] : st->output) output.push_back(item);
    const json resp = response_json(*p, id, created, "completed", output, &r);
    out += event(resp["status"] == "incomplete" ? "response.incomplete" : "response.completed", {{"response", resp}});
    return out;
  };
  w.error = [=](const std::string& message) {
    return event("error", {{"code", "server_error"}, {"message", "generation failed: " + message}, {"param", nullptr}});
  };
  w.keep_alive = ": keep-alive\n\n";
  stream_generation(req, res, s, std::move(gr), "text/event-stream", std::move(w));
}

template <typename F>
HttpServer::Handler counted(OpenAIService& s, std::string endpoint, F fn) {
  return [&s, endpoint = std::move(endpoint), fn](const httplib::Request& req, httplib::Response& res) {
    auto send = [&](int status, const std::string& message, const std::string& param = "") {
      send_json(res, openai_error_body(status, message, "", param), status);
    };
    try {
      fn(s, req, res);
    } catch (const ParamError& e) {
      send(e.status(), e.what(), e.param());
    } catch (const engine::QueueFullError& e) {
      send(429, e.what());
      res.set_header("Retry-After", "1");
    } catch (const Error& e) {
      int status = http_status_for(e);
      if (e.kind() == ErrorKind::limit) status = 400;
      if (status >= 500) log::warn("responses: {} {} -> {}: {}", req.method, req.path, status, e.what());
      send(status, e.what());
    } catch (const json::exception& e) {
      send(400, std::string("invalid request body: ") + e.what());
    } catch (const std::exception& e) {
      send(500, std::string("internal error: ") + e.what());
    }
    s.count_request(endpoint, res.status);
  };
}

}  // namespace

void register_responses_routes(HttpServer& server, OpenAIService& service) {
  server.route(Method::post, "/v1/responses", counted(service, "/v1/responses", handle_create));
  auto stateless = [](OpenAIService&, const httplib::Request& req, httplib::Response&) {
    throw ParamError(404, "response_id",
                     fmt::format("no response '{}': this server is stateless and stores no responses", std::string(req.matches[1])));
  };
  server.route(Method::get, R"(/v1/responses/([^/]+))", counted(service, "/v1/responses/{id}", stateless));
  server.route(Method::del, R"(/v1/responses/([^/]+))", counted(service, "/v1/responses/{id}", stateless));
}

}  // namespace etna::server
