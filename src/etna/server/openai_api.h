// OpenAI-compatible inference API over Etna's engine, shaped so the official OpenAI clients work
// unmodified: POST /v1/chat/completions, /v1/completions (both with server-sent-event streaming),
// /v1/embeddings, GET /v1/models[/{id}], plus GET /health and GET /metrics (Prometheus text).
// Generation runs on a continuous-batching engine::Scheduler; errors use OpenAI's body
// {"error": {"message", "type", "param", "code"}}.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/engine/embedder.h"
#include "etna/engine/scheduler.h"
#include "etna/engine/tool_calls.h"
#include "etna/model/model.h"
#include "etna/server/http_server.h"
#include "etna/tokenizer/chat_template.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::server {

struct OpenAIOptions {
  std::string model_path;            // chat/completions model ("" = none)
  std::string embedding_model_path;  // /v1/embeddings model ("" = none)
  int n_parallel = 4;
  int n_ctx = 0;                     // per sequence; 0 = min(the model's training context, 4096)
  int queue_capacity = 16;
  int step_tokens = 256;
  model::KvType cache_type = model::KvType::f32;  // KV cache rows of every slot: f32, f16 or q8_0
  // Licence records (hub::LicenceRecord JSON) shown as the extra "licence" field of /v1/models;
  // null: read from the GGUF's general.license* keys at load.
  nlohmann::json model_licence, embedding_model_licence;
};

class OpenAIService {
 public:
  explicit OpenAIService(OpenAIOptions options);
  ~OpenAIService();

  // Loads the models (slow) and starts the scheduler; until then /v1 routes answer 503 and
  // /health {"status":"loading"}. Throws etna::Error naming the file when a model cannot load.
  void load();
  bool ready() const { return ready_; }

  // Model ids are file stems ("stories260K" for .../stories260K.gguf); "" when not configured.
  const std::string& model_id() const { return model_id_; }
  const std::string& embedding_model_id() const { return embedding_id_; }
  int n_ctx() const { return n_ctx_; }
  const OpenAIOptions& options() const { return options_; }

  // Read-only figures for status pages (zeros before load() or without a chat model).
  struct Stats {
    int active = 0, queued = 0;                 // sequences generating / waiting for a slot
    uint64_t requests = 0, prompt_tokens = 0, generated_tokens = 0;
    double decode_tokens_per_second = 0;        // 1 / mean time between generated tokens
    double mean_time_to_first_token = 0;        // seconds
    uint64_t weight_bytes = 0, kv_bytes = 0;    // model tensors; KV cache of every slot
  };
  Stats stats();

  // ---- For other APIs sharing the loaded models (the documents API's ask and ingestion) ----
  bool has_chat_model() const { return !options_.model_path.empty(); }
  // The chat model's own template, null when it has none (then prompts are plain text).
  // REQUIRES ready() and a chat model.
  const tokenizer::ChatTemplate* own_chat_template() const;
  // Tokens of a prompt: templated text with special tokens parsed and BOS added unless the text
  // starts with it (as chat requests do); plain text as a completion prompt. REQUIRES as above.
  std::vector<tokenizer::Token> encode_prompt(const std::string& text, bool templated) const;
  // Generates from `prompt` on the scheduler, batched with the /v1 requests. on_text gets each new
  // piece of text, and "" about every 250 ms while nothing arrives (so a caller can notice a
  // client that left); returning false cancels (finish = cancelled). Returns the whole text and
  // the final counts. Throws Error(unavailable) while loading or without a chat model, (limit)
  // when the prompt does not fit the context, QueueFullError when the queue is full.
  engine::GenerationEvent generate(std::vector<tokenizer::Token> prompt, const engine::SamplingParams& params,
                                   const std::function<bool(const std::string& piece)>& on_text);
  // The same for a whole request (json_object, logprobs). The returned event's `tokens` holds
  // every generated token (for Ollama's `context`).
  engine::GenerationEvent generate(engine::GenerationRequest request,
                                   const std::function<bool(const std::string& piece)>& on_text);
  // `messages` rendered with the model's chat template (ChatML when it has none) and encoded as
  // /v1/chat/completions does. Throws the template's invalid_argument. REQUIRES ready() and a chat model.
  std::vector<tokenizer::Token> chat_prompt(const std::vector<tokenizer::ChatMessage>& messages) const;
  // The chat model's tool-call format (engine/tool_calls.h). REQUIRES ready() and a chat model.
  engine::ToolFormat tool_format() const;
  // As chat_prompt for a conversation in OpenAI's message shape (roles system, user, assistant
  // with optional tool_calls [{id, type, function: {name, arguments}}], tool with tool_call_id)
  // and `tools` (OpenAI's array, validated; empty = none), exactly as /v1/chat/completions
  // renders it: through engine::tool_template_context when tools or calls appear.
  std::vector<tokenizer::Token> tool_chat_prompt(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const;
  // The loaded chat model and its tokenizer; null before load() or without one.
  const model::Model* chat_model() const;
  const tokenizer::Tokenizer* chat_tokenizer() const;
  // Counts a request of another API (Ollama, Anthropic, Responses, MCP) in /metrics'
  // etna_requests_total{endpoint, status}.
  void count_request(const std::string& endpoint, int status);
  // The embedding model behind the lock /v1/embeddings uses (callable from any thread); null
  // without one or before load().
  const engine::Embedder* shared_embedder() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  OpenAIOptions options_;
  std::string model_id_, embedding_id_;
  int n_ctx_ = 0;
  std::atomic<bool> ready_{false};
  std::unique_ptr<Impl> impl_;
};

// Registers the routes on `server` (before start). `service` must outlive the server. /health is
// public; everything else follows the server's API-key setting.
void register_openai_routes(HttpServer& server, OpenAIService& service);

// OpenAI's error body: {"error": {"message", "type", "param", "code"}} (type and code derived
// from the status when not given).
nlohmann::json openai_error_body(int status, const std::string& message, const std::string& code = "",
                                 const std::string& param = "");

}  // namespace etna::server
