#include "etna/engine/tool_calls.h"

#include <random>
#include <span>

#include "etna/base/error.h"

namespace etna::engine {

using ojson = nlohmann::ordered_json;

namespace {

constexpr std::string_view kTagOpen = "<tool_call>";
constexpr std::string_view kTagClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralMarker = "[TOOL_CALLS]";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Index just past the JSON object/array starting at s[start], or npos when it is not closed.
size_t json_end(std::string_view s, size_t start) {
  int depth = 0;
  bool in_string = false, escape = false;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// {"name": ..., "arguments"/"parameters": {...} or a JSON string} -> a call.
bool call_from_json(const ojson& j, ToolFormat f, ToolCall& out) {
  if (!j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) return false;
  const ojson* args = nullptr;
  for (const char* key : {"arguments", "parameters"})
    if (auto a = j.find(key); a != j.end()) args = &*a;
  ojson parsed = ojson::object();
  if (args) {
    if (args->is_string()) {
      try {
        parsed = ojson::parse(args->get<std::string>());
      } catch (const ojson::exception&) {
        return false;
      }
    } else {
      parsed = *args;
    }
  }
  if (!parsed.is_object()) return false;
  out.name = name->get<std::string>();
  out.arguments = parsed.dump(-1, ' ', false, ojson::error_handler_t::replace);
  out.id = make_tool_call_id(f);
  return true;
}

bool parse_json(std::string_view text, ojson& out) {
  try {
    out = ojson::parse(text);
    return true;
  } catch (const ojson::exception&) {
    return false;
  }
}

std::string random_alnum(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kChars[rng() % (sizeof(kChars) - 1)];
  return s;
}

// The arguments as the model wrote them (whitespace outside strings removed) rather than
// re-serialised, so a streamed call's argument deltas add up to exactly the final arguments.
void use_written_arguments(std::string_view text, int depth, std::span<ToolCall> calls) {
  const std::vector<ScannedCall> scanned = scan_tool_calls(text, depth);
  if (scanned.size() != calls.size()) return;
  for (size_t i = 0; i < calls.size(); ++i)
    if (scanned[i].complete) calls[i].arguments = scanned[i].arguments;
}

}  // namespace

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::hermes: return "hermes";
    case ToolFormat::llama3: return "llama3";
    case ToolFormat::mistral: return "mistral";
    case ToolFormat::generic: return "generic";
  }
  return "generic";
}

ToolFormat detect_tool_format(std::string_view src, bool own_template) {
  if (!own_template || src.find("tools") == std::string_view::npos) return ToolFormat::generic;
  if (src.find("<tool_call>") != std::string_view::npos) return ToolFormat::hermes;
  if (src.find("[TOOL_CALLS]") != std::string_view::npos) return ToolFormat::mistral;
  if (src.find("<|python_tag|>") != std::string_view::npos || src.find("ipython") != std::string_view::npos)
    return ToolFormat::llama3;
  return ToolFormat::generic;
}

std::string make_tool_call_id(ToolFormat f) {
  return f == ToolFormat::mistral ? random_alnum(9) : "call_" + random_alnum(24);
}

ParsedReply parse_tool_calls(ToolFormat f, std::string_view reply) {
  ParsedReply out;
  if (f == ToolFormat::hermes || f == ToolFormat::generic) {
    size_t pos = 0;
    for (;;) {
      const size_t open = reply.find(kTagOpen, pos);
      if (open == std::string_view::npos) break;
      out.content += reply.substr(pos, open - pos);
      const size_t body = open + kTagOpen.size();
      const size_t close = reply.find(kTagClose, body);
      const size_t body_end = close == std::string_view::npos ? reply.size() : close;
      const size_t next = close == std::string_view::npos ? reply.size() : close + kTagClose.size();
      ojson j;
      ToolCall call;
      if (parse_json(trim(reply.substr(body, body_end - body)), j) && call_from_json(j, f, call)) {
        use_written_arguments(reply.substr(body, body_end - body), 0, std::span(&call, 1));
        out.calls.push_back(std::move(call));
      }
      else
        out.content += reply.substr(open, next - open);
      pos = next;
    }
    out.content += reply.substr(pos);
  } else {
    std::string_view s = trim(reply);
    if (f == ToolFormat::llama3 && starts_with(s, kPythonTag)) s = trim(s.substr(kPythonTag.size()));
    if (f == ToolFormat::mistral && starts_with(s, kMistralMarker)) s = trim(s.substr(kMistralMarker.size()));
    std::vector<ToolCall> calls;
    size_t pos = 0;
    bool ok = !s.empty() && (s[0] == '{' || s[0] == '[');
    while (ok && pos < s.size()) {
      while (pos < s.size() && (is_space(s[pos]) || s[pos] == ';' || s[pos] == ',')) ++pos;
      if (pos >= s.size()) break;
      if (s[pos] != '{' && s[pos] != '[') break;  // text after the calls
      const size_t end = json_end(s, pos);
      ojson j;
      if (end == std::string_view::npos || !parse_json(s.substr(pos, end - pos), j)) {
        ok = false;
        break;
      }
      const size_t first = calls.size();
      for (const ojson& item : j.is_array() ? j : ojson::array({j})) {
        ToolCall call;
        if (!call_from_json(item, f, call)) {
          ok = false;
          break;
        }
        calls.push_back(std::move(call));
      }
      if (ok) use_written_arguments(s.substr(pos, end - pos), j.is_array() ? 1 : 0, std::span(calls).subspan(first));
      pos = end;
    }
    if (ok && !calls.empty()) {
      out.calls = std::move(calls);
      out.content = std::string(trim(s.substr(std::min(pos, s.size()))));
      return out;
    }
    out.content = std::string(reply);
    return out;
  }
  if (!out.calls.empty()) out.content = std::string(trim(out.content));
  return out;
}

std::vector<ScannedCall> scan_tool_calls(std::string_view text, int call_depth) {
  std::vector<ScannedCall> calls;
  int depth = 0;
  bool in_string = false, escape = false;
  // Within a call's top level: the member being read.
  enum class Expect { key, colon, value, comma } expect = Expect::key;
  bool in_call = false, in_args = false, token_is_key = false;
  int args_depth = 0;  // depth outside the arguments object
  std::string token, key;
  for (const char c : text) {
    if (in_args) {
      if (in_string || !is_space(c)) calls.back().arguments += c;
    }
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
        if (in_call && !in_args && depth == call_depth + 1) {
          if (token_is_key) {
            key = token;
            expect = Expect::colon;
          } else {
            if (key == "name") calls.back().name = token;
            expect = Expect::comma;
          }
        }
        continue;
      }
      if (in_call && !in_args && depth == call_depth + 1) token += c;
      continue;
    }
    if (c == '"') {
      in_string = true;
      token.clear();
      token_is_key = in_call && !in_args && depth == call_depth + 1 && expect == Expect::key;
      continue;
    }
    if (c == '{' || c == '[') {
      if (!in_call && c == '{' && depth == call_depth) {
        calls.emplace_back();
        in_call = true;
        expect = Expect::key;
      } else if (in_call && !in_args && depth == call_depth + 1 && expect == Expect::value) {
        if (c == '{' && (key == "arguments" || key == "parameters") && calls.back().arguments.empty()) {
          in_args = true;
          args_depth = depth;
          calls.back().arguments = "{";
        }
        expect = Expect::comma;
      }
      ++depth;
      continue;
    }
    if (c == '}' || c == ']') {
      --depth;
      if (in_args && depth == args_depth) {
        in_args = false;
        calls.back().complete = true;
      }
      if (in_call && depth == call_depth) in_call = false;
      if (depth < 0) depth = 0;
      continue;
    }
    if (in_call && !in_args && depth == call_depth + 1) {
      if (c == ':' && expect == Expect::colon) expect = Expect::value;
      else if (c == ',') expect = Expect::key;
      else if (!is_space(c) && expect == Expect::value) expect = Expect::comma;  // a number, true, ...
    }
  }
  return calls;
}

std::string ToolCallFilter::push(std::string_view piece) {
  held_ += piece;
  if (in_call_) return {};
  if (format_ == ToolFormat::hermes || format_ == ToolFormat::generic) {
    const size_t open = held_.find(kTagOpen);
    if (open != std::string::npos) {
      std::string out = held_.substr(0, open);
      held_.erase(0, open);
      in_call_ = true;
      return out;
    }
    // Keep the longest tail that could begin the marker.
    size_t keep = 0;
    for (size_t k = std::min(held_.size(), kTagOpen.size() - 1); k > 0; --k)
      if (std::string_view(held_).substr(held_.size() - k) == kTagOpen.substr(0, k)) {
        keep = k;
        break;
      }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
  }
  // llama3 / mistral: a call is the whole reply, recognised by how it starts.
  if (seen_text_) {
    std::string out;
    out.swap(held_);
    return out;
  }
  const std::string_view t = trim(held_);
  if (t.empty()) return {};
  const std::string_view marker = format_ == ToolFormat::llama3 ? kPythonTag : kMistralMarker;
  if (t[0] == '{' || t[0] == '[' || starts_with(t, marker)) {
    in_call_ = true;
    return {};
  }
  if (t.size() < marker.size() && starts_with(marker, t)) return {};
  seen_text_ = true;
  std::string out;
  out.swap(held_);
  return out;
}

const std::vector<ToolCallFilter::Progress>& ToolCallFilter::progress() {
  if (!in_call_) return progress_;
  const std::vector<ScannedCall> scanned = scan_tool_calls(held_, format_ == ToolFormat::mistral ? 1 : 0);
  for (size_t i = 0; i < scanned.size(); ++i) {
    if (scanned[i].name.empty()) break;  // later calls wait for this one's name
    if (i == progress_.size()) progress_.push_back({make_tool_call_id(format_), scanned[i].name, ""});
    // Arguments shown only once they are known to be an object (never retracted).
    if (scanned[i].arguments.size() > progress_[i].arguments.size()) progress_[i].arguments = scanned[i].arguments;
  }
  return progress_;
}

ParsedReply ToolCallFilter::finish() {
  if (!in_call_) {
    ParsedReply r;
    r.content.swap(held_);
    return r;
  }
  progress();
  ParsedReply r = parse_tool_calls(format_, held_);
  for (size_t i = 0; i < r.calls.size() && i < progress_.size(); ++i) r.calls[i].id = progress_[i].id;
  held_.clear();
  return r;
}

void validate_tools(const ojson& tools) {
  if (!tools.is_array()) fail(ErrorKind::invalid_argument, "'tools' must be an array");
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    if (!t.is_object()) fail(ErrorKind::invalid_argument, "tools[{}] must be an object", i);
    auto type = t.find("type");
    if (type == t.end() || *type != "function")
      fail(ErrorKind::invalid_argument, "tools[{}].type must be 'function' (the only tool type supported)", i);
    auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object()) fail(ErrorKind::invalid_argument, "tools[{}].function must be an object", i);
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string() || name->get<std::string>().empty())
      fail(ErrorKind::invalid_argument, "tools[{}].function.name must be a non-empty string", i);
    for (char c : name->get<std::string>())
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
        fail(ErrorKind::invalid_argument, "tools[{}].function.name may contain only letters, digits, '_', '-' and '.'", i);
    if (auto p = fn->find("parameters"); p != fn->end() && !p->is_object())
      fail(ErrorKind::invalid_argument, "tools[{}].function.parameters must be a JSON Schema object", i);
  }
}

std::string forced_tool_call_gbnf(ToolFormat f, const ojson& tools, const std::string& only, bool parallel,
                                  const JsonSchemaOptions& options) {
  validate_tools(tools);
  const char* args_key = f == ToolFormat::llama3 ? "parameters" : "arguments";
  ojson alternatives = ojson::array();
  ojson defs = ojson::object(), definitions = ojson::object();
  for (const ojson& t : tools) {
    const ojson& fn = t["function"];
    const std::string name = fn["name"].get<std::string>();
    if (!only.empty() && name != only) continue;
    ojson params = fn.contains("parameters") ? fn["parameters"] : ojson{{"type", "object"}};
    // References inside the parameters resolve against the combined schema's root.
    for (const char* key : {"$defs", "definitions"})
      if (params.is_object() && params.contains(key) && params[key].is_object()) {
        for (auto& [k, v] : params[key].items()) (std::string(key) == "$defs" ? defs : definitions)[k] = v;
        params.erase(key);
      }
    ojson call = {{"type", "object"},
                  {"properties", {{"name", {{"const", name}}}, {args_key, params}}},
                  {"required", {"name", args_key}},
                  {"additionalProperties", false}};
    alternatives.push_back(std::move(call));
  }
  if (alternatives.empty()) {
    if (!only.empty()) fail(ErrorKind::invalid_argument, "tool_choice names the function '{}', which is not among the tools", only);
    fail(ErrorKind::invalid_argument, "tool_choice 'required' needs at least one tool");
  }
  ojson schema = alternatives.size() == 1 ? alternatives[0] : ojson{{"anyOf", alternatives}};
  if (!defs.empty()) schema["$defs"] = defs;
  if (!definitions.empty()) schema["definitions"] = definitions;
  JsonSchemaOptions o = options;
  o.root_name = "call";
  std::string rules = json_schema_to_gbnf(schema, o);
  std::string root;
  switch (f) {
    case ToolFormat::hermes:
    case ToolFormat::generic:
      root = R"(root ::= "<tool_call>\n" call "\n</tool_call>")";
      if (parallel) root += R"( ( "\n<tool_call>\n" call "\n</tool_call>" )*)";
      break;
    case ToolFormat::llama3:
      root = "root ::= call";
      if (parallel) root += R"( ( "; " call )*)";
      break;
    case ToolFormat::mistral:
      root = R"(root ::= "[" call)";
      if (parallel) root += R"( ( ", " call )*)";
      root += R"( "]")";
      break;
  }
  return root + "\n" + rules;
}

ojson tool_template_context(ToolFormat f, const ojson& messages, const ojson& tools) {
  ojson ctx = ojson::object();
  ojson out = ojson::array();
  const bool native = f != ToolFormat::generic;
  for (const ojson& m : messages) {
    ojson msg = m;
    if (msg.contains("tool_calls") && msg["tool_calls"].is_array()) {
      ojson calls = ojson::array();
      std::string tags;
      for (const ojson& c : msg["tool_calls"]) {
        const ojson fn = c.value("function", ojson::object());
        ojson args = ojson::object();
        if (fn.contains("arguments")) {
          if (fn["arguments"].is_string()) {
            if (!parse_json(fn["arguments"].get<std::string>(), args) || !args.is_object())
              fail(ErrorKind::invalid_argument, "an assistant tool call's arguments are not a JSON object");
          } else {
            args = fn["arguments"];
          }
        }
        const std::string name = fn.value("name", "");
        calls.push_back({{"id", c.value("id", "")}, {"type", "function"}, {"function", {{"name", name}, {"arguments", args}}}});
        tags += std::string(tags.empty() ? "" : "\n") + "<tool_call>\n" +
                ojson{{"name", name}, {"arguments", args}}.dump() + "\n</tool_call>";
      }
      if (native) {
        msg["tool_calls"] = calls;
      } else {
        msg.erase("tool_calls");
        std::string content = msg.contains("content") && msg["content"].is_string() ? msg["content"].get<std::string>() : "";
        msg["content"] = content.empty() ? tags : content + "\n" + tags;
      }
    }
    if (!msg.contains("content") || msg["content"].is_null()) msg["content"] = "";
    if (!native && msg.value("role", "") == "tool") {
      msg = {{"role", "user"}, {"content", "<tool_response>\n" + msg["content"].get<std::string>() + "\n</tool_response>"}};
    }
    out.push_back(std::move(msg));
  }
  if (!tools.empty()) {
    if (native) {
      ctx["tools"] = tools;
    } else {
      std::string text =
          "# Tools\n\nYou may call one or more functions to assist with the user query. The functions, with JSON "
          "Schemas of their parameters:\n<tools>\n";
      for (const ojson& t : tools) text += t["function"].dump() + "\n";
      text +=
          "</tools>\n\nFor each function call, reply with <tool_call>{\"name\": <function-name>, \"arguments\": "
          "<arguments-json-object>}</tool_call>.";
      if (!out.empty() && out[0].value("role", "") == "system")
        out[0]["content"] = out[0]["content"].get<std::string>() + "\n\n" + text;
      else
        out.insert(out.begin(), ojson{{"role", "system"}, {"content", text}});
    }
  }
  ctx["messages"] = std::move(out);
  ctx["add_generation_prompt"] = true;
  return ctx;
}

}  // namespace etna::engine
