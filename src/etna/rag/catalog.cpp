#include "etna/rag/catalog.h"

#include <sqlite3.h>

#include <fmt/format.h>

#include "etna/base/error.h"

namespace etna::rag {
namespace {

// A prepared statement; throws on errors with the database's message.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      fail(ErrorKind::internal, "catalog: cannot prepare '{}': {}", sql, sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(st_, i, v)); }
  Stmt& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  // True while a row is available.
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(ErrorKind::io, "catalog: {}", sqlite3_errmsg(db_));
  }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, c));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, c))) : std::string();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) fail(ErrorKind::internal, "catalog: bind failed: {}", sqlite3_errmsg(db_));
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

constexpr const char* kChunkCols =
    "id, file, seq, page, line_start, line_end, byte_start, byte_end, heading, text";

ChunkRow read_chunk(const Stmt& s) {
  ChunkRow r;
  r.id = s.i64(0);
  r.file = s.text(1);
  r.seq = static_cast<int>(s.i64(2));
  r.page = static_cast<int>(s.i64(3));
  r.line_start = static_cast<int>(s.i64(4));
  r.line_end = static_cast<int>(s.i64(5));
  r.byte_start = static_cast<uint64_t>(s.i64(6));
  r.byte_end = static_cast<uint64_t>(s.i64(7));
  r.heading = s.text(8);
  r.text = s.text(9);
  return r;
}

FileRecord read_file(const Stmt& s) {
  FileRecord f;
  f.path = s.text(0);
  f.size = static_cast<uint64_t>(s.i64(1));
  f.mtime_ns = s.i64(2);
  f.hash = s.text(3);
  f.format = s.text(4);
  f.chunks = s.i64(5);
  return f;
}

}  // namespace

std::string content_hash(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

std::unique_ptr<Catalog> Catalog::open(const std::filesystem::path& db_path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail(ErrorKind::io, "cannot open the catalog {}: {}", db_path.string(), msg);
  }
  sqlite3_busy_timeout(db, 10000);
  std::unique_ptr<Catalog> c(new Catalog(db, db_path));
  try {
    c->exec("PRAGMA journal_mode=WAL");
    c->exec("PRAGMA synchronous=NORMAL");
    c->exec("PRAGMA foreign_keys=ON");
    c->exec(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT "
        "NULL, hash TEXT NOT NULL, format TEXT NOT NULL, chunks INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL "
        "REFERENCES files(path) ON DELETE CASCADE, seq INTEGER NOT NULL, page INTEGER NOT NULL, line_start "
        "INTEGER NOT NULL, line_end INTEGER NOT NULL, byte_start INTEGER NOT NULL, byte_end INTEGER NOT NULL, "
        "heading TEXT NOT NULL, text TEXT NOT NULL, embedded INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file);"
        "CREATE INDEX IF NOT EXISTS chunks_unembedded ON chunks(embedded) WHERE embedded = 0;");
  } catch (const Error& e) {
    fail(ErrorKind::corrupt, "{} is not a usable catalog: {}", db_path.string(), e.what());
  }
  return c;
}

Catalog::Catalog(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
Catalog::~Catalog() { sqlite3_close(db_); }

void Catalog::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail(ErrorKind::io, "catalog {}: {}", path_.string(), msg);
  }
}

std::optional<FileRecord> Catalog::file(const std::string& path) const {
  Stmt s(db_, "SELECT path, size, mtime_ns, hash, format, chunks FROM files WHERE path = ?");
  s.bind(1, path);
  if (!s.step()) return std::nullopt;
  return read_file(s);
}

std::vector<FileRecord> Catalog::files() const {
  Stmt s(db_, "SELECT path, size, mtime_ns, hash, format, chunks FROM files ORDER BY path");
  std::vector<FileRecord> out;
  while (s.step()) out.push_back(read_file(s));
  return out;
}

std::vector<int64_t> Catalog::chunk_ids_of(const std::string& path) const {
  Stmt s(db_, "SELECT id FROM chunks WHERE file = ? ORDER BY seq");
  s.bind(1, path);
  std::vector<int64_t> ids;
  while (s.step()) ids.push_back(s.i64(0));
  return ids;
}

std::vector<int64_t> Catalog::replace_file(const FileRecord& rec, const std::vector<Chunk>& chunks,
                                           std::vector<int64_t>* removed) {
  exec("BEGIN IMMEDIATE");
  try {
    std::vector<int64_t> old = chunk_ids_of(rec.path);
    {
      Stmt d(db_, "DELETE FROM chunks WHERE file = ?");
      d.bind(1, rec.path);
      d.step();
    }
    Stmt f(db_,
           "INSERT INTO files (path, size, mtime_ns, hash, format, chunks) VALUES (?, ?, ?, ?, ?, ?) "
           "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash, "
           "format=excluded.format, chunks=excluded.chunks");
    f.bind(1, rec.path).bind(2, static_cast<int64_t>(rec.size)).bind(3, rec.mtime_ns).bind(4, rec.hash);
    f.bind(5, rec.format).bind(6, static_cast<int64_t>(chunks.size()));
    f.step();
    Stmt ins(db_,
             "INSERT INTO chunks (file, seq, page, line_start, line_end, byte_start, byte_end, heading, text) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    std::vector<int64_t> ids;
    ids.reserve(chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      const Chunk& c = chunks[i];
      ins.reset();
      ins.bind(1, rec.path).bind(2, static_cast<int64_t>(i)).bind(3, c.page).bind(4, c.line_start);
      ins.bind(5, c.line_end).bind(6, static_cast<int64_t>(c.byte_start)).bind(7, static_cast<int64_t>(c.byte_end));
      ins.bind(8, c.heading).bind(9, c.text);
      ins.step();
      ids.push_back(sqlite3_last_insert_rowid(db_));
    }
    exec("COMMIT");
    if (removed) *removed = std::move(old);
    return ids;
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void Catalog::touch_file(const std::string& path, uint64_t size, int64_t mtime_ns) {
  Stmt s(db_, "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?");
  s.bind(1, static_cast<int64_t>(size)).bind(2, mtime_ns).bind(3, path);
  s.step();
}

std::vector<int64_t> Catalog::remove_file(const std::string& path) {
  exec("BEGIN IMMEDIATE");
  try {
    std::vector<int64_t> ids = chunk_ids_of(path);
    Stmt d(db_, "DELETE FROM chunks WHERE file = ?");
    d.bind(1, path);
    d.step();
    Stmt f(db_, "DELETE FROM files WHERE path = ?");
    f.bind(1, path);
    f.step();
    exec("COMMIT");
    return ids;
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

int64_t Catalog::chunk_count() const {
  Stmt s(db_, "SELECT COUNT(*) FROM chunks");
  s.step();
  return s.i64(0);
}

std::vector<ChunkRow> Catalog::chunks(const std::vector<int64_t>& ids) const {
  Stmt s(db_, fmt::format("SELECT {} FROM chunks WHERE id = ?", kChunkCols).c_str());
  std::vector<ChunkRow> out;
  for (int64_t id : ids) {
    s.reset();
    s.bind(1, id);
    if (s.step()) out.push_back(read_chunk(s));
  }
  return out;
}

void Catalog::for_each_chunk(const std::function<void(int64_t, const std::string&)>& fn) const {
  Stmt s(db_, "SELECT id, heading, text FROM chunks");
  while (s.step()) {
    const std::string heading = s.text(1);
    // The heading is indexed with every chunk of its section (later chunks do not repeat it).
    fn(s.i64(0), heading.empty() ? s.text(2) : heading + "\n" + s.text(2));
  }
}

std::vector<ChunkRow> Catalog::unembedded(size_t limit) const {
  Stmt s(db_, fmt::format("SELECT {} FROM chunks WHERE embedded = 0 ORDER BY id LIMIT ?", kChunkCols).c_str());
  s.bind(1, static_cast<int64_t>(limit));
  std::vector<ChunkRow> out;
  while (s.step()) out.push_back(read_chunk(s));
  return out;
}

void Catalog::mark_embedded(const std::vector<int64_t>& ids) {
  exec("BEGIN IMMEDIATE");
  try {
    Stmt s(db_, "UPDATE chunks SET embedded = 1 WHERE id = ?");
    for (int64_t id : ids) {
      s.reset();
      s.bind(1, id);
      s.step();
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void Catalog::reset_embedded() { exec("UPDATE chunks SET embedded = 0"); }

std::optional<std::string> Catalog::meta(const std::string& key) const {
  Stmt s(db_, "SELECT value FROM meta WHERE key = ?");
  s.bind(1, key);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

void Catalog::set_meta(const std::string& key, const std::string& value) {
  Stmt s(db_, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.bind(1, key).bind(2, value);
  s.step();
}

}  // namespace etna::rag
