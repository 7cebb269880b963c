#include "etna/server/anthropic_api.h"

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

const char* const kNoTools = "tool use ('tools', tool_use and tool_result blocks) is not supported by this build yet";

// The text of a content value: a string or an array of blocks, of which only text is understood.
std::string content_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(fmt::format("{}: must be a string or an array of content blocks", where));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& b = content[i];
    const std::string w = fmt::format("{}.{}", where, i);
    if (!b.is_object()) bad(fmt::format("{}: each content block must be an object", w));
    const std::string type = string_field(b, "type", "", w + ".type");
    if (type == "tool_use" || type == "tool_result") bad(fmt::format("{}: {}", w, kNoTools));
    if (type == "image" || type == "document")
      bad(fmt::format("{}: content blocks of type '{}' are not supported: Etna's models read text only", w, type));
    if (type != "text") bad(fmt::format("{}.type: content block type '{}' is not supported (only 'text')", w, type));
    const json* t = field(b, "text");
    if (!t || !t->is_string()) bad(fmt::format("{}.text: Field required (a string)", w));
    text += t->get<std::string>();
  }
  return text;
}

struct Parsed {
  std::string model;
  engine::GenerationRequest gr;
  bool stream = false;
};

std::vector<tokenizer::ChatMessage> parse_messages(const json& body) {
  std::vector<tokenizer::ChatMessage> out;
  if (const json* sys = field(body, "system")) {
    const std::string text = content_text(*sys, "system");
    if (!text.empty()) out.push_back({"system", text});
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
    out.push_back({role, content_text(*content, where + ".content")});
  }
  return out;
}

Parsed parse(OpenAIService& s, const json& body) {
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
  if (const json* t = field(body, "tools"); t && !(t->is_array() && t->empty())) bad(std::string("tools: ") + kNoTools);
  if (field(body, "tool_choice")) bad(std::string("tool_choice: ") + kNoTools);
  if (const json* th = field(body, "thinking"); th && string_field(*th, "type", "", "thinking.type") != "disabled")
    bad("thinking: extended thinking is not supported by the served model");
  if (const json* md = field(body, "metadata"); md && !md->is_object()) bad("metadata: Input should be an object");
  p.gr.prompt = s.chat_prompt(parse_messages(body));
  if (p.gr.prompt.size() > static_cast<size_t>(s.n_ctx()))
    bad(fmt::format("prompt is too long: {} tokens > {} maximum", p.gr.prompt.size(), s.n_ctx()));
  return p;
}

std::string sse(const char* event, const json& data) { return fmt::format("event: {}\ndata: {}\n\n", event, dump(data)); }

const char* stop_reason(const engine::GenerationEvent& r, const std::string& stop) {
  if (!stop.empty()) return "stop_sequence";
  return r.finish == engine::FinishReason::length ? "max_tokens" : "end_turn";
}

void handle_messages(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  Parsed p = parse(s, body);
  const std::string id = random_id("msg_");
  const std::vector<std::string> stops = p.gr.params.stop;
  const tokenizer::Tokenizer& tok = *s.chat_tokenizer();
  if (!p.stream) {
    const engine::GenerationEvent r = s.generate(std::move(p.gr), {});
    const std::string stop = matched_stop(tok, r, stops);
    send_json(res, {{"id", id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", p.model},
                    {"content", json::array({{{"type", "text"}, {"text", r.text}}})},
                    {"stop_reason", stop_reason(r, stop)},
                    {"stop_sequence", stop.empty() ? json(nullptr) : json(stop)},
                    {"usage", {{"input_tokens", r.prompt_tokens}, {"output_tokens", r.completion_tokens}}}});
    return;
  }
  const size_t input_tokens = p.gr.prompt.size();
  StreamWriter w;
  w.start = [id, model = p.model, input_tokens] {
    json message = {{"id", id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", model},
                    {"content", json::array()},
                    {"stop_reason", nullptr},
                    {"stop_sequence", nullptr},
                    {"usage", {{"input_tokens", input_tokens}, {"output_tokens", 0}}}};
    return sse("message_start", {{"type", "message_start"}, {"message", message}}) +
           sse("content_block_start",
               {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}}) +
           sse("ping", {{"type", "ping"}});
  };
  w.piece = [](const std::string& piece) {
    return sse("content_block_delta",
               {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", piece}}}});
  };
  w.done = [&tok, stops](const engine::GenerationEvent& r) {
    const std::string stop = matched_stop(tok, r, stops);
    return sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}) +
           sse("message_delta", {{"type", "message_delta"},
                                 {"delta", {{"stop_reason", stop_reason(r, stop)}, {"stop_sequence", stop.empty() ? json(nullptr) : json(stop)}}},
                                 {"usage", {{"output_tokens", r.completion_tokens}}}}) +
           sse("message_stop", {{"type", "message_stop"}});
  };
  w.error = [](const std::string& message) { return sse("error", anthropic_error_body(500, message)); };
  w.keep_alive = sse("ping", {{"type", "ping"}});
  stream_generation(req, res, s, std::move(p.gr), "text/event-stream", std::move(w));
}

void handle_count_tokens(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  json body = object_body(req);
  body["max_tokens"] = 1;  // not part of this request
  body.erase("stream");
  const Parsed p = parse(s, body);
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
