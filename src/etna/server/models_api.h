// The model library over HTTP, behind the web app's Models page: GET /api/models (the library
// with licence records; which model the server runs), GET/DELETE /api/models/{name}, and pulls
// from a hub as background jobs with progress: POST /api/models/pull {"model": "OWNER/REPO:QUANT"
// or a URL, "name"?} -> 202 {"job"}, GET /api/pulls/{job}, DELETE /api/pulls/{job} (cancels; the
// partial file stays, so pulling again resumes). Documented in docs/api.md.
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "etna/server/http_server.h"

namespace etna::server {

struct ModelsOptions {
  std::filesystem::path data_dir;  // the library is <data_dir>/models
  std::string served_model_path;   // the chat model this server runs ("" = none); cannot be deleted
  std::string served_embedding_path;
  std::string hub_endpoint;        // "" = $HF_ENDPOINT or https://huggingface.co
  bool offline = false;            // pulls answer 503
  size_t max_jobs_kept = 100;
};

class ModelsService {
 public:
  explicit ModelsService(ModelsOptions options);
  // Cancels running pulls (their partial files stay) and waits for them.
  ~ModelsService();
  ModelsService(const ModelsService&) = delete;
  ModelsService& operator=(const ModelsService&) = delete;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Registers /api/models... and /api/pulls/... on `server`. `models` must outlive the server.
void register_models_routes(HttpServer& server, ModelsService& models);

}  // namespace etna::server
