#include "etna/server/anthropic_api.h"

#include <optional>

#include <fmt/format.h>

#include "etna/base/log.h"
#include "etna/server/api_util.h"
#include "etna/server/openai_api.h"

namespace etna::server {

using json = nlohmann::json;
using namespace api;

nlohmann::json anthropic_error_body(int status, const std::string& message) {
  const char* type = status == 400   ? "invalid_request_error"
                     : status == 401 ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 413 ? "request_too_large"
                     : status == 429 ? "rate_limit_error"
                     : status == 503 ? "overloaded_error"
                     : status < 500  ? "invalid_request_error"
                                     : "api_error";
  return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

namespace {

[[noreturn]] void bad(const std::string& message) { throw HttpError(400, ErrorKind::invalid_argument, message); }

// The text of one text block; any other block type is refused naming it.
std::string block_text(const json& b, const std::string& w, bool tool_blocks_here) {
  if (!b.is_object()) bad(fmt::format("{}: each content block must be an object", w));
  const std::string type = string_field(b, "type", "", w + ".type");
  if (type == "image" || type == "document")
    bad(fmt::format("{}: content blocks of type '{}' are not supported: Etna's models read text only", w, type));
  if (type != "text")
    bad(fmt::format("{}.type: content block type '{}' is not supported here (text{})", w, type,
                    tool_blocks_here ? ", tool_use in assistant turns, tool_result in user turns" : ""));
  const json* t = field(b, "text");
  if (!t || !t->is_string()) bad(fmt::format("{}.text: Field required (a string)", w));
  return t->get<std::string>();
}

// The text of a content value: a string or an array of text blocks.
std::string content_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(fmt::format("{}: must be a string or an array of content blocks", where));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) text += block_text(content[i], fmt::format("{}.{}", where, i), false);
  return text;
}

struct Parsed {
  std::string model;
  engine::GenerationRequest gr;
  bool stream = false;
  ToolUse tools;
  engine::ToolFormat format = engine::ToolFormat::generic;
};

// One Anthropic message as OpenAI-shaped messages: an assistant turn with text and tool_use
// blocks is one assistant message with tool_calls; a user turn's tool_result blocks are tool
// messages, its text one user message (in the order they come).
void convert_message(const std::string& role, const json& content, const std::string& where, ojson& out) {
  if (content.is_string()) {
    out.push_back({{"role", role}, {"content", content.get<std::string>()}});
    return;
  }
  if (!content.is_array()) bad(fmt::format("{}: must be a string or an array of content blocks", where));
  std::string text;
  ojson calls = ojson::array();
  auto flush_text = [&] {
    if (!text.empty()) out.push_back({{"role", "user"}, {"content", text}});
    text.clear();
  };
  for (size_t i = 0; i < content.size(); ++i) {
    const json& b = content[i];
    const std::string w = fmt::format("{}.{}", where, i);
    if (!b.is_object()) bad(fmt::format("{}: each content block must be an object", w));
    const std::string type = string_field(b, "type", "", w + ".type");
    if (type == "tool_use") {
      if (role != "assistant") bad(fmt::format("{}: tool_use blocks belong in assistant turns", w));
      const std::string id = string_field(b, "id", "", w + ".id"), name = string_field(b, "name", "", w + ".name");
      if (id.empty() || name.empty()) bad(fmt::format("{}: a tool_use block needs 'id' and 'name'", w));
      const json* input = field(b, "input");
      if (input && !input->is_object()) bad(fmt::format("{}.input: Input should be an object", w));
      calls.push_back({{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", dump(input ? *input : json::object())}}}});
    } else if (type == "tool_result") {
      if (role != "user") bad(fmt::format("{}: tool_result blocks belong in user turns", w));
      flush_text();
      const std::string id = string_field(b, "tool_use_id", "", w + ".tool_use_id");
      if (id.empty()) bad(fmt::format("{}.tool_use_id: Field required", w));
      const json* c = field(b, "content");
      std::string result = c ? content_text(*c, w + ".content") : "";
      if (bool_field(b, "is_error", false, w + ".is_error")) result = "Error: " + result;
      out.push_back({{"role", "tool"}, {"tool_call_id", id}, {"content", result}});
    } else {
      text += block_text(b, w, true);
    }
  }
  if (role == "assistant") {
    ojson msg = {{"role", "assistant"}, {"content", text}};
    if (!calls.empty()) msg["tool_calls"] = std::move(calls);
    out.push_back(std::move(msg));
  } else {
    flush_text();
  }
}

ojson parse_messages(const json& body) {
  ojson out = ojson::array();
  if (const json* sys = field(body, "system")) {
    const std::string text = content_text(*sys, "system");
    if (!text.empty()) out.push_back({{"role", "system"}, {"content", text}});
  }
  const json* msgs = field(body, "messages");
  if (!msgs) bad("messages: Field required");
  if (!msgs->is_array()) bad("messages: Input should be a valid list");
  if (msgs->empty()) bad("messages: at least one message is required");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = fmt::format("messages.{}", i);
    if (!m.is_object()) bad(where + ": Input should be an object");
    const std::string role = string_field(m, "role", "", where + ".role");
    if (role != "user" && role != "assistant")
      bad(fmt::format("{}.role: Input should be 'user' or 'assistant' (got '{}'; put system prompts in 'system')", where, role));
    const json* content = field(m, "content");
    if (!content) bad(where + ".content: Field required");
    convert_message(role, *content, where + ".content", out);
  }
  return out;
}

// tools [{name, description, input_schema}] and tool_choice {type: auto | any | tool | none}.
ToolUse parse_tools(const json& body, const ojson& obody) {
  ToolUse u;
  if (const json* t = field(body, "tools")) {
    if (!t->is_array()) bad("tools: Input should be a valid list");
    const ojson& ot = obody["tools"];
    for (size_t i = 0; i < ot.size(); ++i) {
      const ojson& tool = ot[i];
      const std::string w = fmt::format("tools.{}", i);
      if (!tool.is_object()) bad(w + ": Input should be an object");
      if (auto type = tool.find("type"); type != tool.end() && !type->is_null() && *type != "custom")
        bad(fmt::format("{}.type: server tools ('{}') are not supported; only client tools with an input_schema",
                        w, type->is_string() ? type->get<std::string>() : type->dump()));
      auto name = tool.find("name");
      if (name == tool.end() || !name->is_string()) bad(w + ".name: Field required");
      auto schema = tool.find("input_schema");
      if (schema == tool.end() || !schema->is_object()) bad(w + ".input_schema: Field required (a JSON Schema object)");
      ojson fn = {{"name", *name}, {"parameters", *schema}};
      if (auto d = tool.find("description"); d != tool.end() && d->is_string()) fn["description"] = *d;
      u.tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
  }
  u.choice = "auto";
  if (const json* c = field(body, "tool_choice")) {
    if (!c->is_object()) bad("tool_choice: Input should be an object");
    const std::string type = string_field(*c, "type", "", "tool_choice.type");
    if (type == "any") u.choice = "required";
    else if (type == "tool") u.choice = "function", u.name = string_field(*c, "name", "", "tool_choice.name");
    else if (type == "auto" || type == "none") u.choice = type;
    else bad(fmt::format("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none' (got '{}')", type));
    if (u.choice == "function" && u.name.empty()) bad("tool_choice.name: Field required");
    u.parallel = !bool_field(*c, "disable_parallel_tool_use", false, "tool_choice.disable_parallel_tool_use");
    if (u.choice != "auto" && u.choice != "none" && u.tools.empty()) bad("tool_choice: needs 'tools'");
  }
  return u;
}

Parsed parse(OpenAIService& s, const httplib::Request& req, json body) {
  Parsed p;
  const json* model = field(body, "model");
  if (!model) bad("model: Field required");
  if (!model->is_string()) bad("model: Input should be a valid string");
  p.model = model->get<std::string>();
  if (!s.ready()) throw HttpError(503, ErrorKind::unavailable, "the model is still loading; retry shortly");
  if (!s.has_chat_model()) throw HttpError(404, ErrorKind::not_found, "this server has no chat model (start it with -m)");
  if (p.model != s.model_id())
    throw HttpError(404, ErrorKind::not_found, fmt::format("model: {} (this server serves '{}')", p.model, s.model_id()));
  auto& params = p.gr.params;
  const json* mt = field(body, "max_tokens");
  if (!mt) bad("max_tokens: Field required");
  params.max_tokens = static_cast<int>(int_field(body, "max_tokens", 0, 1, INT32_MAX));
  params.temperature = static_cast<float>(number_field(body, "temperature", 1.0, 0.0, 1.0));
  params.top_p = static_cast<float>(number_field(body, "top_p", 1.0, 0.0, 1.0));
  if (params.top_p <= 0) bad("top_p: must be greater than 0");
  params.top_k = static_cast<int>(int_field(body, "top_k", 0, 0, 1 << 20));
  params.min_p = 0.0f;  // Anthropic has no min-p: plain temperature / top-p / top-k sampling
  if (const json* st = field(body, "stop_sequences")) {
    if (!st->is_array()) bad("stop_sequences: Input should be a valid list");
    params.stop = stop_strings(*st, "stop_sequences");
  }
  p.stream = bool_field(body, "stream", false);
  if (const json* th = field(body, "thinking"); th && string_field(*th, "type", "", "thinking.type") != "disabled")
    bad("thinking: extended thinking is not supported by the served model");
  if (const json* md = field(body, "metadata"); md && !md->is_object()) bad("metadata: Input should be an object");
  p.tools = parse_tools(body, ordered_body(req));
  p.format = prepare_tool_chat(s, parse_messages(body), p.tools, p.gr);
  if (p.gr.prompt.size() > static_cast<size_t>(s.n_ctx()))
    bad(fmt::format("prompt is too long: {} tokens > {} maximum", p.gr.prompt.size(), s.n_ctx()));
  return p;
}

const char* stop_reason(const engine::GenerationEvent& r, const std::string& stop, bool calls) {
  if (calls) return "tool_use";
  if (!stop.empty()) return "stop_sequence";
  return r.finish == engine::FinishReason::length ? "max_tokens" : "end_turn";
}

// Anthropic's ids for tool_use blocks ("toolu_..."), unless the template insists on its own shape.
std::string tool_use_id(const engine::ToolCall& c) {
  return c.id.rfind("call_", 0) == 0 ? "toolu_" + c.id.substr(5) : c.id;
}

json tool_use_block(const engine::ToolCall& c, bool with_input = true) {
  return {{"type", "tool_use"}, {"id", tool_use_id(c)}, {"name", c.name}, {"input", with_input ? call_arguments(c) : json::object()}};
}

void handle_messages(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  Parsed p = parse(s, req, object_body(req));
  const std::string id = random_id("msg_");
  const std::vector<std::string> stops = p.gr.params.stop;
  const tokenizer::Tokenizer& tok = *s.chat_tokenizer();
  const bool tools = p.tools.active();
  const engine::ToolFormat format = p.format;
  if (!p.stream) {
    const engine::GenerationEvent r = s.generate(std::move(p.gr), {});
    const std::string stop = matched_stop(tok, r, stops);
    engine::ParsedReply reply;
    if (tools) reply = engine::parse_tool_calls(format, r.text);
    else reply.content = r.text;
    json content = json::array();
    if (!reply.content.empty() || reply.calls.empty()) content.push_back({{"type", "text"}, {"text", reply.content}});
    for (const auto& c : reply.calls) content.push_back(tool_use_block(c));
    send_json(res, {{"id", id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", p.model},
                    {"content", content},
                    {"stop_reason", stop_reason(r, stop, !reply.calls.empty())},
                    {"stop_sequence", stop.empty() || !reply.calls.empty() ? json(nullptr) : json(stop)},
                    {"usage", {{"input_tokens", r.prompt_tokens}, {"output_tokens", r.completion_tokens}}}});
    return;
  }
  // Content blocks are opened as they come: without tools the text block at once (as Anthropic
  // does); with tools a text block only for text outside the calls, and a tool_use block per call
  // as soon as its name is generated, its input following as input_json_delta pieces.
  struct State {
    std::optional<engine::ToolCallFilter> filter;
    ToolCallDeltas deltas;
    int blocks = 0;          // content blocks opened so far
    int open = -1;           // the open block, -1 = none
    bool open_is_text = false;
    std::vector<int> call_block;  // block index of each call
  };
  auto st = std::make_shared<State>();
  if (tools) st->filter.emplace(format);
  auto close = [st] {
    if (st->open < 0) return std::string();
    const int index = st->open;
    st->open = -1;
    return sse_event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
  };
  auto open = [st](const json& block) {
    st->open = st->blocks++;
    st->open_is_text = block["type"] == "text";
    return sse_event("content_block_start", {{"type", "content_block_start"}, {"index", st->open}, {"content_block", block}});
  };
  auto text_delta = [st, close, open](const std::string& text) {
    std::string out;
    if (text.empty()) return out;
    if (st->open < 0 || !st->open_is_text) {
      out += close();  // (two statements: the order matters)
      out += open({{"type", "text"}, {"text", ""}});
    }
    return out + sse_event("content_block_delta", {{"type", "content_block_delta"},
                                                   {"index", st->open},
                                                   {"delta", {{"type", "text_delta"}, {"text", text}}}});
  };
  auto call_events = [st, close, open](const std::vector<ToolCallDeltas::Event>& events) {
    std::string out;
    for (const auto& ev : events) {
      if (ev.start) {
        engine::ToolCall c;
        c.id = ev.id;
        c.name = ev.name;
        out += close();
        out += open(tool_use_block(c, false));
        st->call_block.push_back(st->open);
      } else if (ev.index < st->call_block.size() && st->call_block[ev.index] == st->open) {
        // (A piece for a call whose block was closed cannot be sent; the pieces of one call
        // come before the next call starts except in malformed replies.)
        out += sse_event("content_block_delta", {{"type", "content_block_delta"},
                                                 {"index", st->open},
                                                 {"delta", {{"type", "input_json_delta"}, {"partial_json", ev.arguments}}}});
      }
    }
    return out;
  };
  const size_t input_tokens = p.gr.prompt.size();
  StreamWriter w;
  w.start = [id, model = p.model, input_tokens, tools, open] {
    json message = {{"id", id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", model},
                    {"content", json::array()},
                    {"stop_reason", nullptr},
                    {"stop_sequence", nullptr},
                    {"usage", {{"input_tokens", input_tokens}, {"output_tokens", 0}}}};
    std::string out = sse_event("message_start", {{"type", "message_start"}, {"message", message}});
    if (!tools) out += open({{"type", "text"}, {"text", ""}});
    return out + sse_event("ping", {{"type", "ping"}});
  };
  w.piece = [st, text_delta, call_events](const std::string& piece) {
    if (!st->filter) {
      return sse_event("content_block_delta",
                       {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", piece}}}});
    }
    std::string out = text_delta(st->filter->push(piece));
    return out + call_events(st->deltas.update(*st->filter));
  };
  w.done = [&tok, stops, st, text_delta, call_events, close, open](const engine::GenerationEvent& r) {
    const std::string stop = matched_stop(tok, r, stops);
    std::string out;
    engine::ParsedReply reply;
    if (st->filter) {
      reply = st->filter->finish();
      out += call_events(st->deltas.finish(reply.calls));
      out += text_delta(reply.content);
    }
    if (st->blocks == 0) out += open({{"type", "text"}, {"text", ""}});  // an empty reply: one empty text block, as non-streamed
    out += close();
    const bool calls = !reply.calls.empty();
    out += sse_event("message_delta", {{"type", "message_delta"},
                                       {"delta", {{"stop_reason", stop_reason(r, stop, calls)},
                                                  {"stop_sequence", stop.empty() || calls ? json(nullptr) : json(stop)}}},
                                       {"usage", {{"output_tokens", r.completion_tokens}}}});
    return out + sse_event("message_stop", {{"type", "message_stop"}});
  };
  w.error = [](const std::string& message) { return sse_event("error", anthropic_error_body(500, message)); };
  w.keep_alive = sse_event("ping", {{"type", "ping"}});
  stream_generation(req, res, s, std::move(p.gr), "text/event-stream", std::move(w));
}

void handle_count_tokens(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  json body = object_body(req);
  body["max_tokens"] = 1;  // not part of this request
  body.erase("stream");
  const Parsed p = parse(s, req, std::move(body));
  send_json(res, {{"input_tokens", p.gr.prompt.size()}});
}

template <typename F>
HttpServer::Handler counted(OpenAIService& s, std::string endpoint, F fn) {
  return [&s, endpoint = std::move(endpoint), fn](const httplib::Request& req, httplib::Response& res) {
    auto send = [&](int status, const std::string& message) { send_json(res, anthropic_error_body(status, message), status); };
    try {
      fn(s, req, res);
    } catch (const engine::QueueFullError& e) {
      send(429, e.what());
      res.set_header("Retry-After", "1");
    } catch (const Error& e) {
      int status = http_status_for(e);
      if (e.kind() == ErrorKind::limit) status = 400;
      if (status >= 500) log::warn("anthropic: {} {} -> {}: {}", req.method, req.path, status, e.what());
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

void register_anthropic_routes(HttpServer& server, OpenAIService& service) {
  server.set_error_format("/v1/messages", anthropic_error_body);
  server.route(Method::post, "/v1/messages", counted(service, "/v1/messages", handle_messages));
  server.route(Method::post, "/v1/messages/count_tokens", counted(service, "/v1/messages/count_tokens", handle_count_tokens));
}

}  // namespace etna::server
