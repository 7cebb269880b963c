// OpenAI-compatible inference API over Etna's engine, shaped so the official OpenAI clients work
// unmodified: POST /v1/chat/completions, /v1/completions (both with server-sent-event streaming),
// /v1/embeddings, GET /v1/models[/{id}], plus GET /health and GET /metrics (Prometheus text).
// Generation runs on a continuous-batching engine::Scheduler; errors use OpenAI's body
// {"error": {"message", "type", "param", "code"}}.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "etna/engine/embedder.h"
#include "etna/engine/scheduler.h"
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
