// The per-collection catalog: an SQLite database (WAL mode) of ingested files (size, mtime,
// content hash) and their chunks (text and source positions), so re-ingestion only touches new or
// changed files and deleted files lose their chunks. Chunk ids are the vector store's point ids.
// One Catalog object is not thread-safe; several processes may open the same file (readers
// do not block the writer).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "etna/rag/chunker.h"

struct sqlite3;

namespace etna::rag {

struct FileRecord {
  std::string path;  // absolute, lexically normal
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string hash;  // hex of a 64-bit FNV-1a of the content
  std::string format;
  int64_t chunks = 0;
};

struct ChunkRow {
  int64_t id = 0;
  std::string file;
  int seq = 0;  // position within the file
  int page = 0;
  int line_start = 0, line_end = 0;
  uint64_t byte_start = 0, byte_end = 0;
  std::string heading;
  std::string text;
};

class Catalog {
 public:
  // Opens or creates the catalog. Throws io / corrupt naming the file on failure.
  static std::unique_ptr<Catalog> open(const std::filesystem::path& db_path);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  std::optional<FileRecord> file(const std::string& path) const;
  std::vector<FileRecord> files() const;
  // Atomically replaces the file's record and chunks. `removed` receives the ids of the chunks
  // it had before; returns the ids of the new chunks (in order).
  std::vector<int64_t> replace_file(const FileRecord& rec, const std::vector<Chunk>& chunks,
                                    std::vector<int64_t>* removed);
  // Updates size and mtime only (content unchanged).
  void touch_file(const std::string& path, uint64_t size, int64_t mtime_ns);
  // Forgets the file; returns the ids of its chunks.
  std::vector<int64_t> remove_file(const std::string& path);

  int64_t chunk_count() const;
  std::vector<ChunkRow> chunks(const std::vector<int64_t>& ids) const;  // in the order asked, missing skipped
  void for_each_chunk(const std::function<void(int64_t id, const std::string& text)>& fn) const;
  // Up to `limit` chunks without a vector in the store (embedded = 0), by id.
  std::vector<ChunkRow> unembedded(size_t limit) const;
  void mark_embedded(const std::vector<int64_t>& ids);
  void reset_embedded();  // every chunk needs a new vector (the embedding model changed)

  std::optional<std::string> meta(const std::string& key) const;
  void set_meta(const std::string& key, const std::string& value);

 private:
  explicit Catalog(sqlite3* db, std::filesystem::path path);
  void exec(const char* sql);
  std::vector<int64_t> chunk_ids_of(const std::string& path) const;
  sqlite3* db_;
  std::filesystem::path path_;
};

// 16 hex digits of the 64-bit FNV-1a hash of `bytes`.
std::string content_hash(std::string_view bytes);

}  // namespace etna::rag
