#include "etna/server/api_util.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/engine/json_schema.h"
#include "etna/server/http_server.h"
#include "etna/server/openai_api.h"

namespace etna::server::api {

namespace {
std::string name_of(const char* name, const std::string& where) { return where.empty() ? name : where; }
}  // namespace

const json* field(const json& body, const char* name) {
  if (!body.is_object()) return nullptr;
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_field(const json& body, const char* name, double def, double lo, double hi, const std::string& where) {
  const json* f = field(body, name);
  if (!f) return def;
  const std::string n = name_of(name, where);
  if (!f->is_number()) fail(ErrorKind::invalid_argument, "'{}' must be a number (got {})", n, f->type_name());
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi)) fail(ErrorKind::invalid_argument, "'{}' must be between {} and {} (got {})", n, lo, hi, v);
  return v;
}

int64_t int_field(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi, const std::string& where) {
  const json* f = field(body, name);
  if (!f) return def;
  const std::string n = name_of(name, where);
  if (!f->is_number() || std::floor(f->get<double>()) != f->get<double>())
    fail(ErrorKind::invalid_argument, "'{}' must be an integer", n);
  const double v = f->get<double>();
  if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)))
    fail(ErrorKind::invalid_argument, "'{}' must be between {} and {} (got {})", n, lo, hi, v);
  return static_cast<int64_t>(v);
}

bool bool_field(const json& body, const char* name, bool def, const std::string& where) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_boolean()) fail(ErrorKind::invalid_argument, "'{}' must be true or false", name_of(name, where));
  return f->get<bool>();
}

std::string string_field(const json& body, const char* name, const std::string& def, const std::string& where) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_string()) fail(ErrorKind::invalid_argument, "'{}' must be a string (got {})", name_of(name, where), f->type_name());
  return f->get<std::string>();
}

std::vector<std::string> stop_strings(const json& value, const std::string& where) {
  std::vector<std::string> out;
  if (value.is_null()) return out;
  if (value.is_string()) {
    out.push_back(value.get<std::string>());
  } else if (value.is_array()) {
    for (const auto& x : value) {
      if (!x.is_string()) fail(ErrorKind::invalid_argument, "'{}' must be a string or an array of strings", where);
      out.push_back(x.get<std::string>());
    }
  } else {
    fail(ErrorKind::invalid_argument, "'{}' must be a string or an array of strings", where);
  }
  if (out.size() > 16) fail(ErrorKind::invalid_argument, "'{}': at most 16 stop sequences are allowed", where);
  for (const auto& s : out)
    if (s.empty()) fail(ErrorKind::invalid_argument, "'{}': stop sequences must not be empty", where);
  return out;
}

json object_body(const httplib::Request& req) {
  json body = parse_json_body(req);
  if (!body.is_object()) fail(ErrorKind::invalid_argument, "the request body must be a JSON object");
  return body;
}

ojson ordered_body(const httplib::Request& req) {
  try {
    return ojson::parse(req.body);
  } catch (const ojson::exception&) {
    fail(ErrorKind::invalid_argument, "the request body is not valid JSON");
  }
}

std::string sse_event(const std::string& name, const json& data) { return fmt::format("event: {}\ndata: {}\n\n", name, dump(data)); }

std::shared_ptr<const engine::Grammar> schema_grammar(const ojson& schema, bool strict, const std::string& where) {
  if (!schema.is_object() && !schema.is_boolean()) fail(ErrorKind::invalid_argument, "'{}' must be a JSON Schema object", where);
  engine::JsonSchemaOptions o;
  o.strict = strict;
  try {
    return engine::Grammar::cached(engine::json_schema_to_gbnf(schema, o));
  } catch (const Error& e) {
    fail(ErrorKind::invalid_argument, "{}: {}", where, e.what());
  }
}

engine::ToolFormat prepare_tool_chat(OpenAIService& service, const ojson& messages, const ToolUse& use,
                                     engine::GenerationRequest& request, const std::string& where) {
  if (use.tools.size() > 128) fail(ErrorKind::invalid_argument, "'{}': at most 128 tools are allowed", where);
  try {
    engine::validate_tools(use.tools);
  } catch (const Error& e) {
    fail(ErrorKind::invalid_argument, "'{}': {}", where, e.what());
  }
  const engine::ToolFormat format = service.tool_format();
  if (use.active() && (use.choice == "required" || use.choice == "function")) {
    try {
      request.grammar = engine::Grammar::cached(engine::forced_tool_call_gbnf(format, use.tools, use.name, use.parallel));
    } catch (const Error& e) {
      fail(ErrorKind::invalid_argument, "'{}': {}", where, e.what());
    }
  }
  request.prompt = service.tool_chat_prompt(messages, use.active() ? use.tools : ojson::array());
  return format;
}

json call_arguments(const engine::ToolCall& call) {
  try {
    return json::parse(call.arguments);
  } catch (const json::exception&) {
    return json::object();  // parse_tool_calls only returns calls whose arguments parsed
  }
}

std::vector<ToolCallDeltas::Event> ToolCallDeltas::update(engine::ToolCallFilter& filter) {
  std::vector<Event> out;
  if (!filter.in_call()) return out;
  const auto& progress = filter.progress();
  for (size_t i = 0; i < progress.size(); ++i) {
    if (i == sent_.size()) {
      out.push_back({i, true, progress[i].id, progress[i].name, ""});
      sent_.emplace_back();
    }
    if (progress[i].arguments.size() > sent_[i].size()) {
      out.push_back({i, false, "", "", progress[i].arguments.substr(sent_[i].size())});
      sent_[i] = progress[i].arguments;
    }
  }
  return out;
}

std::vector<ToolCallDeltas::Event> ToolCallDeltas::finish(const std::vector<engine::ToolCall>& calls) {
  std::vector<Event> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i == sent_.size()) {
      out.push_back({i, true, calls[i].id, calls[i].name, ""});
      sent_.emplace_back();
    }
    // The final arguments extend what was sent unless the call was malformed after all (then the
    // complete arguments are in the API's final objects, not in these deltas).
    const std::string& a = calls[i].arguments;
    if (a.size() > sent_[i].size() && a.compare(0, sent_[i].size(), sent_[i]) == 0) {
      out.push_back({i, false, "", "", a.substr(sent_[i].size())});
      sent_[i] = a;
    }
  }
  return out;
}

std::string random_id(const std::string& prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ns % 1000000000);
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string matched_stop(const tokenizer::Tokenizer& tok, const engine::GenerationEvent& result,
                         const std::vector<std::string>& stops) {
  if (result.finish != engine::FinishReason::stop || stops.empty()) return "";
  if (!result.tokens.empty() && tok.vocab().is_end_of_generation(result.tokens.back())) return "";
  const std::string full = tok.decode(result.tokens, /*remove_leading_space=*/false);
  std::string best;
  size_t best_pos = std::string::npos;
  for (const auto& s : stops) {
    const size_t p = full.find(s);
    if (p != std::string::npos && (best_pos == std::string::npos || p < best_pos)) best_pos = p, best = s;
  }
  return best;
}

void stream_generation(const httplib::Request& http_req, httplib::Response& res, OpenAIService& service,
                       engine::GenerationRequest request, const std::string& content_type, StreamWriter writer) {
  auto req = std::make_shared<engine::GenerationRequest>(std::move(request));
  auto w = std::make_shared<StreamWriter>(std::move(writer));
  start_stream(http_req, res, content_type, [&service, req, w](size_t, httplib::DataSink& sink) {
    auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
    if (w->start && !write(w->start())) return false;
    int idle = 0;
    try {
      const engine::GenerationEvent r = service.generate(std::move(*req), [&](const std::string& piece) {
        if (piece.empty()) return ++idle % 4 != 0 || write(w->keep_alive);
        return write(w->piece(piece));
      });
      if (r.finish == engine::FinishReason::cancelled) return false;  // the client left
      write(w->done(r));
    } catch (const std::exception& e) {
      write(w->error(e.what()));
    }
    sink.done();
    return true;
  });
}

}  // namespace etna::server::api
