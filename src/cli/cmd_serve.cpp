// `etna serve`: one HTTP server for every API: the OpenAI-compatible inference API (/v1/...,
// with -m / --embedding-model), the Qdrant-compatible vector store, and the documents API
// (/api/collections..., retrieval-augmented answers).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "cli/data_dir.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/tensor/tensor.h"
#include "etna/base/log.h"
#include "etna/model/kv_type.h"
#include "etna/server/docs_api.h"
#include "etna/server/http_server.h"
#include "etna/server/access_log.h"
#include "etna/server/anthropic_api.h"
#include "etna/server/mcp_server.h"
#include "etna/server/models_api.h"
#include "etna/server/ollama_api.h"
#include "etna/server/openai_api.h"
#include "etna/server/eval_api.h"
#include "etna/server/qdrant_api.h"
#include "etna/server/rerank_api.h"
#include "etna/server/responses_api.h"
#include "etna/server/web_app.h"
#include "etna/store/database.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;

struct ServeArgs {
  std::string model;
  std::string embedding_model;
  std::string reranker;
  bool no_model = false;
  int parallel = 4;
  std::string cache_type = "f32";
  int ctx = 0;
  int queue = -1;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string data;
  std::vector<std::string> api_keys;
  std::vector<std::string> cors;
  std::vector<std::string> allowed_hosts;
  double max_body_mb = 32;
  int threads = 0;          // HTTP workers (--http-threads)
  int compute_threads = 0;  // matrix kernels (--threads)
  bool quiet = false;
  int timeout_s = 30;
  std::vector<std::string> allow_ingest;
  int ollama_port = -1;
  rag::VectorStoreOptions vector_store;
};

void serve(const ServeArgs& a) {
  // Before any thread exists, so that only the server's waiter receives SIGINT/SIGTERM.
  server::HttpServer::block_shutdown_signals();

  if ((!a.model.empty() || !a.embedding_model.empty()) && a.no_model)
    fail(ErrorKind::invalid_argument, "--no-model and -m/--model (--embedding-model) contradict each other");
  if (a.parallel < 1 || a.parallel > 256) fail(ErrorKind::invalid_argument, "--parallel must be in 1..256, got {}", a.parallel);
  if (a.ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive, got {}", a.ctx);
  for (const auto& path : {a.model, a.embedding_model})
    if (!path.empty() && !fs::exists(path)) fail(ErrorKind::not_found, "model file {} does not exist", path);
  const bool inference = !a.model.empty() || !a.embedding_model.empty();
  const int queue = a.queue >= 0 ? a.queue : 4 * a.parallel;
  if (a.max_body_mb <= 0 || a.max_body_mb > 4096)
    fail(ErrorKind::invalid_argument, "--max-body-mb must be in (0, 4096], got {}", a.max_body_mb);
  if (a.timeout_s <= 0) fail(ErrorKind::invalid_argument, "--timeout must be positive");
  for (const auto& k : a.api_keys)
    if (k.empty()) fail(ErrorKind::invalid_argument, "--api-key must not be empty");

  fs::path data = data_dir(a.data);
  std::error_code ec;
  fs::create_directories(data, ec);
  if (ec) fail(ErrorKind::io, "cannot create the data directory {}: {}", data.string(), ec.message());

  server::ServerOptions opt;
  opt.host = a.host;
  opt.port = a.port;
  // Every streamed or waiting request holds an HTTP worker, so there must be more workers than
  // running plus queued requests: otherwise excess requests wait unseen instead of getting 429.
  // A browser opening the web app keeps up to 6 keep-alive connections, each holding a worker.
  opt.threads = inference ? std::max(a.threads, a.parallel + queue + 8) : (a.threads > 0 ? a.threads : 16);
  opt.max_body_bytes = static_cast<std::size_t>(a.max_body_mb * 1024.0 * 1024.0);
  opt.read_timeout = std::chrono::seconds(a.timeout_s);
  opt.write_timeout = std::chrono::seconds(a.timeout_s);
  opt.api_keys = a.api_keys;
  if (opt.api_keys.empty()) {
    if (const char* env_key = std::getenv("ETNA_API_KEY"); env_key && *env_key) opt.api_keys.push_back(env_key);
  }
  opt.cors_origins = a.cors;
  opt.allowed_hosts = a.allowed_hosts;
  opt.version = ETNA_VERSION;
  server::set_access_log(!a.quiet);
  if (a.compute_threads < 0) fail(ErrorKind::invalid_argument, "--threads cannot be negative");
  tensor::set_num_threads(a.compute_threads);  // 0: physical cores

  auto db = store::Database::open(data / "vectors");
  server::HttpServer http(opt);
  server::register_qdrant_routes(http, *db);

  std::unique_ptr<server::OpenAIService> openai;
  if (inference) {
    server::OpenAIOptions oo;
    oo.model_path = a.model;
    oo.embedding_model_path = a.embedding_model;
    oo.n_parallel = a.parallel;
    oo.cache_type = model::parse_kv_type(a.cache_type);
    oo.n_ctx = a.ctx;
    oo.queue_capacity = queue;
    // The library's record (it also read the model card) for /v1/models' licence field.
    const auto lib = model_library(a.data);
    if (!a.model.empty())
      if (auto m = lib.find_by_path(a.model)) oo.model_licence = m->licence.to_json();
    if (!a.embedding_model.empty())
      if (auto m = lib.find_by_path(a.embedding_model)) oo.embedding_model_licence = m->licence.to_json();
    openai = std::make_unique<server::OpenAIService>(oo);
    server::register_openai_routes(http, *openai);
    server::register_anthropic_routes(http, *openai);
    server::register_responses_routes(http, *openai);
  } else {
    server::register_no_model_routes(http);
  }
  server::register_web_routes(http, {.data_dir = data, .openai = openai.get()});
  std::unique_ptr<engine::Reranker> reranker;
  if (!a.reranker.empty()) {
    reranker = engine::Reranker::load(a.reranker);
    server::register_rerank_routes(http, *reranker);
  }
  server::DocsOptions docs_opt;
  docs_opt.data_dir = data;
  docs_opt.vector_store = a.vector_store;
  if (!a.vector_store.url.empty()) rag::normalise_store_url(a.vector_store.url);  // a bad URL fails now
  docs_opt.reranker = reranker.get();  // a rerank stage in the documents API's search and ask
  for (const auto& d : a.allow_ingest) docs_opt.allowed_ingest_dirs.emplace_back(d);
  if (!a.embedding_model.empty()) docs_opt.embedding_model_path = fs::absolute(a.embedding_model).lexically_normal().string();
  server::DocsService docs(docs_opt, openai.get());
  server::register_docs_routes(http, docs);
  server::ModelsOptions models_opt;
  models_opt.data_dir = data;
  models_opt.served_model_path = a.model;
  models_opt.served_embedding_path = a.embedding_model;
  for (const char* k : {"ETNA_OFFLINE", "HF_HUB_OFFLINE"})
    if (const char* v = std::getenv(k); v && *v && std::string(v) != "0") models_opt.offline = true;
  server::ModelsService models(models_opt);
  server::register_models_routes(http, models);
  server::EvalService evals({.data_dir = data, .model_path = a.model.empty() ? "" : fs::absolute(a.model).string()});
  server::register_eval_routes(http, evals);
  server::register_ollama_routes(http, openai.get(), ETNA_VERSION);
  server::McpServer mcp(docs, ETNA_VERSION);
  server::register_mcp_routes(http, mcp, openai.get());
  // Optionally the Ollama API alone where Ollama clients look by default (same keys and limits).
  std::unique_ptr<server::HttpServer> ollama_http;
  std::thread ollama_thread;
  if (a.ollama_port >= 0) {
    server::ServerOptions oo = opt;
    oo.port = a.ollama_port;
    ollama_http = std::make_unique<server::HttpServer>(oo);
    server::register_ollama_routes(*ollama_http, openai.get(), ETNA_VERSION, /*root=*/true);
  }

  if (opt.api_keys.empty() && a.host != "127.0.0.1" && a.host != "localhost" && a.host != "::1")
    std::cerr << "etna: warning: listening on " << a.host << " without --api-key: anyone who can reach it can use it\n";

  http.bind();
  std::cout << "etna: listening on " << http.url() << std::endl;
  if (ollama_http) {
    ollama_http->bind();
    std::cout << "etna: Ollama API also at " << ollama_http->url() << "/api" << std::endl;
    ollama_thread = std::thread([&] { ollama_http->listen(); });
  }
  std::cout << "etna: vector store (Qdrant API) at " << http.url() << "/collections, data in " << (data / "vectors").string()
            << std::endl;
  std::cout << "etna: web app at " << http.url() << "/" << (opt.api_keys.empty() ? "" : " (it asks for the API key)") << std::endl;
  std::cout << "etna: documents API at " << http.url() << "/api/collections, data in " << (data / "documents").string()
            << std::endl;
  // Models load while the server already answers (/health says "loading", /v1 routes 503).
  std::string load_error;
  std::thread loader;
  if (openai) {
    loader = std::thread([&] {
      try {
        openai->load();
        std::cout << "etna: OpenAI-compatible API at " << http.url() << "/v1 (model " << openai->model_id()
                  << (openai->embedding_model_id().empty() ? "" : ", embeddings " + openai->embedding_model_id())
                  << ", " << a.parallel << " parallel sequences of " << openai->n_ctx() << " tokens)" << std::endl;
      } catch (const std::exception& e) {
        load_error = e.what();
        http.stop();
      }
    });
  }
  http.run_until_signal();
  if (ollama_http) {
    ollama_http->stop();
    ollama_thread.join();
  }
  if (loader.joinable()) loader.join();
  if (!load_error.empty()) fail(ErrorKind::invalid_argument, "{}", load_error);
  std::cout << "etna: stopped" << std::endl;
}

CommandRegistrar reg(30, [](CLI::App& root) {
  auto args = std::make_shared<ServeArgs>();
  auto* c = root.add_subcommand("serve", "Run the HTTP server: OpenAI-compatible API (with -m) and Qdrant-compatible vector store");
  add_model_option(c, args->model, "GGUF model to serve through the OpenAI-compatible API");
  add_extra_model_option(c, "--embedding-model", args->embedding_model, "GGUF embedding model for /v1/embeddings");
  c->add_option("--reranker", args->reranker, "GGUF cross-encoder for POST /v1/rerank and a rerank stage in document search and ask");
  c->add_flag("--no-model", args->no_model, "Serve the vector store only");
  c->add_option("--parallel", args->parallel, "Sequences generated together (continuous batching)")->capture_default_str();
  c->add_option("--cache-type", args->cache_type, "KV cache type: f32, f16 (half the memory) or q8_0")->capture_default_str();
  c->add_option("--ctx", args->ctx, "Context per sequence in tokens (default: min(the model's, 4096))");
  c->add_option("--queue", args->queue, "Requests that may wait for a sequence slot before 429 (default 4 x --parallel)");
  c->add_option("--host", args->host, "Address to listen on")->capture_default_str();
  c->add_option("--port", args->port, "Port to listen on (0 = any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  c->add_option("--data", args->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_option("--api-key", args->api_keys,
                "Require this key ('Authorization: Bearer KEY' or 'api-key: KEY'); repeatable; default $ETNA_API_KEY");
  c->add_option("--cors", args->cors, "Allow browser requests from this origin (repeatable, '*' for any)");
  c->add_option("--allowed-host", args->allowed_hosts,
                "Host name clients may use besides localhost and IP addresses (repeatable, '*' for any; DNS-rebinding guard)");
  c->add_option("--max-body-mb", args->max_body_mb, "Largest accepted request body in MiB")->capture_default_str();
  c->add_option("-t,--threads", args->compute_threads, "Threads for the model's computation (0 = physical cores)")
      ->capture_default_str();
  c->add_option("--http-threads", args->threads, "HTTP worker threads (0 = automatic)")->capture_default_str();
  c->add_flag("-q,--quiet", args->quiet, "No access log line per request on stderr");
  c->add_option("--allow-ingest", args->allow_ingest,
                "Let POST /api/collections/NAME/ingest read this server folder (repeatable)");
  c->add_option("--ollama-port", args->ollama_port,
                "Also serve the Ollama API (/api/chat, ...) on this port, e.g. 11434 where Ollama clients look")
      ->check(CLI::Range(0, 65535));
  c->add_option("--timeout", args->timeout_s, "Seconds to wait for a slow client before dropping it")->capture_default_str();
  add_vector_store_options(c, args->vector_store);
  c->callback([args] {
    finish_vector_store_options(args->vector_store);
    serve(*args);
  });
});

}  // namespace
}  // namespace etna::cli
