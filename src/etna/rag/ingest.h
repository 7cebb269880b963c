// Ingestion: walk files and folders, load, chunk, record in the collection's catalog and, when an
// embedding model is given, embed the chunks into the collection's vector store. Incremental:
// unchanged files (same size and mtime, or same content hash) are not reprocessed, changed files
// have their chunks replaced, and files gone from an ingested folder lose their chunks.
// Layout: <data>/documents/<collection>/catalog.db (SQLite) and .../vectors/ (etna::store), or the
// vectors in an external Qdrant collection (IngestOptions::vector_store; see vector_backend.h).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "etna/rag/chunker.h"
#include "etna/rag/vector_backend.h"

namespace etna::engine {
class Embedder;
}

namespace etna::rag {

// <data_dir>/documents/<name>. Throws invalid_argument on a bad name (allowed: 1..128 of
// [A-Za-z0-9_.-], not starting with '.').
std::filesystem::path collection_dir(const std::filesystem::path& data_dir, const std::string& name);

// Name of the vector-store collection inside <collection_dir>/vectors holding chunk vectors.
inline constexpr const char* kVectorCollection = "chunks";

// Chunk sizes: a collection records the sizes its chunks were cut with (catalog meta
// "chunking", "TOKENS/OVERLAP") and all its chunks share them. When the caller did not choose
// sizes (chunk_explicit false), an existing collection keeps its recorded ones. With an embedding
// model, chunks must fit its window (max_tokens() - 4 tokens): sizes the caller chose that do not
// fit are refused (invalid_argument naming the limit); default or recorded ones are lowered to
// the limit, said in the report. When the sizes differ from the recorded ones, every file of the
// collection is chunked again (and re-embedded), so no chunk is cut short at embedding time.
struct IngestOptions {
  ChunkOptions chunk;
  bool chunk_explicit = false;
  uint64_t max_file_bytes = 64ull << 20;
  const engine::Embedder* embedder = nullptr;  // null: BM25 only (chunks are left to embed later)
  std::string embedder_path;                    // recorded so `search` can find the model again
  size_t embed_batch = 16;
  // Where the vectors go (default: where the catalogue says they are; new collections: built-in).
  // A store other than the recorded one gets every chunk embedded again (needs the embedder).
  VectorStoreOptions vector_store;
  // When non-empty, a file is read only when its real path (symbolic links resolved) lies under
  // one of these canonical folders; others are skipped ("outside the allowed folders").
  std::vector<std::filesystem::path> confine_to;
};

struct IngestProgress {
  size_t files_done = 0, files_total = 0;
  uint64_t chunks = 0;  // chunks written so far in this run
  double seconds = 0;
  std::string current;  // file being processed
};

struct SkippedFile {
  std::string path;
  std::string reason;
};

struct IngestReport {
  size_t files_seen = 0, files_new = 0, files_updated = 0, files_unchanged = 0, files_deleted = 0;
  uint64_t chunks_added = 0, chunks_removed = 0, chunks_embedded = 0;
  uint64_t bytes_processed = 0;
  std::vector<SkippedFile> skipped;
  double seconds = 0;
  ChunkOptions chunk;          // the sizes used (and recorded)
  bool chunk_lowered = false;  // lowered to fit the embedding model
  bool rechunked = false;      // every file was chunked again with new sizes
};

// Ingests `paths` (files or folders, walked recursively; hidden entries skipped) into the
// collection at `dir` (created when needed). Bad files are reported through on_skip and the
// report, never thrown; errors of the catalog or store themselves throw etna::Error.
IngestReport ingest(const std::filesystem::path& dir, const std::vector<std::filesystem::path>& paths,
                    const IngestOptions& options, const std::function<void(const IngestProgress&)>& on_progress = {},
                    const std::function<void(const SkippedFile&)>& on_skip = {});

}  // namespace etna::rag
