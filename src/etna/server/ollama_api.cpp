#include "etna/server/ollama_api.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <sys/stat.h>

#include <fmt/format.h>

#include "etna/base/log.h"
#include "etna/gguf/ggml_type.h"
#include "etna/gguf/gguf_file.h"
#include "etna/server/api_util.h"
#include "etna/server/openai_api.h"

namespace etna::server {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace api;

namespace {

// Ollama's error body.
json ollama_error_body(int, const std::string& message) { return {{"error", message}}; }

[[noreturn]] void bad(const std::string& message) { throw HttpError(400, ErrorKind::invalid_argument, message); }

int64_t ns_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// What /api/tags, /api/show and /api/ps say about one served model file, read once.
struct ModelCard {
  std::string id, path, modified_at, template_source;
  uint64_t size = 0;
  bool embedding = false;
  json details, model_info;
};

std::string human_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.1f}B", static_cast<double>(n) / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.1f}M", static_cast<double>(n) / 1e6);
  if (n >= 1000ull) return fmt::format("{:.1f}K", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

std::string file_time(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return "";
  const std::time_t secs = st.st_mtime;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

ModelCard make_card(const std::string& id, const std::string& path, const gguf::GgufFile& file, bool embedding) {
  ModelCard c;
  c.id = id;
  c.path = path;
  c.embedding = embedding;
  c.size = file.file_size();
  c.modified_at = file_time(path);
  c.template_source = file.get_string("tokenizer.chat_template").value_or("");
  const std::string arch = file.architecture();
  uint64_t params = 0;
  std::map<std::string, uint64_t> bytes_by_type;
  for (const auto& t : file.tensors()) {
    params += t.n_elements;
    if (t.dims.size() >= 2) bytes_by_type[gguf::ggml_type_name(t.type)] += t.n_bytes;
  }
  std::string quant;
  uint64_t best = 0;
  for (const auto& [name, b] : bytes_by_type)
    if (b > best) best = b, quant = name;
  for (auto& ch : quant) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  c.details = {{"parent_model", ""},          {"format", "gguf"},         {"family", arch},
               {"families", json::array({arch})}, {"parameter_size", human_count(params)}, {"quantization_level", quant}};
  // Scalar metadata as Ollama reports it (arrays such as the vocabulary are left out, as Ollama
  // does without verbose).
  c.model_info = json::object();
  for (const auto& [key, value] : file.metadata()) {
    if (value.type() == gguf::ValueType::ARRAY || key == "tokenizer.chat_template") continue;
    c.model_info[key] = value.to_json();
  }
  c.model_info["general.parameter_count"] = params;
  return c;
}

struct Ollama {
  OpenAIService* service = nullptr;
  std::string version;
  std::mutex mu;
  std::optional<ModelCard> chat_card, embed_card;

  // The cards of the loaded models (none while loading).
  std::vector<ModelCard> cards() {
    std::vector<ModelCard> out;
    if (!service || !service->ready()) return out;
    std::lock_guard lock(mu);
    if (!chat_card && service->chat_model())
      chat_card = make_card(service->model_id(), service->options().model_path, service->chat_model()->file(), false);
    if (!embed_card && !service->embedding_model_id().empty()) {
      auto file = gguf::GgufFile::open(service->options().embedding_model_path);
      embed_card = make_card(service->embedding_model_id(), service->options().embedding_model_path, *file, true);
    }
    if (chat_card) out.push_back(*chat_card);
    if (embed_card && embed_card->id != service->model_id()) out.push_back(*embed_card);
    return out;
  }

  void require_ready() const {
    if (!service) throw HttpError(404, ErrorKind::not_found, "this server has no models (start it with -m MODEL.gguf)");
    if (!service->ready()) throw HttpError(503, ErrorKind::unavailable, "the model is still loading; retry shortly");
  }
};

bool names(const std::string& requested, const std::string& id) {
  return !id.empty() && (requested == id || requested == id + ":latest");
}

std::string model_name(const json& body) {
  std::string name = string_field(body, "model", "");
  if (name.empty()) name = string_field(body, "name", "");
  if (name.empty()) bad("'model' is required");
  return name;
}

// The chat model named by the request; 404 in Ollama's words otherwise.
void require_chat_model(Ollama& o, const json& body) {
  o.require_ready();
  const std::string name = model_name(body);
  if (names(name, o.service->model_id()) && o.service->has_chat_model()) return;
  if (names(name, o.service->embedding_model_id()))
    bad(fmt::format("\"{}\" does not support generate (it is an embedding model)", name));
  throw HttpError(404, ErrorKind::not_found,
                  fmt::format("model '{}' not found (this server serves '{}'; Etna cannot pull models yet)", name,
                              o.service->model_id().empty() ? o.service->embedding_model_id() : o.service->model_id()));
}

// Ollama's `options` as sampling parameters (Ollama's defaults where absent).
engine::SamplingParams parse_options(const json& body, int n_ctx) {
  engine::SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.1f;
  p.repeat_last_n = 64;
  const json* o = field(body, "options");
  if (!o) return p;
  if (!o->is_object()) bad("'options' must be an object");
  static const char* ignored[] = {"num_keep", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
                                  "numa", "low_vram", "f16_kv", "vocab_only", "logits_all", "penalize_newline",
                                  "mirostat_eta", "mirostat_tau", "num_ctx"};
  static const char* known[] = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
                                "presence_penalty", "frequency_penalty", "seed", "num_predict", "stop",
                                "typical_p", "tfs_z", "mirostat"};
  for (const auto& [key, value] : o->items()) {
    bool ok = false;
    for (const char* k : ignored) ok = ok || key == k;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) bad(fmt::format("unknown option 'options.{}'", key));
  }
  p.temperature = static_cast<float>(number_field(*o, "temperature", p.temperature, 0.0, 100.0, "options.temperature"));
  p.top_k = static_cast<int>(int_field(*o, "top_k", p.top_k, 0, 1 << 20, "options.top_k"));
  p.top_p = static_cast<float>(number_field(*o, "top_p", p.top_p, 0.0, 1.0, "options.top_p"));
  if (p.top_p <= 0) p.top_p = 1.0f;  // Ollama treats 0 as disabled
  p.min_p = static_cast<float>(number_field(*o, "min_p", p.min_p, 0.0, 1.0, "options.min_p"));
  p.repeat_penalty = static_cast<float>(number_field(*o, "repeat_penalty", p.repeat_penalty, 0.0, 10.0, "options.repeat_penalty"));
  if (p.repeat_penalty <= 0) p.repeat_penalty = 1.0f;
  int64_t last_n = int_field(*o, "repeat_last_n", p.repeat_last_n, -1, 1 << 20, "options.repeat_last_n");
  p.repeat_last_n = static_cast<int>(last_n < 0 ? n_ctx : last_n);  // -1 = the whole context
  p.presence_penalty = static_cast<float>(number_field(*o, "presence_penalty", 0.0, -2.0, 2.0, "options.presence_penalty"));
  p.frequency_penalty = static_cast<float>(number_field(*o, "frequency_penalty", 0.0, -2.0, 2.0, "options.frequency_penalty"));
  if (const json* s = field(*o, "seed")) {
    if (!s->is_number_integer()) bad("'options.seed' must be an integer");
    const int64_t v = s->get<int64_t>();
    if (v >= 0) p.seed = static_cast<uint64_t>(v) == engine::kRandomSeed ? 0 : static_cast<uint64_t>(v);  // < 0: random
  }
  const int64_t n = int_field(*o, "num_predict", -1, -2, INT32_MAX, "options.num_predict");
  p.max_tokens = n < 0 ? -1 : static_cast<int>(n);  // -1 and -2 both run until the context is full
  if (const json* s = field(*o, "stop")) p.stop = stop_strings(*s, "options.stop");
  if (number_field(*o, "typical_p", 1.0, 0.0, 1.0, "options.typical_p") != 1.0)
    bad("'options.typical_p' (locally typical sampling) is not supported; leave it at 1");
  if (number_field(*o, "tfs_z", 1.0, 0.0, 1e9, "options.tfs_z") != 1.0)
    bad("'options.tfs_z' (tail-free sampling) is not supported; leave it at 1");
  if (int_field(*o, "mirostat", 0, 0, 2, "options.mirostat") != 0)
    bad("'options.mirostat' (Mirostat sampling) is not supported; leave it at 0");
  if (p.temperature > 2.0f) p.temperature = 2.0f;
  p.validate();
  return p;
}

// The fields both /api/chat and /api/generate share: format, images, keep_alive, think.
void parse_shared(const httplib::Request& req, const json& body, engine::GenerationRequest& gr) {
  if (const json* f = field(body, "format")) {
    if (f->is_string()) {
      const std::string s = f->get<std::string>();
      if (s == "json") gr.json_object = true;
      else if (!s.empty()) bad(fmt::format("format '{}' is not supported (use \"json\" or a JSON schema)", s));
    } else if (f->is_object()) {
      // As Ollama's structured outputs: properties the schema does not list are not generated.
      gr.grammar = schema_grammar(ordered_body(req)["format"], /*strict=*/true, "format");
    } else {
      bad("'format' must be \"json\" or a JSON schema object");
    }
  }
  if (const json* k = field(body, "keep_alive"); k && !k->is_string() && !k->is_number())
    bad("'keep_alive' must be a duration string (\"5m\") or a number of seconds");
  if (const json* t = field(body, "think"); t && !(t->is_boolean() && !t->get<bool>()))
    bad("'think' is not supported: the served model has no thinking mode");
}

void refuse_images(const json& obj, const std::string& where) {
  if (const json* im = field(obj, "images"); im && !(im->is_array() && im->empty()))
    bad(fmt::format("'{}' is not supported: Etna has no vision models yet; send text only", where));
}

json timing_json(const engine::GenerationEvent& r, int64_t total_ns, int64_t prompt_ns) {
  return {{"total_duration", total_ns},
          {"load_duration", 0},
          {"prompt_eval_count", r.prompt_tokens},
          {"prompt_eval_duration", prompt_ns},
          {"eval_count", r.completion_tokens},
          {"eval_duration", std::max<int64_t>(0, total_ns - prompt_ns)}};
}

const char* done_reason(engine::FinishReason f) { return f == engine::FinishReason::length ? "length" : "stop"; }

// Runs (or streams as NDJSON) one generation. `shape(piece_or_text, done, result)` builds the
// response object for a piece (done = false) or for the end (done = true, then `extra` is merged).
// With `tools`, /api/chat's replies are parsed for calls: message.tool_calls as Ollama sends them
// ({function: {index, name, arguments: object}}), streamed in one chunk before the last.
void respond(Ollama& o, const httplib::Request& req, httplib::Response& res, engine::GenerationRequest gr, bool stream,
             std::function<json(const std::string& text)> piece_json,
             std::function<json(const std::string& text, const engine::GenerationEvent& r)> final_json,
             std::optional<engine::ToolFormat> tools = std::nullopt) {
  auto calls_json = [](const std::vector<engine::ToolCall>& calls) {
    json out = json::array();
    for (size_t i = 0; i < calls.size(); ++i)
      out.push_back({{"function", {{"index", i}, {"name", calls[i].name}, {"arguments", call_arguments(calls[i])}}}});
    return out;
  };
  const int n_ctx = o.service->n_ctx();
  if (gr.prompt.size() > static_cast<size_t>(n_ctx))
    bad(fmt::format("the prompt has {} tokens; this model's context is {} tokens", gr.prompt.size(), n_ctx));
  const auto t0 = Clock::now();
  if (!stream) {
    int64_t first_ns = -1;
    const engine::GenerationEvent r = o.service->generate(std::move(gr), [&](const std::string& piece) {
      if (!piece.empty() && first_ns < 0) first_ns = ns_since(t0);
      return true;
    });
    engine::ParsedReply reply;
    if (tools) reply = engine::parse_tool_calls(*tools, r.text);
    else reply.content = r.text;
    json out = final_json(reply.content, r);
    if (!reply.calls.empty()) out["message"]["tool_calls"] = calls_json(reply.calls);
    const int64_t total = ns_since(t0);
    out.update(timing_json(r, total, first_ns < 0 ? total : first_ns));
    send_json(res, out);
    return;
  }
  auto first_ns = std::make_shared<int64_t>(-1);
  auto filter = std::make_shared<std::optional<engine::ToolCallFilter>>();
  if (tools) filter->emplace(*tools);
  StreamWriter w;
  w.piece = [=](const std::string& piece) {
    if (*first_ns < 0) *first_ns = ns_since(t0);
    const std::string text = *filter ? (*filter)->push(piece) : piece;
    return text.empty() ? std::string() : dump(piece_json(text)) + "\n";
  };
  w.done = [=](const engine::GenerationEvent& r) {
    std::string calls;
    if (*filter) {
      const engine::ParsedReply reply = (*filter)->finish();
      if (!reply.content.empty() || !reply.calls.empty()) {
        json chunk = piece_json(reply.content);
        if (!reply.calls.empty()) chunk["message"]["tool_calls"] = calls_json(reply.calls);
        calls = dump(chunk) + "\n";
      }
    }
    json out = final_json("", r);
    const int64_t total = ns_since(t0);
    out.update(timing_json(r, total, *first_ns < 0 ? total : *first_ns));
    return calls + dump(out) + "\n";
  };
  w.error = [](const std::string& message) { return dump(json{{"error", message}}) + "\n"; };
  stream_generation(req, res, *o.service, std::move(gr), "application/x-ndjson", std::move(w));
}

void handle_chat(Ollama& o, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  require_chat_model(o, body);
  const std::string model = model_name(body);
  engine::GenerationRequest gr;
  gr.params = parse_options(body, o.service->n_ctx());
  parse_shared(req, body, gr);
  ToolUse tools;
  if (const json* t = field(body, "tools")) {
    if (!t->is_array()) bad("'tools' must be an array");
    tools.tools = ordered_body(req)["tools"];
  }
  // Etna's extension (Ollama has none): tool_choice as OpenAI's, "auto" (default), "none",
  // "required" or {"type": "function", "function": {"name": ...}}.
  if (const json* c = field(body, "tool_choice")) {
    if (c->is_string() && (*c == "auto" || *c == "none" || *c == "required")) {
      tools.choice = c->get<std::string>();
    } else if (const json* fn = c->is_object() ? field(*c, "function") : nullptr; fn && fn->is_object()) {
      tools.choice = "function";
      tools.name = string_field(*fn, "name", "", "tool_choice.function.name");
    } else {
      bad("'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (tools.choice != "auto" && tools.choice != "none" && tools.tools.empty()) bad("'tool_choice' needs 'tools'");
  }
  const json* msgs = field(body, "messages");
  if (msgs && !msgs->is_array()) bad("'messages' must be an array");
  const bool stream = bool_field(body, "stream", true);
  if (!msgs || msgs->empty()) {  // Ollama's way of loading a model: the model is always loaded here
    send_json(res, {{"model", model},
                    {"created_at", rfc3339_now()},
                    {"message", {{"role", "assistant"}, {"content", ""}}},
                    {"done_reason", "load"},
                    {"done", true}});
    return;
  }
  // In OpenAI's shape for the chat template: assistant tool_calls get arguments as JSON text
  // (Ollama sends objects) and ids (Ollama has none); tool results follow in order.
  ojson messages = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(fmt::format("'{}' must be an object", where));
    const std::string role = string_field(m, "role", "", where + ".role");
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      bad(fmt::format("'{}.role' must be system, user, assistant or tool (got \"{}\")", where, role));
    refuse_images(m, where + ".images");
    ojson msg = {{"role", role}, {"content", string_field(m, "content", "", where + ".content")}};
    if (const json* tc = field(m, "tool_calls"); tc && !(tc->is_array() && tc->empty())) {
      if (role != "assistant" || !tc->is_array()) bad(fmt::format("'{}.tool_calls' must be an array in an assistant message", where));
      ojson calls = ojson::array();
      for (size_t k = 0; k < tc->size(); ++k) {
        const json* fn = field((*tc)[k], "function");
        const std::string w = fmt::format("{}.tool_calls[{}].function", where, k);
        if (!fn || !fn->is_object()) bad(fmt::format("'{}' must be an object", w));
        const std::string name = string_field(*fn, "name", "", w + ".name");
        if (name.empty()) bad(fmt::format("'{}.name' is required", w));
        const json* args = field(*fn, "arguments");
        if (args && !args->is_object()) bad(fmt::format("'{}.arguments' must be an object", w));
        calls.push_back({{"id", string_field((*tc)[k], "id", fmt::format("call_{}_{}", i, k), w)},
                         {"type", "function"},
                         {"function", {{"name", name}, {"arguments", dump(args ? *args : json::object())}}}});
      }
      msg["tool_calls"] = std::move(calls);
    }
    if (role == "tool") {
      const std::string name = string_field(m, "tool_name", "", where + ".tool_name");
      msg["tool_call_id"] = string_field(m, "tool_call_id", "", where + ".tool_call_id");
      if (!name.empty()) msg["name"] = name;
    }
    messages.push_back(std::move(msg));
  }
  const engine::ToolFormat format = prepare_tool_chat(*o.service, messages, tools, gr);
  std::optional<engine::ToolFormat> parse_calls;
  if (tools.active()) parse_calls = format;
  respond(
      o, req, res, std::move(gr), stream,
      [model](const std::string& piece) {
        return json{{"model", model},
                    {"created_at", rfc3339_now()},
                    {"message", {{"role", "assistant"}, {"content", piece}}},
                    {"done", false}};
      },
      [model](const std::string& text, const engine::GenerationEvent& r) {
        return json{{"model", model},
                    {"created_at", rfc3339_now()},
                    {"message", {{"role", "assistant"}, {"content", text}}},
                    {"done_reason", done_reason(r.finish)},
                    {"done", true}};
      },
      parse_calls);
}

void handle_generate(Ollama& o, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  require_chat_model(o, body);
  const std::string model = model_name(body);
  engine::GenerationRequest gr;
  gr.params = parse_options(body, o.service->n_ctx());
  parse_shared(req, body, gr);
  refuse_images(body, "images");
  if (!string_field(body, "suffix", "").empty()) bad("'suffix' (fill-in-the-middle) is not supported");
  if (!string_field(body, "template", "").empty())
    bad("'template' (a Go template) is not supported; Etna renders the model's own chat template, or send raw: true");
  const bool raw = bool_field(body, "raw", false);
  const bool stream = bool_field(body, "stream", true);
  const std::string prompt = string_field(body, "prompt", "");
  const std::string system = string_field(body, "system", "");
  std::vector<tokenizer::Token> context;
  if (const json* c = field(body, "context")) {
    if (!c->is_array()) bad("'context' must be an array of token ids");
    const int n_vocab = o.service->chat_model()->config().n_vocab;
    for (const auto& t : *c) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab)
        bad(fmt::format("'context' holds {}, not a token id of this model (0..{})", t.dump(), n_vocab - 1));
      context.push_back(static_cast<tokenizer::Token>(t.get<int64_t>()));
    }
  }
  if (prompt.empty() && context.empty()) {
    send_json(res, {{"model", model}, {"created_at", rfc3339_now()}, {"response", ""}, {"done_reason", "load"}, {"done", true}});
    return;
  }
  std::vector<tokenizer::Token> tokens;
  if (raw) {
    if (!system.empty()) bad("'system' has no effect with raw: true; put it in the prompt");
    tokens = o.service->encode_prompt(prompt, /*templated=*/true);
  } else {
    std::vector<tokenizer::ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.push_back({"user", prompt});
    tokens = o.service->chat_prompt(messages);
  }
  const int bos = o.service->chat_tokenizer()->vocab().bos;
  if (!context.empty() && !tokens.empty() && tokens[0] == bos) tokens.erase(tokens.begin());  // one BOS per sequence
  gr.prompt = context;
  gr.prompt.insert(gr.prompt.end(), tokens.begin(), tokens.end());
  auto prompt_tokens = std::make_shared<std::vector<tokenizer::Token>>(gr.prompt);
  respond(
      o, req, res, std::move(gr), stream,
      [model](const std::string& piece) {
        return json{{"model", model}, {"created_at", rfc3339_now()}, {"response", piece}, {"done", false}};
      },
      [model, prompt_tokens](const std::string& text, const engine::GenerationEvent& r) {
        std::vector<tokenizer::Token> ctx = *prompt_tokens;
        ctx.insert(ctx.end(), r.tokens.begin(), r.tokens.end());
        return json{{"model", model},      {"created_at", rfc3339_now()},      {"response", text},
                    {"done", true},        {"done_reason", done_reason(r.finish)}, {"context", ctx}};
      });
}

const engine::Embedder& require_embedder(Ollama& o, const json& body) {
  o.require_ready();
  const std::string name = model_name(body);
  const engine::Embedder* e = o.service->shared_embedder();
  if (e && names(name, o.service->embedding_model_id())) return *e;
  if (names(name, o.service->model_id()))
    bad(fmt::format("\"{}\" does not support embeddings; this server embeds with '{}'", name,
                    e ? o.service->embedding_model_id() : "no model (start it with --embedding-model)"));
  throw HttpError(404, ErrorKind::not_found, fmt::format("model '{}' not found", name));
}

void handle_embed(Ollama& o, const httplib::Request& req, httplib::Response& res) {
  const auto t0 = Clock::now();
  const json body = object_body(req);
  const engine::Embedder& emb = require_embedder(o, body);
  parse_options(body, 0);  // validated; sampling options do not affect embeddings
  std::vector<std::string> texts;
  const json* input = field(body, "input");
  if (!input) bad("'input' is required");
  if (input->is_string()) {
    texts.push_back(input->get<std::string>());
  } else if (input->is_array()) {
    if (input->size() > 2048) bad("at most 2048 inputs per request");
    for (const auto& x : *input) {
      if (!x.is_string()) bad("'input' must be a string or an array of strings");
      texts.push_back(x.get<std::string>());
    }
  } else {
    bad("'input' must be a string or an array of strings");
  }
  const bool truncate = bool_field(body, "truncate", true);
  if (const json* d = field(body, "dimensions"); d && !(d->is_number_integer() && d->get<int64_t>() == emb.dim()))
    bad(fmt::format("'dimensions': this model's embeddings have {} dimensions", emb.dim()));
  std::vector<std::vector<float>> vectors;
  int total = 0;
  if (!texts.empty()) {
    for (int n : emb.count_tokens(texts)) total += truncate ? std::min(n, emb.max_tokens()) : n;
    try {
      vectors = emb.embed(texts, truncate);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::limit) bad(std::string(e.what()) + " (send truncate: true to cut it)");
      throw;
    }
  }
  send_json(res, {{"model", model_name(body)},
                  {"embeddings", vectors},
                  {"total_duration", ns_since(t0)},
                  {"load_duration", 0},
                  {"prompt_eval_count", total}});
}

void handle_embeddings(Ollama& o, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  const engine::Embedder& emb = require_embedder(o, body);
  parse_options(body, 0);
  const std::string prompt = string_field(body, "prompt", "");
  if (prompt.empty()) {
    send_json(res, {{"embedding", json::array()}});
    return;
  }
  send_json(res, {{"embedding", emb.embed({prompt}, /*truncate=*/true)[0]}});
}

json tag_json(const ModelCard& c) {
  return {{"name", c.id + ":latest"},
          {"model", c.id + ":latest"},
          {"modified_at", c.modified_at},
          {"size", c.size},
          {"digest", ""},
          {"details", c.details}};
}

void handle_show(Ollama& o, const httplib::Request& req, httplib::Response& res) {
  const json body = object_body(req);
  o.require_ready();
  const std::string name = model_name(body);
  for (const auto& c : o.cards()) {
    if (!names(name, c.id)) continue;
    const OpenAIOptions& opt = o.service->options();
    std::string parameters = c.embedding ? "" : fmt::format("num_ctx {}\nnum_parallel {}", o.service->n_ctx(), opt.n_parallel);
    send_json(res, {{"modelfile", fmt::format("# served by Etna from {}\nFROM {}\n", c.path, c.path)},
                    {"parameters", parameters},
                    {"template", c.template_source},
                    {"details", c.details},
                    {"model_info", c.model_info},
                    {"capabilities", c.embedding ? json::array({"embedding"}) : json::array({"completion", "tools"})},
                    {"modified_at", c.modified_at}});
    return;
  }
  throw HttpError(404, ErrorKind::not_found, fmt::format("model '{}' not found", name));
}

void handle_ps(Ollama& o, httplib::Response& res) {
  json models = json::array();
  for (const auto& c : o.cards()) {
    json m = tag_json(c);
    m.erase("modified_at");
    m["expires_at"] = "2318-08-08T00:00:00Z";  // loaded for the life of the server
    m["size_vram"] = 0;
    m["context_length"] = c.embedding ? o.service->shared_embedder()->max_tokens() : o.service->n_ctx();
    models.push_back(std::move(m));
  }
  send_json(res, {{"models", models}});
}

template <typename F>
HttpServer::Handler counted(const std::shared_ptr<Ollama>& state, std::string endpoint, F fn) {
  return [state, endpoint = std::move(endpoint), fn](const httplib::Request& req, httplib::Response& res) {
    Ollama& o = *state;
    try {
      fn(o, req, res);
    } catch (const engine::QueueFullError& e) {
      send_json(res, ollama_error_body(503, e.what()), 503);
      res.set_header("Retry-After", "1");
    } catch (const Error& e) {
      int status = http_status_for(e);
      if (e.kind() == ErrorKind::limit) status = 400;
      if (status >= 500) log::warn("ollama: {} {} -> {}: {}", req.method, req.path, status, e.what());
      send_json(res, ollama_error_body(status, e.what()), status);
    } catch (const json::exception& e) {
      send_json(res, ollama_error_body(400, std::string("invalid request body: ") + e.what()), 400);
    } catch (const std::exception& e) {
      send_json(res, ollama_error_body(500, std::string("internal error: ") + e.what()), 500);
    }
    if (o.service) o.service->count_request(endpoint, res.status);
  };
}

}  // namespace

void register_ollama_routes(HttpServer& server, OpenAIService* service, const std::string& version, bool root) {
  if (root) {
    server.route(Method::get, "/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("Ollama is running", "text/plain; charset=utf-8");
    });
  }
  auto o = std::make_shared<Ollama>();  // shared by the routes, so it lives as long as they do
  o->service = service;
  o->version = version;
  for (const char* p : {"/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/tags", "/api/show", "/api/ps",
                        "/api/version", "/api/pull", "/api/push", "/api/delete", "/api/create", "/api/copy", "/api/blobs/"})
    server.set_error_format(p, ollama_error_body);
  server.route(Method::post, "/api/chat", counted(o, "/api/chat", handle_chat));
  server.route(Method::post, "/api/generate", counted(o, "/api/generate", handle_generate));
  server.route(Method::post, "/api/embed", counted(o, "/api/embed", handle_embed));
  server.route(Method::post, "/api/embeddings", counted(o, "/api/embeddings", handle_embeddings));
  server.route(Method::get, "/api/tags", counted(o, "/api/tags", [](Ollama& x, const httplib::Request&, httplib::Response& res) {
    json models = json::array();
    for (const auto& c : x.cards()) models.push_back(tag_json(c));
    send_json(res, {{"models", models}});
  }));
  server.route(Method::post, "/api/show", counted(o, "/api/show", handle_show));
  server.route(Method::get, "/api/ps", counted(o, "/api/ps", [](Ollama& x, const httplib::Request&, httplib::Response& res) {
    handle_ps(x, res);
  }));
  server.route(Method::get, "/api/version", counted(o, "/api/version", [](Ollama& x, const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"version", x.version}});
  }));
  auto unsupported = [](const char* what) {
    return [what](Ollama&, const httplib::Request&, httplib::Response&) {
      throw HttpError(501, ErrorKind::unsupported,
                      fmt::format("{} is not supported: Etna has no model library yet; it serves the GGUF files given "
                                  "with -m/--embedding-model (download GGUF files yourself and restart)",
                                  what));
    };
  };
  server.route(Method::post, "/api/pull", counted(o, "/api/pull", unsupported("pulling a model")));
  server.route(Method::post, "/api/push", counted(o, "/api/push", unsupported("pushing a model")));
  server.route(Method::del, "/api/delete", counted(o, "/api/delete", unsupported("deleting a model")));
  server.route(Method::post, "/api/create", counted(o, "/api/create", unsupported("creating a model")));
  server.route(Method::post, "/api/copy", counted(o, "/api/copy", unsupported("copying a model")));
  server.route(Method::post, R"(/api/blobs/([^/]+))", counted(o, "/api/blobs", unsupported("uploading a blob")));
}

}  // namespace etna::server
