// Etna's documents API (/api/collections..., /api/jobs/...): document collections for
// retrieval-augmented answers (the rag layer's <data>/documents/<name>/, not Qdrant collections).
// Create, list and delete collections; upload files (multipart) or ingest a server-side folder the
// operator allowed, as background jobs with progress; list and delete files; search (hybrid when an
// embedding model is loaded); ask with cited sources, streamed as server-sent events. The contract
// is notes/docs-api.md; the user documentation is docs/api.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/engine/reranker.h"
#include "etna/rag/chunker.h"
#include "etna/rag/vector_backend.h"
#include "etna/server/http_server.h"

namespace etna::server {

class OpenAIService;

struct DocsOptions {
  std::filesystem::path data_dir;  // collections live in <data_dir>/documents/<name>
  // Server folders POST /api/collections/{name}/ingest may read (canonical paths under one of
  // these); empty = that route answers 403.
  std::vector<std::filesystem::path> allowed_ingest_dirs;
  std::string embedding_model_path;  // recorded in collections embedded with the server's model
  uint64_t max_file_bytes = 64ull << 20;
  rag::ChunkOptions chunk;
  size_t max_jobs_kept = 200;  // finished jobs remembered for GET /api/jobs/{id}
  // Cross-encoder for a rerank stage in search and ask (the best 50 fused hits reranked, then k
  // kept); null: none. Must outlive the service.
  const engine::Reranker* reranker = nullptr;
  // Where collections keep their vectors (serve --vector-store): url "" = where each catalogue
  // says (the built-in store unless ingested elsewhere).
  rag::VectorStoreOptions vector_store;
};

class DocsService {
 public:
  // `models` (may be null) provides the chat model for ask (503 without one) and the embedding
  // model for ingestion and hybrid search; it must outlive the service. Throws invalid_argument
  // when an allowed ingest folder does not exist.
  DocsService(DocsOptions options, OpenAIService* models);
  // Stops running ingestion jobs (between files) and waits for them.
  ~DocsService();
  DocsService(const DocsService&) = delete;
  DocsService& operator=(const DocsService&) = delete;

  // ---- The documents layer for other front ends (the MCP server); failures throw etna::Error ----
  // [{"name", "files", "chunks", "embedding_model"}] sorted by name.
  nlohmann::json collections();
  // [{"path", "name", "size", "format", "chunks", "mtime"}] of one collection (not_found).
  nlohmann::json files(const std::string& collection);
  // {"hybrid", "hits": [source]} as POST .../search answers; k in 1..100.
  nlohmann::json search(const std::string& collection, const std::string& query, int k);
  // One chunk as a source (as GET .../chunks/{id}); not_found when the collection has none.
  nlohmann::json passage(const std::string& collection, int64_t chunk_id);
  // A cited answer as POST .../ask with stream false answers ({"answer", "citations", ...,
  // "retrieved"}). Throws unavailable without a chat model.
  nlohmann::json ask(const std::string& collection, const std::string& question, int k, int max_tokens);
  // The extracted text of one ingested file (its "path" in files()), read again from disk.
  std::string file_text(const std::string& collection, const std::string& path);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Registers the /api/collections and /api/jobs routes on `server` (before start). `docs` must
// outlive the server.
void register_docs_routes(HttpServer& server, DocsService& docs);

// A safe stored name for an uploaded file name: directories are stripped ("a/b.txt" -> "b.txt");
// throws invalid_argument for a name with a ".." component, control characters, invalid UTF-8, a
// leading '.', an empty result or more than 255 bytes.
std::string safe_upload_name(const std::string& filename);

}  // namespace etna::server
