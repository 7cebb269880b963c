#include "etna/server/responses_api.h"

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

const char* const kNoTools = "function tools are not supported by this build yet";

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
  int64_t max_output_tokens = -1;
  double temperature = 1.0, top_p = 1.0;
};

Parsed parse(OpenAIService& s, const json& body) {
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
  if (const json* t = field(body, "tools"); t && !(t->is_array() && t->empty())) bad("tools", kNoTools);
  if (const json* tc = field(body, "tool_choice"); tc && !(tc->is_string() && (tc->get<std::string>() == "auto" || tc->get<std::string>() == "none")))
    bad("tool_choice", kNoTools);
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
      else if (type == "json_schema")
        bad("text.format.type", "text.format 'json_schema' is not supported by this build yet (use 'json_object' or 'text')");
      else if (type != "text")
        bad("text.format.type", fmt::format("text.format type '{}' is not supported (text, json_object)", type));
      p.format = *f;
    }
  }
  p.stream = bool_field(body, "stream", false);

  std::vector<tokenizer::ChatMessage> messages;
  if (!p.instructions.empty()) messages.push_back({"system", p.instructions});
  const json* input = field(body, "input");
  if (!input) bad("input", "'input' is required");
  if (input->is_string()) {
    messages.push_back({"user", input->get<std::string>()});
  } else if (input->is_array()) {
    for (size_t i = 0; i < input->size(); ++i) {
      const json& item = (*input)[i];
      const std::string where = fmt::format("input[{}]", i);
      if (!item.is_object()) bad(where, fmt::format("'{}' must be an object", where));
      const std::string type = string_field(item, "type", "message", where + ".type");
      if (type == "function_call" || type == "function_call_output") bad(where, kNoTools);
      if (type == "item_reference") bad(where, "item references are not supported: this server stores no items");
      if (type != "message") bad(where + ".type", fmt::format("input items of type '{}' are not supported (message)", type));
      std::string role = string_field(item, "role", "", where + ".role");
      if (role == "developer") role = "system";
      if (role != "system" && role != "user" && role != "assistant")
        bad(where + ".role", fmt::format("role '{}' is not supported (user, assistant, system, developer)", role));
      const json* content = field(item, "content");
      if (!content) bad(where + ".content", fmt::format("'{}.content' is required", where));
      messages.push_back({role, item_text(*content, where + ".content")});
    }
    if (input->empty()) bad("input", "'input' must not be empty");
  } else {
    bad("input", "'input' must be a string or an array of input items");
  }
  p.gr.prompt = s.chat_prompt(messages);
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
            {"parallel_tool_calls", true},
            {"previous_response_id", nullptr},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"store", false},
            {"temperature", p.temperature},
            {"text", {{"format", p.format}}},
            {"tool_choice", "auto"},
            {"tools", json::array()},
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

void handle_create(OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  auto p = std::make_shared<Parsed>(parse(s, body));
  const std::string id = random_id("resp_"), msg_id = random_id("msg_");
  const int64_t created = unix_seconds();
  engine::GenerationRequest gr = std::move(p->gr);
  if (!p->stream) {
    const engine::GenerationEvent r = s.generate(std::move(gr), {});
    const std::string status = r.finish == engine::FinishReason::length ? "incomplete" : "completed";
    send_json(res, response_json(*p, id, created, "completed", json::array({message_item(msg_id, status, json::array({text_part(r.text)}))}), &r));
    return;
  }
  struct State {
    int seq = 0;
    std::string text;
  };
  auto st = std::make_shared<State>();
  auto event = [st](const char* type, json data) {
    data["type"] = type;
    data["sequence_number"] = st->seq++;
    return fmt::format("event: {}\ndata: {}\n\n", type, dump(data));
  };
  StreamWriter w;
  w.start = [=] {
    const json r = response_json(*p, id, created, "in_progress", json::array(), nullptr);
    std::string out = event("response.created", {{"response", r}});  // one by one: sequence numbers in order
    out += event("response.in_progress", {{"response", r}});
    out += event("response.output_item.added", {{"output_index", 0}, {"item", message_item(msg_id, "in_progress", json::array())}});
    out += event("response.content_part.added", {{"item_id", msg_id}, {"output_index", 0}, {"content_index", 0}, {"part", text_part("")}});
    return out;
  };
  w.piece = [=](const std::string& piece) {
    st->text += piece;
    return event("response.output_text.delta", {{"item_id", msg_id},
                                                {"output_index", 0},
                                                {"content_index", 0},
                                                {"delta", piece},
                                                {"logprobs", json::array()}});
  };
  w.done = [=](const engine::GenerationEvent& r) {
    const std::string item_status = r.finish == engine::FinishReason::length ? "incomplete" : "completed";
    const json item = message_item(msg_id, item_status, json::array({text_part(st->text)}));
    const json resp = response_json(*p, id, created, "completed", json::array({item}), &r);
    std::string out = event("response.output_text.done", {{"item_id", msg_id},
                                                          {"output_index", 0},
                                                          {"content_index", 0},
                                                          {"text", st->text},
                                                          {"logprobs", json::array()}});
    out += event("response.content_part.done", {{"item_id", msg_id}, {"output_index", 0}, {"content_index", 0}, {"part", text_part(st->text)}});
    out += event("response.output_item.done", {{"output_index", 0}, {"item", item}});
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
