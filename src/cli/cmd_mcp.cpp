// `etna mcp`: the Model Context Protocol server over stdio (one JSON-RPC message per line), for
// desktop assistants and agents that launch their MCP servers as child processes. Exposes the
// document collections of the data directory (see server/mcp_server.h); with -m the ask tool
// answers from them with that model, with --embedding-model search is hybrid. Logs go to stderr.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/server/docs_api.h"
#include "etna/server/mcp_server.h"
#include "etna/server/openai_api.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;

struct McpArgs {
  std::string data, model, embedding_model;
  int ctx = 0;
  rag::VectorStoreOptions vector_store;
};

void run(const McpArgs& a) {
  for (const auto& path : {a.model, a.embedding_model})
    if (!path.empty() && !fs::exists(path)) fail(ErrorKind::not_found, "model file {} does not exist", path);
  const fs::path data = data_dir(a.data);
  std::unique_ptr<server::OpenAIService> models;
  if (!a.model.empty() || !a.embedding_model.empty()) {
    server::OpenAIOptions oo;
    oo.model_path = a.model;
    oo.embedding_model_path = a.embedding_model;
    oo.n_parallel = 1;
    oo.n_ctx = a.ctx;
    models = std::make_unique<server::OpenAIService>(oo);
    models->load();  // before the first message, so every answer sees the same models
  }
  server::DocsOptions docs_opt;
  docs_opt.data_dir = data;
  docs_opt.vector_store = a.vector_store;
  if (!a.vector_store.url.empty()) rag::normalise_store_url(a.vector_store.url);  // a bad URL fails now
  if (!a.embedding_model.empty()) docs_opt.embedding_model_path = fs::absolute(a.embedding_model).lexically_normal().string();
  server::DocsService docs(docs_opt, models.get());
  server::McpServer mcp(docs, ETNA_VERSION);
  std::ios::sync_with_stdio(false);
  server::serve_mcp_stdio(mcp, std::cin, std::cout);
}

CommandRegistrar reg(35, [](CLI::App& root) {
  auto args = std::make_shared<McpArgs>();
  auto* c = root.add_subcommand("mcp", "Serve the document collections to MCP clients over stdio (Model Context Protocol)");
  c->add_option("--data", args->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_option("-m,--model", args->model, "GGUF chat model for the ask tool");
  c->add_option("--embedding-model", args->embedding_model, "GGUF embedding model for hybrid search");
  c->add_option("--ctx", args->ctx, "Context of the ask tool's model in tokens (default: min(the model's, 4096))");
  add_vector_store_options(c, args->vector_store);
  c->callback([args] {
    finish_vector_store_options(args->vector_store);
    run(*args);
  });
});

}  // namespace
}  // namespace etna::cli
