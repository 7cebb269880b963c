#include "etna/eval/results.h"

#include <chrono>
#include <ctime>

#include <sqlite3.h>

#include "etna/base/error.h"

namespace etna::eval {

namespace {

// One prepared statement, finalised on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      fail(ErrorKind::internal, "results database: {}", sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(st_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  void text(int i, const std::string& s) { sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void integer(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
  void real(int i, double v) { sqlite3_bind_double(st_, i, v); }
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(ErrorKind::io, "results database: {}", sqlite3_errmsg(db_));
  }
  std::string col_text(int i) const {
    const unsigned char* p = sqlite3_column_text(st_, i);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  int64_t col_int(int i) const { return sqlite3_column_int64(st_, i); }
  double col_real(int i) const { return sqlite3_column_double(st_, i); }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    fail(ErrorKind::io, "results database: {}", msg);
  }
}

std::string now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::filesystem::path results_path(const std::filesystem::path& data_dir) { return data_dir / "eval" / "results.sqlite"; }

std::unique_ptr<ResultStore> ResultStore::open(const std::filesystem::path& db_path) {
  std::error_code ec;
  std::filesystem::create_directories(db_path.parent_path(), ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", db_path.parent_path().string(), ec.message());
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail(ErrorKind::io, "cannot open the results database {}: {}", db_path.string(), msg);
  }
  std::unique_ptr<ResultStore> s(new ResultStore(db));
  sqlite3_busy_timeout(db, 10000);
  try {
    exec(db, "PRAGMA journal_mode=WAL");
    exec(db,
         "CREATE TABLE IF NOT EXISTS results ("
         " id INTEGER PRIMARY KEY, run INTEGER NOT NULL, model TEXT NOT NULL, model_sha256 TEXT NOT NULL,"
         " quantisation TEXT NOT NULL, file_bytes INTEGER NOT NULL, task TEXT NOT NULL, dataset TEXT NOT NULL,"
         " settings TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, error REAL NOT NULL, date TEXT NOT NULL);"
         "CREATE INDEX IF NOT EXISTS results_task ON results(task, run);");
  } catch (const Error& e) {
    fail(ErrorKind::corrupt, "{} is not a usable results database ({})", db_path.string(), e.what());
  }
  return s;
}

ResultStore::~ResultStore() { sqlite3_close(db_); }

int64_t ResultStore::add_run(std::vector<ResultRow> rows) {
  exec(db_, "BEGIN IMMEDIATE");
  try {
    int64_t run = 1;
    {
      Statement q(db_, "SELECT COALESCE(MAX(run), 0) + 1 FROM results");
      if (q.step()) run = q.col_int(0);
    }
    const std::string date = now_iso();
    Statement ins(db_,
                  "INSERT INTO results(run, model, model_sha256, quantisation, file_bytes, task, dataset, settings,"
                  " metric, value, error, date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    for (ResultRow& r : rows) {
      r.run = run;
      if (r.date.empty()) r.date = date;
      ins.integer(1, run);
      ins.text(2, r.model);
      ins.text(3, r.model_sha256);
      ins.text(4, r.quantisation);
      ins.integer(5, static_cast<int64_t>(r.file_bytes));
      ins.text(6, r.task);
      ins.text(7, r.dataset);
      ins.text(8, r.settings);
      ins.text(9, r.metric);
      ins.real(10, r.value);
      ins.real(11, r.error);
      ins.text(12, r.date);
      ins.step();
      ins.reset();
    }
    exec(db_, "COMMIT");
    return run;
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<ResultRow> ResultStore::list(const std::string& task) const {
  Statement q(db_,
              "SELECT id, run, model, model_sha256, quantisation, file_bytes, task, dataset, settings, metric, value,"
              " error, date FROM results WHERE (?1 = '' OR task = ?1) ORDER BY run DESC, id");
  q.text(1, task);
  std::vector<ResultRow> out;
  while (q.step()) {
    ResultRow r;
    r.id = q.col_int(0);
    r.run = q.col_int(1);
    r.model = q.col_text(2);
    r.model_sha256 = q.col_text(3);
    r.quantisation = q.col_text(4);
    r.file_bytes = static_cast<uint64_t>(q.col_int(5));
    r.task = q.col_text(6);
    r.dataset = q.col_text(7);
    r.settings = q.col_text(8);
    r.metric = q.col_text(9);
    r.value = q.col_real(10);
    r.error = q.col_real(11);
    r.date = q.col_text(12);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace etna::eval
