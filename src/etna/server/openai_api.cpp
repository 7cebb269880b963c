#include "etna/server/openai_api.h"
#include "etna/server/access_log.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "etna/base/log.h"
#include "etna/engine/grammar.h"
#include "etna/engine/json_schema.h"
#include "etna/gguf/gguf_file.h"
#include "etna/hub/licence.h"
#include "etna/engine/memory.h"
#include "etna/engine/tool_calls.h"
#include "etna/server/api_util.h"

namespace etna::server {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using engine::FinishReason;
using engine::GenerationEvent;
using engine::RequestStream;
using tokenizer::Token;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kDefaultMaxContext = 4096;

// An error with OpenAI's code and param fields.
class ApiError : public HttpError {
 public:
  ApiError(int status, std::string code, std::string param, const std::string& message)
      : HttpError(status, status == 404 ? ErrorKind::not_found : ErrorKind::invalid_argument, message),
        code_(std::move(code)), param_(std::move(param)) {}
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }

 private:
  std::string code_, param_;
};

template <typename... Args>
[[noreturn]] void bad_request(const std::string& param, fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError(400, param.empty() ? "" : "invalid_value", param, fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void bad_type(const std::string& param, const char* expected, const json& got) {
  throw ApiError(400, "invalid_type", param,
                 fmt::format("invalid type for '{}': expected {}, but got {}", param, expected, got.type_name()));
}

const char* finish_name(FinishReason r) { return r == FinishReason::length ? "length" : "stop"; }

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// ---- Metrics -------------------------------------------------------------------------------

struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bucket (not cumulative); last = +Inf
  double sum = 0;
  uint64_t count = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v) {
    size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) ++i;
    ++counts[i];
    sum += v;
    ++count;
  }
  void write(std::string& out, const std::string& name, const std::string& help) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
      cum += counts[i];
      out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cum);
    }
    cum += counts.back();
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cum, name, sum, name, count);
  }
};

struct Metrics {
  std::mutex mutex;
  std::map<std::pair<std::string, int>, uint64_t> requests;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  Histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  Histogram token_latency{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};

  void request(const std::string& endpoint, int status) {
    std::lock_guard lock(mutex);
    ++requests[{endpoint, status}];
  }
};

// Timing of one generation as its events arrive (time to first token, per-token latency).
struct TokenClock {
  Clock::time_point start = Clock::now();
  Clock::time_point last;
  bool first = true;
  void on_event(Metrics& m, const GenerationEvent& e) {
    if (e.tokens.empty()) return;
    const auto now = Clock::now();
    std::lock_guard lock(m.mutex);
    if (first) {
      m.ttft.observe(std::chrono::duration<double>(now - start).count());
      first = false;
    } else {
      const double dt = std::chrono::duration<double>(now - last).count() / static_cast<double>(e.tokens.size());
      for (size_t i = 0; i < e.tokens.size(); ++i) m.token_latency.observe(dt);
    }
    last = now;
  }
};

}  // namespace

nlohmann::json openai_error_body(int status, const std::string& message, const std::string& code,
                                 const std::string& param) {
  const char* type = status >= 500 ? "server_error" : status == 429 ? "rate_limit_error" : "invalid_request_error";
  std::string c = code;
  if (c.empty()) {
    if (status == 401) c = "invalid_api_key";
    else if (status == 413) c = "request_too_large";
    else if (status == 429) c = "rate_limit_exceeded";
    else if (status == 503) c = "service_unavailable";
  }
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", c.empty() ? json(nullptr) : json(c)}}}};
}

// ---- Service -------------------------------------------------------------------------------

namespace {

// An embedder whose calls hold a mutex, so the /v1/embeddings route and the documents API's
// ingestion can share one model.
class LockedEmbedder final : public engine::Embedder {
 public:
  LockedEmbedder(const engine::Embedder& inner, std::mutex& mutex) : inner_(inner), mutex_(mutex) {}
  int dim() const override { return inner_.dim(); }
  int max_tokens() const override { return inner_.max_tokens(); }
  const tokenizer::Tokenizer& tokenizer() const override { return inner_.tokenizer(); }
  std::string model_name() const override { return inner_.model_name(); }
  std::vector<std::vector<float>> embed(const std::vector<std::string>& texts, bool truncate) const override {
    std::lock_guard lock(mutex_);
    return inner_.embed(texts, truncate);
  }
  std::vector<int> count_tokens(const std::vector<std::string>& texts) const override {
    std::lock_guard lock(mutex_);
    return inner_.count_tokens(texts);
  }
  std::vector<std::vector<float>> embed_tokens(const std::vector<std::vector<engine::Token>>& inputs) const override {
    std::lock_guard lock(mutex_);
    return inner_.embed_tokens(inputs);
  }

 private:
  const engine::Embedder& inner_;
  std::mutex& mutex_;
};

}  // namespace

struct OpenAIService::Impl {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::optional<tokenizer::ChatTemplate> chat_template;
  bool own_template = false;
  std::string bos_text;
  std::unique_ptr<engine::Scheduler> scheduler;
  std::unique_ptr<engine::Embedder> embedder;
  std::mutex embed_mutex;
  std::unique_ptr<LockedEmbedder> locked_embedder;
  Metrics metrics;
  int64_t created = 0;
  json model_licence, embedding_licence;  // extra /v1/models fields
};

OpenAIService::OpenAIService(OpenAIOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  namespace fs = std::filesystem;
  if (!options_.model_path.empty()) model_id_ = fs::path(options_.model_path).stem().string();
  if (!options_.embedding_model_path.empty()) embedding_id_ = fs::path(options_.embedding_model_path).stem().string();
  if (options_.n_parallel < 1 || options_.n_parallel > 256)
    fail(ErrorKind::invalid_argument, "--parallel must be in 1..256 (got {})", options_.n_parallel);
  if (options_.n_ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", options_.n_ctx);
  if (options_.queue_capacity < 0) fail(ErrorKind::invalid_argument, "--queue must be >= 0 (got {})", options_.queue_capacity);
}

OpenAIService::~OpenAIService() = default;

void OpenAIService::load() {
  Impl& m = *impl_;
  m.created = unix_now();
  if (!options_.model_path.empty()) {
    m.model = model::Model::load(options_.model_path);
    m.model_licence = !options_.model_licence.is_null() ? options_.model_licence : hub::licence_from_gguf(m.model->file()).to_json();
    m.tokenizer = tokenizer::Tokenizer::from_gguf(m.model->file());
    try {
      m.chat_template.emplace(tokenizer::ChatTemplate::from_gguf(m.model->file()));
    } catch (const Error& e) {
      log::warn("{}: {}; using the ChatML format instead", options_.model_path, e.what());
      m.chat_template.emplace(tokenizer::ChatTemplate::chatml());
    }
    m.own_template = m.model->file().has("tokenizer.chat_template");
    const auto& vocab = m.tokenizer->vocab();
    m.bos_text = vocab.bos >= 0 ? vocab.tokens[static_cast<size_t>(vocab.bos)] : "";
    const int train = m.model->config().n_ctx_train;
    n_ctx_ = options_.n_ctx > 0 ? options_.n_ctx : std::min(train > 0 ? train : kDefaultMaxContext, kDefaultMaxContext);
    engine::SchedulerOptions so;
    so.n_parallel = options_.n_parallel;
    so.n_ctx = n_ctx_;
    so.queue_capacity = options_.queue_capacity;
    so.step_tokens = options_.step_tokens;
    so.cache_type = options_.cache_type;
    m.scheduler = std::make_unique<engine::Scheduler>(*m.model, *m.tokenizer, so);
  }
  if (!options_.embedding_model_path.empty()) {
    m.embedder = engine::Embedder::load(options_.embedding_model_path);
    m.locked_embedder = std::make_unique<LockedEmbedder>(*m.embedder, m.embed_mutex);
    m.embedding_licence = !options_.embedding_model_licence.is_null()
                              ? options_.embedding_model_licence
                              : hub::licence_from_gguf(*gguf::GgufFile::open(options_.embedding_model_path)).to_json();
  }
  ready_ = true;
}

const engine::Embedder* OpenAIService::shared_embedder() const {
  return ready_ ? impl_->locked_embedder.get() : nullptr;
}

const tokenizer::ChatTemplate* OpenAIService::own_chat_template() const {
  if (!ready_ || !impl_->model) fail(ErrorKind::unavailable, "no chat model is loaded");
  return impl_->own_template ? &*impl_->chat_template : nullptr;
}

std::vector<tokenizer::Token> OpenAIService::encode_prompt(const std::string& text, bool templated) const {
  if (!ready_ || !impl_->model) fail(ErrorKind::unavailable, "no chat model is loaded");
  tokenizer::EncodeOptions enc;
  enc.parse_special = templated;
  enc.add_special = !templated || impl_->bos_text.empty() || text.compare(0, impl_->bos_text.size(), impl_->bos_text) != 0;
  return impl_->tokenizer->encode(text, enc);
}

engine::GenerationEvent OpenAIService::generate(std::vector<tokenizer::Token> prompt, const engine::SamplingParams& params,
                                                const std::function<bool(const std::string&)>& on_text) {
  engine::GenerationRequest gr;
  gr.prompt = std::move(prompt);
  gr.params = params;
  return generate(std::move(gr), on_text);
}

std::vector<tokenizer::Token> OpenAIService::chat_prompt(const std::vector<tokenizer::ChatMessage>& messages) const {
  if (!ready_ || !impl_->model) fail(ErrorKind::unavailable, "no chat model is loaded");
  return encode_prompt(impl_->chat_template->render(messages, /*add_generation_prompt=*/true), /*templated=*/true);
}

engine::ToolFormat OpenAIService::tool_format() const {
  if (!ready_ || !impl_->model) fail(ErrorKind::unavailable, "no chat model is loaded");
  return engine::detect_tool_format(impl_->chat_template->source(), impl_->own_template);
}

std::vector<tokenizer::Token> OpenAIService::tool_chat_prompt(const nlohmann::ordered_json& messages,
                                                              const nlohmann::ordered_json& tools) const {
  if (!ready_ || !impl_->model) fail(ErrorKind::unavailable, "no chat model is loaded");
  bool uses_tools = !tools.empty();
  for (const auto& msg : messages)
    if (msg["role"] == "tool" || msg.contains("tool_calls")) uses_tools = true;
  std::string text;
  if (uses_tools) {
    text = impl_->chat_template->render_context(engine::tool_template_context(tool_format(), messages, tools));
  } else {
    std::vector<tokenizer::ChatMessage> plain;
    for (const auto& msg : messages) plain.push_back({msg["role"].get<std::string>(), msg["content"].get<std::string>()});
    text = impl_->chat_template->render(plain, /*add_generation_prompt=*/true);
  }
  return encode_prompt(text, /*templated=*/true);
}

const model::Model* OpenAIService::chat_model() const { return ready_ ? impl_->model.get() : nullptr; }
const tokenizer::Tokenizer* OpenAIService::chat_tokenizer() const { return ready_ ? impl_->tokenizer.get() : nullptr; }
void OpenAIService::count_request(const std::string& endpoint, int status) { impl_->metrics.request(endpoint, status); }

engine::GenerationEvent OpenAIService::generate(engine::GenerationRequest gr,
                                                const std::function<bool(const std::string&)>& on_text) {
  if (!ready_) fail(ErrorKind::unavailable, "the model is still loading; retry shortly");
  Impl& m = *impl_;
  if (!m.scheduler) fail(ErrorKind::unavailable, "this server has no chat model (start it with -m)");
  if (gr.prompt.size() > static_cast<size_t>(n_ctx_))
    fail(ErrorKind::limit, "the prompt has {} tokens; this model's context is {} tokens", gr.prompt.size(), n_ctx_);
  if (!m.own_template) {
    gr.params.stop.push_back("<|im_end|>");
    gr.params.stop.push_back("<|im_start|>");
  }
  auto stream = m.scheduler->submit(std::move(gr));
  engine::GenerationEvent result, e;
  TokenClock clock;
  for (;;) {
    if (!stream->next(e, std::chrono::milliseconds(250))) {
      if (on_text && !on_text("")) {
        stream->cancel();
        result.done = true;
        result.finish = engine::FinishReason::cancelled;
        return result;
      }
      continue;
    }
    clock.on_event(m.metrics, e);
    result.text += e.text;
    result.tokens.insert(result.tokens.end(), e.tokens.begin(), e.tokens.end());
    if (!e.text.empty() && on_text && !on_text(e.text) && !e.done) {
      stream->cancel();
      result.done = true;
      result.finish = engine::FinishReason::cancelled;
      return result;
    }
    if (e.done) break;
  }
  if (!e.error.empty()) fail(ErrorKind::internal, "generation failed: {}", e.error);
  {
    std::lock_guard lock(m.metrics.mutex);
    m.metrics.prompt_tokens += static_cast<uint64_t>(e.prompt_tokens);
    m.metrics.generated_tokens += static_cast<uint64_t>(e.completion_tokens);
  }
  result.done = true;
  result.finish = e.finish;
  result.prompt_tokens = e.prompt_tokens;
  result.cached_tokens = e.cached_tokens;
  result.completion_tokens = e.completion_tokens;
  return result;
}

OpenAIService::Stats OpenAIService::stats() {
  Impl& m = *impl_;
  Stats st;
  if (ready_ && m.scheduler) {
    const auto s = m.scheduler->stats();
    st.active = s.active;
    st.queued = s.queued;
    const auto mem = engine::estimate_memory(*m.model, n_ctx_, options_.cache_type, 1);
    st.weight_bytes = mem.weights;
    st.kv_bytes = mem.kv_total * static_cast<uint64_t>(options_.n_parallel);
  }
  std::lock_guard lock(m.metrics.mutex);
  for (const auto& [key, n] : m.metrics.requests) st.requests += n;
  st.prompt_tokens = m.metrics.prompt_tokens;
  st.generated_tokens = m.metrics.generated_tokens;
  if (m.metrics.token_latency.sum > 0)
    st.decode_tokens_per_second = static_cast<double>(m.metrics.token_latency.count) / m.metrics.token_latency.sum;
  if (m.metrics.ttft.count > 0) st.mean_time_to_first_token = m.metrics.ttft.sum / static_cast<double>(m.metrics.ttft.count);
  return st;
}

namespace {

// ---- Request parsing -----------------------------------------------------------------------

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_field(const json& body, const char* name, double def, double lo, double hi) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number()) bad_type(name, "a number", *f);
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi)) bad_request(name, "'{}' must be between {} and {} (got {})", name, lo, hi, v);
  return v;
}

int64_t int_field(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number_integer() && !(f->is_number_float() && std::floor(f->get<double>()) == f->get<double>()))
    bad_type(name, "an integer", *f);
  const double d = f->get<double>();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
    bad_request(name, "'{}' must be between {} and {} (got {})", name, lo, hi, d);
  return static_cast<int64_t>(d);
}

bool bool_field(const json& body, const char* name, bool def) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_boolean()) bad_type(name, "a boolean", *f);
  return f->get<bool>();
}

json parse_object(const httplib::Request& req) {
  json body;
  try {
    body = parse_json_body(req);
  } catch (const Error& e) {
    throw ApiError(400, "invalid_json", "", e.what());
  }
  if (!body.is_object()) throw ApiError(400, "invalid_type", "", "the request body must be a JSON object");
  return body;
}

// Parameters shared by chat and text completions.
struct Common {
  engine::SamplingParams params;
  bool stream = false;
  bool include_usage = false;
  bool json_object = false;
  bool logprobs = false;
  int n = 1;                                      // choices
  std::shared_ptr<const engine::Grammar> grammar; // response_format json_schema or grammar
  std::vector<std::pair<Token, float>> logit_bias;
};

// Compiles GBNF for a request; a bad grammar or schema is the client's 400 naming `param`.
std::shared_ptr<const engine::Grammar> compile_grammar(const std::function<std::string()>& gbnf, const std::string& param) {
  try {
    return engine::Grammar::cached(gbnf());
  } catch (const Error& e) {
    throw ApiError(400, e.kind() == ErrorKind::unsupported ? "unsupported_value" : "invalid_value", param, e.what());
  }
}

// The body again with its keys in the client's order (schemas: properties are generated in order).
ojson ordered_body(const httplib::Request& req) {
  try {
    return ojson::parse(req.body);
  } catch (const ojson::exception&) {
    return ojson::object();  // parse_object already accepted it; cannot happen
  }
}

Common parse_common(const json& body, const ojson& obody, bool chat) {
  Common c;
  auto& p = c.params;
  p.temperature = static_cast<float>(number_field(body, "temperature", 1.0, 0.0, 2.0));
  p.top_p = static_cast<float>(number_field(body, "top_p", 1.0, 0.0, 1.0));
  if (p.top_p <= 0.0f) bad_request("top_p", "'top_p' must be greater than 0");
  p.top_k = static_cast<int>(int_field(body, "top_k", 40, 0, 1 << 20));      // Etna extension
  p.min_p = static_cast<float>(number_field(body, "min_p", 0.05, 0.0, 1.0));  // Etna extension
  p.repeat_penalty = static_cast<float>(number_field(body, "repeat_penalty", 1.0, 0.01, 10.0));
  p.presence_penalty = static_cast<float>(number_field(body, "presence_penalty", 0.0, -2.0, 2.0));
  p.frequency_penalty = static_cast<float>(number_field(body, "frequency_penalty", 0.0, -2.0, 2.0));
  if (const json* s = field(body, "seed")) {
    if (!s->is_number_integer()) bad_type("seed", "an integer", *s);
    p.seed = s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
    if (p.seed == engine::kRandomSeed) p.seed = 0;
  }
  // At least 1, as OpenAI requires (0 used to generate one token anyway).
  int64_t max_tokens = int_field(body, "max_tokens", -1, 1, INT32_MAX);
  if (chat) max_tokens = int_field(body, "max_completion_tokens", max_tokens, 1, INT32_MAX);
  else if (!field(body, "max_tokens")) max_tokens = 16;  // OpenAI's default for text completions
  p.max_tokens = static_cast<int>(max_tokens);
  if (const json* s = field(body, "stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      for (const auto& x : *s) {
        if (!x.is_string()) bad_type("stop", "a string or an array of strings", x);
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      bad_type("stop", "a string or an array of strings", *s);
    }
    if (p.stop.size() > 16) bad_request("stop", "at most 16 stop strings are allowed");
    for (const auto& x : p.stop)
      if (x.empty()) bad_request("stop", "stop strings must not be empty");
  }
  c.n = static_cast<int>(int_field(body, "n", 1, 1, 16));
  if (int_field(body, "best_of", 1, 1, 128) != 1) bad_request("best_of", "only best_of = 1 is supported");
  c.stream = bool_field(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_type("stream_options", "an object", *so);
    c.include_usage = bool_field(*so, "include_usage", false);
  }
  if (chat) {
    c.logprobs = bool_field(body, "logprobs", false);
    const int64_t top = int_field(body, "top_logprobs", 0, 0, 20);
    if (top > 0 && !c.logprobs) bad_request("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    p.n_logprobs = static_cast<int>(top);
  } else {
    const int64_t lp = int_field(body, "logprobs", -1, 0, 5);  // legacy: number of alternatives
    c.logprobs = lp >= 0;
    p.n_logprobs = static_cast<int>(std::max<int64_t>(lp, 0));
    if (bool_field(body, "echo", false)) bad_request("echo", "'echo' is not supported");
    if (field(body, "suffix")) bad_request("suffix", "'suffix' is not supported");
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object()) bad_type("response_format", "an object", *rf);
    const json* t = field(*rf, "type");
    if (!t || !t->is_string()) bad_request("response_format.type", "'response_format.type' must be a string");
    const std::string type = t->get<std::string>();
    if (type == "json_object") {
      c.json_object = true;
    } else if (type == "json_schema") {
      const ojson& orf = obody["response_format"];
      auto js = orf.find("json_schema");
      if (js == orf.end() || !js->is_object())
        bad_request("response_format.json_schema", "'response_format.json_schema' must be an object with a 'schema'");
      auto schema = js->find("schema");
      if (schema == js->end()) bad_request("response_format.json_schema.schema", "'response_format.json_schema.schema' is required");
      engine::JsonSchemaOptions o;
      if (auto strict = js->find("strict"); strict != js->end() && strict->is_boolean()) o.strict = strict->get<bool>();
      c.grammar = compile_grammar([&] { return engine::json_schema_to_gbnf(*schema, o); }, "response_format.json_schema.schema");
    } else if (type != "text") {
      bad_request("response_format.type", "response_format type '{}' is not supported (use 'text', 'json_object' or 'json_schema')", type);
    }
  }
  if (const json* gr = field(body, "grammar")) {  // llama.cpp's extension: GBNF
    if (!gr->is_string()) bad_type("grammar", "a string (GBNF)", *gr);
    if (c.grammar || c.json_object) bad_request("grammar", "'grammar' cannot be combined with a JSON response_format");
    const std::string text = gr->get<std::string>();
    c.grammar = compile_grammar([&] { return text; }, "grammar");
  }
  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object()) bad_type("logit_bias", "an object mapping token ids to numbers", *lb);
    if (lb->size() > 1024) bad_request("logit_bias", "at most 1024 tokens may be biased");
    for (const auto& [k, v] : lb->items()) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(k, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != k.size() || id < 0 || id > INT32_MAX) bad_request("logit_bias", "logit_bias keys must be token ids (got '{}')", k);
      if (!v.is_number()) bad_type("logit_bias", "numbers between -100 and 100", v);
      const double b = v.get<double>();
      if (!(b >= -100.0 && b <= 100.0)) bad_request("logit_bias", "logit_bias values must be between -100 and 100 (got {})", b);
      c.logit_bias.emplace_back(static_cast<Token>(id), static_cast<float>(b));
    }
  }
  try {
    p.validate();
  } catch (const Error& e) {
    throw ApiError(400, "invalid_value", "", e.what());
  }
  return c;
}

std::string content_text(const json& content, size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) bad_type(param, "a string or an array of content parts", content);
  std::string text;
  for (const auto& part : content) {
    if (!part.is_object()) bad_type(param, "an array of content parts", part);
    const json* type = field(part, "type");
    if (!type || !type->is_string()) bad_request(param, "each content part needs a string 'type'");
    if (type->get<std::string>() != "text")
      bad_request(param, "content parts of type '{}' are not supported (only 'text')", type->get<std::string>());
    const json* t = field(part, "text");
    if (!t || !t->is_string()) bad_type(param + ".text", "a string", t ? *t : json(nullptr));
    text += t->get<std::string>();
  }
  return text;
}

// Messages in OpenAI's shape, content flattened to text: {role, content[, tool_calls][, tool_call_id][, name]}.
ojson parse_messages(const json& body) {
  const json* msgs = field(body, "messages");
  if (!msgs) bad_request("messages", "'messages' is required");
  if (!msgs->is_array()) bad_type("messages", "an array", *msgs);
  if (msgs->empty()) bad_request("messages", "'messages' must contain at least one message");
  ojson out = ojson::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    if (!m.is_object()) bad_type(fmt::format("messages[{}]", i), "an object", m);
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad_request(fmt::format("messages[{}].role", i), "each message needs a string 'role'");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      bad_request(fmt::format("messages[{}].role", i), "role '{}' is not supported (system, developer, user, assistant, tool)", r);
    const json* content = field(m, "content");
    const json* calls = r == "assistant" ? field(m, "tool_calls") : nullptr;
    if (!content && r != "assistant") bad_request(fmt::format("messages[{}].content", i), "message {} has no content", i);
    ojson msg = {{"role", r}, {"content", content ? content_text(*content, i) : std::string()}};
    if (calls) {
      if (!calls->is_array()) bad_type(fmt::format("messages[{}].tool_calls", i), "an array", *calls);
      ojson list = ojson::array();
      for (const auto& c : *calls) {
        const json* fn = c.is_object() ? field(c, "function") : nullptr;
        if (!fn || !fn->is_object() || !field(*fn, "name") || !(*fn)["name"].is_string())
          bad_request(fmt::format("messages[{}].tool_calls", i), "each tool call needs a function with a name");
        const json* args = field(*fn, "arguments");
        list.push_back({{"id", c.value("id", "")},
                        {"type", "function"},
                        {"function", {{"name", (*fn)["name"]}, {"arguments", args && args->is_string() ? args->get<std::string>() : std::string("{}")}}}});
      }
      msg["tool_calls"] = std::move(list);
    }
    if (r == "tool") {
      const json* id = field(m, "tool_call_id");
      if (!id || !id->is_string()) bad_request(fmt::format("messages[{}].tool_call_id", i), "a tool message needs a string 'tool_call_id'");
      msg["tool_call_id"] = id->get<std::string>();
    }
    if (const json* name = field(m, "name"); name && name->is_string()) msg["name"] = name->get<std::string>();
    out.push_back(std::move(msg));
  }
  return out;
}

// ---- Responses -----------------------------------------------------------------------------

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

json chat_logprobs(const tokenizer::Tokenizer& tok, const std::vector<engine::SampledToken>& lps) {
  json content = json::array();
  for (const auto& s : lps) {
    const std::string text = tok.token_to_piece(s.token);
    json top = json::array();
    for (const auto& alt : s.top) {
      const std::string at = tok.token_to_piece(alt.token);
      top.push_back({{"token", at}, {"logprob", alt.logprob}, {"bytes", bytes_of(at)}});
    }
    content.push_back({{"token", text}, {"logprob", s.logprob}, {"bytes", bytes_of(text)}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json completion_logprobs(const tokenizer::Tokenizer& tok, const std::vector<engine::SampledToken>& lps, size_t offset) {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& s : lps) {
    const std::string text = tok.token_to_piece(s.token);
    tokens.push_back(text);
    token_lps.push_back(s.logprob);
    json top = json::object();
    for (const auto& alt : s.top) top[tok.token_to_piece(alt.token)] = alt.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += text.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json usage_json(const GenerationEvent& done) {
  note_tokens(done.prompt_tokens, done.completion_tokens);
  json u = {{"prompt_tokens", done.prompt_tokens},
            {"completion_tokens", done.completion_tokens},
            {"total_tokens", done.prompt_tokens + done.completion_tokens}};
  u["prompt_tokens_details"] = {{"cached_tokens", done.cached_tokens}};
  return u;
}

enum class Kind { chat, completion };

// How a chat request uses tools.
struct ToolSetup {
  bool active = false;  // tools given and tool_choice is not "none": replies are parsed for calls
  engine::ToolFormat format = engine::ToolFormat::generic;
};

struct GenerationSetup {
  Kind kind;
  std::string id;
  std::string model;
  int64_t created;
  Common common;
  ToolSetup tools;
};

// Totals of all choices: the prompt counted once, completions summed.
GenerationEvent total_usage(const std::vector<GenerationEvent>& done) {
  GenerationEvent t;
  if (done.empty()) return t;
  t.prompt_tokens = done[0].prompt_tokens;
  t.cached_tokens = done[0].cached_tokens;
  for (const auto& e : done) t.completion_tokens += e.completion_tokens;
  return t;
}

json tool_calls_json(const std::vector<engine::ToolCall>& calls) {
  json out = json::array();
  for (const auto& c : calls)
    out.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

// Waits for every choice's whole generation (non-streamed responses).
json collect(OpenAIService::Impl& m, const GenerationSetup& g, const std::vector<std::shared_ptr<RequestStream>>& streams) {
  json choices = json::array();
  std::vector<GenerationEvent> finals;
  for (size_t i = 0; i < streams.size(); ++i) {
    std::string text;
    std::vector<engine::SampledToken> lps;
    GenerationEvent e;
    TokenClock clock;
    for (;;) {
      if (!streams[i]->next(e, std::chrono::milliseconds(1000))) continue;
      clock.on_event(m.metrics, e);
      text += e.text;
      for (auto& l : e.logprobs) lps.push_back(std::move(l));
      if (e.done) break;
    }
    if (!e.error.empty()) {
      for (auto& s : streams) s->cancel();
      throw Error(ErrorKind::internal, "generation failed: " + e.error);
    }
    {
      std::lock_guard lock(m.metrics.mutex);
      m.metrics.prompt_tokens += static_cast<uint64_t>(i == 0 ? e.prompt_tokens : 0);
      m.metrics.generated_tokens += static_cast<uint64_t>(e.completion_tokens);
    }
    json choice;
    if (g.kind == Kind::chat) {
      json message = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
      std::string finish = finish_name(e.finish);
      if (g.tools.active) {
        engine::ParsedReply r = engine::parse_tool_calls(g.tools.format, text);
        if (!r.calls.empty()) {
          message["content"] = r.content.empty() ? json(nullptr) : json(r.content);
          message["tool_calls"] = tool_calls_json(r.calls);
          finish = "tool_calls";
        }
      }
      choice = {{"index", i},
                {"message", message},
                {"logprobs", g.common.logprobs ? chat_logprobs(*m.tokenizer, lps) : json(nullptr)},
                {"finish_reason", finish}};
    } else {
      choice = {{"index", i},
                {"text", text},
                {"logprobs", g.common.logprobs ? completion_logprobs(*m.tokenizer, lps, 0) : json(nullptr)},
                {"finish_reason", finish_name(e.finish)}};
    }
    choices.push_back(std::move(choice));
    finals.push_back(std::move(e));
  }
  return {{"id", g.id},
          {"object", g.kind == Kind::chat ? "chat.completion" : "text_completion"},
          {"created", g.created},
          {"model", g.model},
          {"system_fingerprint", "etna"},
          {"choices", choices},
          {"usage", usage_json(total_usage(finals))}};
}

// Server-sent events as OpenAI sends them; the choices' chunks interleave as they are produced.
void stream_response(OpenAIService::Impl& m, const GenerationSetup& setup, std::vector<std::shared_ptr<RequestStream>> streams,
                     const httplib::Request& req, httplib::Response& res) {
  struct Choice {
    std::shared_ptr<RequestStream> stream;
    bool done = false;
    size_t text_offset = 0;
    TokenClock clock;
    std::optional<engine::ToolCallFilter> filter;
    api::ToolCallDeltas deltas;
  };
  struct State {
    GenerationSetup g;
    std::vector<Choice> choices;
    std::vector<GenerationEvent> finals;
    bool started = false;
    int idle = 0;
    void cancel() {
      for (auto& c : choices) c.stream->cancel();
    }
  };
  auto st = std::make_shared<State>();
  st->g = setup;
  for (auto& s : streams) {
    Choice c;
    c.stream = std::move(s);
    if (setup.tools.active) c.filter.emplace(setup.tools.format);
    st->choices.push_back(std::move(c));
  }
  start_stream(
      req, res, "text/event-stream",
      [st, &m](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          if (sink.write(s.data(), s.size())) return true;
          st->cancel();  // the client went away
          return false;
        };
        const GenerationSetup& g = st->g;
        auto chunk = [&](json choices, bool with_usage_null) {
          json c = {{"id", g.id},
                    {"object", g.kind == Kind::chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", g.created},
                    {"model", g.model},
                    {"system_fingerprint", "etna"},
                    {"choices", std::move(choices)}};
          if (with_usage_null && g.common.include_usage) c["usage"] = nullptr;
          return "data: " + dump(c) + "\n\n";
        };
        auto delta_chunk = [&](size_t i, json delta) {
          return chunk(json::array({{{"index", i}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}}), true);
        };
        if (!st->started) {
          st->started = true;
          if (g.kind == Kind::chat) {
            std::string out;
            for (size_t i = 0; i < st->choices.size(); ++i)
              out += delta_chunk(i, {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}});
            return write(out);
          }
        }
        // One event of choice i; false when the response is over (written or failed).
        auto process = [&](size_t i, GenerationEvent& e) {
          Choice& c = st->choices[i];
          c.clock.on_event(m.metrics, e);
          std::string text = c.filter ? c.filter->push(e.text) : e.text;
          if (!text.empty() || !e.logprobs.empty()) {
            json lp = nullptr;
            if (g.common.logprobs)
              lp = g.kind == Kind::chat ? chat_logprobs(*m.tokenizer, e.logprobs)
                                        : completion_logprobs(*m.tokenizer, e.logprobs, c.text_offset);
            c.text_offset += text.size();
            json choice = g.kind == Kind::chat
                              ? json{{"index", i}, {"delta", {{"content", text}}}, {"logprobs", lp}, {"finish_reason", nullptr}}
                              : json{{"index", i}, {"text", text}, {"logprobs", lp}, {"finish_reason", nullptr}};
            if (!write(chunk(json::array({choice}), true))) return false;
          }
          // Calls as they are generated: the name first, then pieces of the arguments, as OpenAI streams them.
          auto call_chunks = [&](const std::vector<api::ToolCallDeltas::Event>& events) {
            std::string out;
            for (const auto& ev : events)
              out += ev.start ? delta_chunk(i, {{"tool_calls", json::array({{{"index", ev.index}, {"id", ev.id}, {"type", "function"},
                                                                              {"function", {{"name", ev.name}, {"arguments", ""}}}}})}})
                              : delta_chunk(i, {{"tool_calls", json::array({{{"index", ev.index}, {"function", {{"arguments", ev.arguments}}}}})}});
            return out;
          };
          if (c.filter && !e.done) {
            const std::string calls = call_chunks(c.deltas.update(*c.filter));
            if (!calls.empty() && !write(calls)) return false;
          }
          if (!e.done) return true;
          c.done = true;
          if (!e.error.empty()) {
            st->cancel();
            json err = openai_error_body(500, "generation failed: " + e.error);
            write("data: " + dump(err) + "\n\n");
            sink.done();
            return false;
          }
          {
            std::lock_guard lock(m.metrics.mutex);
            m.metrics.prompt_tokens += static_cast<uint64_t>(st->finals.empty() ? e.prompt_tokens : 0);
            m.metrics.generated_tokens += static_cast<uint64_t>(e.completion_tokens);
          }
          std::string finish = finish_name(e.finish);
          std::string out;
          if (c.filter) {
            engine::ParsedReply r = c.filter->finish();
            if (!r.content.empty()) out += delta_chunk(i, {{"content", r.content}});
            out += call_chunks(c.deltas.finish(r.calls));
            if (!r.calls.empty()) finish = "tool_calls";
          }
          out += g.kind == Kind::chat
                     ? chunk(json::array({{{"index", i}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", finish}}}), true)
                     : chunk(json::array({{{"index", i}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish}}}), true);
          st->finals.push_back(std::move(e));
          return write(out);
        };
        bool progressed = false;
        for (size_t i = 0; i < st->choices.size(); ++i) {
          GenerationEvent e;
          while (!st->choices[i].done && st->choices[i].stream->next(e, std::chrono::milliseconds(0))) {
            progressed = true;
            if (!process(i, e)) return false;
          }
        }
        const bool all_done = std::all_of(st->choices.begin(), st->choices.end(), [](const Choice& c) { return c.done; });
        if (all_done) {
          std::string out;
          {
            const GenerationEvent total = total_usage(st->finals);
            note_tokens(total.prompt_tokens, total.completion_tokens);
          }
          if (g.common.include_usage) {
            json u = json::parse(chunk(json::array(), false).substr(6));
            u["usage"] = usage_json(total_usage(st->finals));
            out += "data: " + dump(u) + "\n\n";
          }
          out += "data: [DONE]\n\n";
          if (!write(out)) return false;
          sink.done();
          return true;
        }
        if (!progressed) {
          for (size_t i = 0; i < st->choices.size(); ++i) {
            if (st->choices[i].done) continue;
            GenerationEvent e;
            if (st->choices[i].stream->next(e, std::chrono::milliseconds(250))) {
              st->idle = 0;
              return process(i, e) || true;
            }
            break;
          }
          // An SSE comment now and then: the only way to notice a client that left while the
          // request waits for a slot or its prompt is evaluated.
          if (++st->idle % 4 == 0 && !write(": keep-alive\n\n")) return false;
        }
        return true;
      },
      [st](bool success) {
        if (!success) st->cancel();
      });
}

void require_ready(const OpenAIService& s) {
  if (!s.ready()) throw ApiError(503, "model_loading", "", "the model is still loading; retry shortly");
}

void check_model(const json& body, const std::string& loaded, const char* what) {
  const json* f = field(body, "model");
  if (!f) return;
  if (!f->is_string()) bad_type("model", "a string", *f);
  const std::string id = f->get<std::string>();
  if (id.empty() || id == loaded) return;
  if (loaded.empty()) throw ApiError(404, "model_not_found", "model", fmt::format("this server has no {} model", what));
  throw ApiError(404, "model_not_found", "model",
                 fmt::format("the model '{}' does not exist; this server serves '{}'", id, loaded));
}

void submit_and_respond(OpenAIService& service, const GenerationSetup& g, engine::GenerationRequest gr,
                        const char* prompt_param, const httplib::Request& req, httplib::Response& res) {
  auto& m = service.impl();
  if (gr.prompt.size() > static_cast<size_t>(service.n_ctx()))
    throw ApiError(400, "context_length_exceeded", prompt_param,
                   fmt::format("this model's maximum context length is {} tokens, but the prompt has {} tokens",
                               service.n_ctx(), gr.prompt.size()));
  // More new tokens than the whole context holds can never be honoured (OpenAI answers 400 too,
  // rather than capping silently).
  if (gr.params.max_tokens > service.n_ctx())
    throw ApiError(400, "invalid_value", "max_tokens",
                   fmt::format("max_tokens is too large: {}; this model's context holds {} tokens", gr.params.max_tokens,
                               service.n_ctx()));
  gr.grammar = g.common.grammar;
  gr.logit_bias = g.common.logit_bias;
  // n choices are n requests on the scheduler (their common prompt is evaluated once and shared
  // through the prefix cache when they land on different slots); seeds differ per choice.
  std::vector<std::shared_ptr<RequestStream>> streams;
  try {
    for (int i = 0; i < g.common.n; ++i) {
      engine::GenerationRequest r = gr;
      if (r.params.seed != engine::kRandomSeed) r.params.seed += static_cast<uint64_t>(i);
      streams.push_back(m.scheduler->submit(std::move(r)));
    }
  } catch (...) {
    for (auto& s : streams) s->cancel();
    throw;
  }
  if (g.common.stream)
    stream_response(m, g, std::move(streams), req, res);
  else
    send_json(res, collect(m, g, streams));
}

// tools / tool_choice / parallel_tool_calls: what the template gets and how the reply is read.
struct ToolRequest {
  ojson tools = ojson::array();
  std::string choice = "auto";  // auto, none, required, or "function" with `name`
  std::string name;
  bool parallel = true;
};

ToolRequest parse_tools(const json& body, const ojson& obody) {
  ToolRequest t;
  if (const json* tools = field(body, "tools")) {
    if (!tools->is_array()) bad_type("tools", "an array", *tools);
    t.tools = obody["tools"];
    try {
      engine::validate_tools(t.tools);
    } catch (const Error& e) {
      bad_request("tools", "{}", e.what());
    }
    if (t.tools.size() > 128) bad_request("tools", "at most 128 tools are allowed");
  }
  t.choice = t.tools.empty() ? "none" : "auto";
  if (const json* c = field(body, "tool_choice")) {
    if (c->is_string()) {
      t.choice = c->get<std::string>();
      if (t.choice != "auto" && t.choice != "none" && t.choice != "required")
        bad_request("tool_choice", "tool_choice must be 'auto', 'none', 'required' or a named function (got '{}')", t.choice);
    } else if (c->is_object()) {
      const json* fn = field(*c, "function");
      if (!field(*c, "type") || (*c)["type"] != "function" || !fn || !fn->is_object() || !field(*fn, "name") ||
          !(*fn)["name"].is_string())
        bad_request("tool_choice", "a named tool_choice is {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
      t.choice = "function";
      t.name = (*fn)["name"].get<std::string>();
    } else {
      bad_type("tool_choice", "a string or an object", *c);
    }
    if (t.choice != "none" && t.tools.empty()) bad_request("tool_choice", "tool_choice '{}' needs 'tools'", t.choice);
  }
  t.parallel = bool_field(body, "parallel_tool_calls", true);
  return t;
}

void handle_chat(OpenAIService& service, const httplib::Request& req, httplib::Response& res) {
  require_ready(service);
  auto& m = service.impl();
  json body = parse_object(req);
  if (!m.scheduler) throw ApiError(404, "model_not_found", "model", "this server has no chat model (start it with -m)");
  check_model(body, service.model_id(), "chat");
  const ojson obody = ordered_body(req);
  const ojson messages = parse_messages(body);
  GenerationSetup g{Kind::chat, random_id("chatcmpl-"), service.model_id(), unix_now(), parse_common(body, obody, true), {}};
  const ToolRequest tools = parse_tools(body, obody);
  g.tools.format = engine::detect_tool_format(m.chat_template->source(), m.own_template);
  g.tools.active = tools.choice != "none";
  if (tools.choice == "required" || tools.choice == "function") {
    if (g.common.grammar || g.common.json_object)
      bad_request("tool_choice", "a required or named tool_choice cannot be combined with response_format or grammar");
    g.common.grammar = compile_grammar(
        [&] { return engine::forced_tool_call_gbnf(g.tools.format, tools.tools, tools.name, tools.parallel); }, "tools");
  }
  if (!m.own_template) {
    // ChatML stand-in: the model may not know its end marker as a token.
    g.common.params.stop.push_back("<|im_end|>");
    g.common.params.stop.push_back("<|im_start|>");
  }
  engine::GenerationRequest gr;
  gr.prompt = service.tool_chat_prompt(messages, g.tools.active ? tools.tools : ojson::array());
  gr.params = g.common.params;
  gr.json_object = g.common.json_object;
  gr.logprobs = g.common.logprobs;
  submit_and_respond(service, g, std::move(gr), "messages", req, res);
}

void handle_completion(OpenAIService& service, const httplib::Request& req, httplib::Response& res) {
  require_ready(service);
  auto& m = service.impl();
  json body = parse_object(req);
  if (!m.scheduler) throw ApiError(404, "model_not_found", "model", "this server has no completion model (start it with -m)");
  check_model(body, service.model_id(), "completion");
  GenerationSetup g{Kind::completion, random_id("cmpl-"), service.model_id(), unix_now(),
                    parse_common(body, ordered_body(req), false), {}};
  const json* prompt = field(body, "prompt");
  if (!prompt) bad_request("prompt", "'prompt' is required");
  json p = *prompt;
  // A batch of one prompt is the prompt itself.
  if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) p = p[0];
  engine::GenerationRequest gr;
  const int n_vocab = m.model->config().n_vocab;
  if (p.is_string()) {
    gr.prompt = m.tokenizer->encode(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && std::all_of(p.begin(), p.end(), [](const json& x) { return x.is_number_integer(); })) {
    for (const auto& x : p) {
      const int64_t t = x.get<int64_t>();
      if (t < 0 || t >= n_vocab) bad_request("prompt", "token id {} is outside the vocabulary (0..{})", t, n_vocab - 1);
      gr.prompt.push_back(static_cast<Token>(t));
    }
  } else if (p.is_array() && p.size() > 1) {
    bad_request("prompt", "only one prompt per request is supported");
  } else {
    bad_type("prompt", "a string or an array of token ids", p);
  }
  if (gr.prompt.empty()) bad_request("prompt", "the prompt is empty");
  gr.params = g.common.params;
  gr.json_object = g.common.json_object;
  gr.logprobs = g.common.logprobs;
  submit_and_respond(service, g, std::move(gr), "prompt", req, res);
}

std::string base64(const void* data, size_t n) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* b = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v = (uint32_t{b[i]} << 16) | (i + 1 < n ? uint32_t{b[i + 1]} << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    out += i + 2 < n ? tbl[v & 63] : '=';
  }
  return out;
}

void handle_embeddings(OpenAIService& service, const httplib::Request& req, httplib::Response& res) {
  require_ready(service);
  auto& m = service.impl();
  json body = parse_object(req);
  if (!m.embedder)
    throw ApiError(404, "model_not_found", "model", "this server has no embedding model (start it with --embedding-model)");
  check_model(body, service.embedding_model_id(), "embedding");
  const json* input = field(body, "input");
  if (!input) bad_request("input", "'input' is required");
  // Text, or token ids of this model's vocabulary (OpenAI's array of integers, or of arrays).
  std::vector<std::string> texts;
  std::vector<std::vector<engine::Token>> token_inputs;
  const int n_vocab = static_cast<int>(m.embedder->tokenizer().vocab().size());
  auto token_list = [&](const json& arr) {
    if (arr.empty()) bad_request("input", "a token-id input must not be empty");
    std::vector<engine::Token> ids;
    for (const auto& t : arr) {
      if (!t.is_number_integer()) bad_type("input", "an array of token ids (integers)", t);
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= n_vocab) bad_request("input", "token id {} is outside this model's vocabulary (0..{})", id, n_vocab - 1);
      ids.push_back(static_cast<engine::Token>(id));
    }
    return ids;
  };
  if (input->is_string()) {
    texts.push_back(input->get<std::string>());
  } else if (input->is_array()) {
    if (input->empty()) bad_request("input", "'input' must not be empty");
    if (input->size() > 2048) bad_request("input", "at most 2048 inputs per request");
    if ((*input)[0].is_number_integer()) {
      token_inputs.push_back(token_list(*input));
    } else {
      for (const auto& x : *input) {
        if (x.is_array()) {
          if (!texts.empty()) bad_request("input", "mix of text and token-id inputs; send one kind");
          token_inputs.push_back(token_list(x));
          continue;
        }
        if (!x.is_string()) bad_type("input", "a string, an array of strings, or token ids", x);
        if (!token_inputs.empty()) bad_request("input", "mix of text and token-id inputs; send one kind");
        texts.push_back(x.get<std::string>());
      }
    }
  } else {
    bad_type("input", "a string, an array of strings, or token ids", *input);
  }
  std::string format = "float";
  if (const json* f = field(body, "encoding_format")) {
    if (!f->is_string()) bad_type("encoding_format", "a string", *f);
    format = f->get<std::string>();
    if (format != "float" && format != "base64")
      bad_request("encoding_format", "encoding_format must be 'float' or 'base64' (got '{}')", format);
  }
  if (const json* d = field(body, "dimensions")) {
    if (!d->is_number_integer()) bad_type("dimensions", "an integer", *d);
    // Shortening is only sound for models trained for it (Matryoshka representation learning);
    // a GGUF file does not say whether its model was, so other sizes are refused.
    if (d->get<int64_t>() != m.embedder->dim())
      bad_request("dimensions",
                  "this model's embeddings have {} dimensions and cannot be shortened to {}: only models trained "
                  "for it (Matryoshka) keep their meaning when cut, and this file does not say it was",
                  m.embedder->dim(), d->get<int64_t>());
  }
  std::vector<std::vector<float>> vectors;
  std::vector<int> counts;
  {
    std::lock_guard lock(m.embed_mutex);
    if (token_inputs.empty()) {
      counts = m.embedder->count_tokens(texts);
    } else {
      for (const auto& t : token_inputs) counts.push_back(static_cast<int>(t.size()));
    }
    for (size_t i = 0; i < counts.size(); ++i)
      if (counts[i] > m.embedder->max_tokens())
        throw ApiError(400, "context_length_exceeded", "input",
                       fmt::format("input {} has {} tokens; this model's maximum is {}", i, counts[i], m.embedder->max_tokens()));
    vectors = token_inputs.empty() ? m.embedder->embed(texts) : m.embedder->embed_tokens(token_inputs);
  }
  json data = json::array();
  int total = 0;
  for (size_t i = 0; i < vectors.size(); ++i) {
    json item = {{"object", "embedding"}, {"index", i}};
    if (format == "base64")
      item["embedding"] = base64(vectors[i].data(), vectors[i].size() * sizeof(float));  // little-endian float32
    else
      item["embedding"] = vectors[i];
    data.push_back(std::move(item));
    total += counts[i];
  }
  {
    std::lock_guard lock(m.metrics.mutex);
    m.metrics.prompt_tokens += static_cast<uint64_t>(total);
  }
  note_tokens(static_cast<int>(total), 0);
  send_json(res, {{"object", "list"},
                  {"data", data},
                  {"model", service.embedding_model_id()},
                  {"usage", {{"prompt_tokens", total}, {"total_tokens", total}}}});
}

json model_object(const std::string& id, int64_t created, const json& licence = nullptr) {
  json o = {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "etna"}};
  if (!licence.is_null()) o["licence"] = licence;  // Etna's extra field: what the licence allows
  return o;
}

// The licence record of a served model id (null when unknown to the service).
json licence_of(OpenAIService& s, const std::string& id) {
  if (id == s.model_id() && !s.impl().model_licence.is_null()) return s.impl().model_licence;
  if (id == s.embedding_model_id()) return s.impl().embedding_licence;
  return nullptr;
}

std::string metrics_text(OpenAIService& service) {
  auto& m = service.impl();
  engine::SchedulerStats s;
  if (service.ready() && m.scheduler) s = m.scheduler->stats();
  std::string out;
  std::lock_guard lock(m.metrics.mutex);
  out += "# HELP etna_requests_total HTTP requests to the OpenAI-compatible API by endpoint and status.\n";
  out += "# TYPE etna_requests_total counter\n";
  for (const auto& [key, n] : m.metrics.requests)
    out += fmt::format("etna_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out += fmt::format("# HELP etna_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE etna_prompt_tokens_total counter\n"
                     "etna_prompt_tokens_total {}\n", m.metrics.prompt_tokens);
  out += fmt::format("# HELP etna_generated_tokens_total Tokens generated for finished requests.\n# TYPE etna_generated_tokens_total counter\n"
                     "etna_generated_tokens_total {}\n", m.metrics.generated_tokens);
  out += fmt::format("# HELP etna_prompt_tokens_cached_total Prompt tokens reused from the KV cache.\n# TYPE etna_prompt_tokens_cached_total counter\n"
                     "etna_prompt_tokens_cached_total {}\n", s.cached_prompt_tokens);
  out += fmt::format("# HELP etna_queue_depth Requests waiting for a sequence slot.\n# TYPE etna_queue_depth gauge\netna_queue_depth {}\n", s.queued);
  out += fmt::format("# HELP etna_active_sequences Requests being generated.\n# TYPE etna_active_sequences gauge\netna_active_sequences {}\n", s.active);
  out += fmt::format("# HELP etna_forward_steps_total Batched forward passes.\n# TYPE etna_forward_steps_total counter\netna_forward_steps_total {}\n", s.steps);
  m.metrics.ttft.write(out, "etna_time_to_first_token_seconds", "Time from request to its first generated token.");
  m.metrics.token_latency.write(out, "etna_token_latency_seconds", "Time between generated tokens of a request.");
  return out;
}

// Runs a handler, turning every failure into OpenAI's error body, and counts the request.
template <typename F>
HttpServer::Handler instrumented(HttpServer& server, OpenAIService& service, std::string endpoint, F fn) {
  return [&server, &service, endpoint = std::move(endpoint), fn](const httplib::Request& req, httplib::Response& res) {
    auto send = [&](int status, const std::string& msg, const std::string& code = "", const std::string& param = "") {
      if (status >= 500) log::warn("openai: {} {} -> {}: {}", req.method, req.path, status, msg);
      send_json(res, openai_error_body(status, msg, code, param), status);
    };
    try {
      fn(service, req, res);
    } catch (const ApiError& e) {
      send(e.status(), e.what(), e.code(), e.param());
      if (e.status() == 503) res.set_header("Retry-After", "1");
    } catch (const engine::QueueFullError& e) {
      send(429, e.what());
      res.set_header("Retry-After", "1");
    } catch (const Error& e) {
      int status = http_status_for(e);
      if (e.kind() == ErrorKind::limit) status = 400;  // a request too large for the model, not the body limit
      send(status, e.what(), e.kind() == ErrorKind::limit ? "context_length_exceeded" : "");
    } catch (const json::exception& e) {
      std::string what = e.what();
      auto pos = what.find("] ");
      send(400, "invalid request body: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
    } catch (const std::bad_alloc&) {
      send(503, "out of memory while handling the request");
    } catch (const std::exception& e) {
      send(500, std::string("internal error: ") + e.what());
    }
    (void)server;
    service.impl().metrics.request(endpoint, res.status);
  };
}

}  // namespace

void register_openai_routes(HttpServer& server, OpenAIService& service) {
  server.set_error_format("/v1/", [](int status, const std::string& message) { return openai_error_body(status, message); });
  server.add_public_path("/health");

  server.route(Method::post, "/v1/chat/completions", instrumented(server, service, "/v1/chat/completions", handle_chat));
  server.route(Method::post, "/v1/completions", instrumented(server, service, "/v1/completions", handle_completion));
  server.route(Method::post, "/v1/embeddings", instrumented(server, service, "/v1/embeddings", handle_embeddings));
  server.route(Method::get, "/v1/models",
               instrumented(server, service, "/v1/models", [](OpenAIService& s, const httplib::Request&, httplib::Response& res) {
                 json data = json::array();
                 if (!s.model_id().empty()) data.push_back(model_object(s.model_id(), s.impl().created, licence_of(s, s.model_id())));
                 if (!s.embedding_model_id().empty() && s.embedding_model_id() != s.model_id())
                   data.push_back(model_object(s.embedding_model_id(), s.impl().created, licence_of(s, s.embedding_model_id())));
                 send_json(res, {{"object", "list"}, {"data", data}});
               }));
  server.route(Method::get, R"(/v1/models/([^/]+))",
               instrumented(server, service, "/v1/models/{id}", [](OpenAIService& s, const httplib::Request& req, httplib::Response& res) {
                 const std::string id = req.matches[1];
                 if (id.empty() || (id != s.model_id() && id != s.embedding_model_id()))
                   throw ApiError(404, "model_not_found", "model", fmt::format("the model '{}' does not exist", id));
                 send_json(res, model_object(id, s.impl().created, licence_of(s, id)));
               }));
  server.route(Method::get, "/health", [&service](const httplib::Request&, httplib::Response& res) {
    if (service.ready())
      send_json(res, {{"status", "ok"}});
    else
      send_json(res, {{"status", "loading"}}, 503);
  });
  server.route(Method::get, "/metrics", [&service](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(service), "text/plain; version=0.0.4");
  });
}

void register_no_model_routes(HttpServer& server) {
  server.set_error_format("/v1/", [](int status, const std::string& message) { return openai_error_body(status, message); });
  server.add_public_path("/health");
  server.route(Method::get, "/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"status", "ok"}});
  });
  server.route(Method::get, "/v1/models", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"object", "list"}, {"data", json::array()}});
  });
  auto none = [](const httplib::Request&, httplib::Response& res) {
    send_json(res, openai_error_body(404, "this server has no models (it was started with --no-model)", "model_not_found", "model"), 404);
  };
  server.route(Method::get, R"(/v1/models/([^/]+))", none);
  for (const char* p : {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}) server.route(Method::post, p, none);
}

}  // namespace etna::server
