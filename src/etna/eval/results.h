// The leaderboard: every evaluation result kept in an SQLite database in the data folder
// (<data>/eval/results.sqlite), one row per metric, so runs can be listed, sorted and plotted
// later. Several processes may add results at once (WAL mode, busy timeout).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;

namespace etna::eval {

struct ResultRow {
  int64_t id = 0;          // assigned by add()
  int64_t run = 0;         // rows of one evaluation share a run id (assigned by add_run())
  std::string model;       // file name stem, or library name
  std::string model_sha256;  // of the model file, "" when not computed
  std::string quantisation;  // e.g. "Q4_0", from the file type
  uint64_t file_bytes = 0;
  std::string task;        // "perplexity", "kl", "hellaswag", "choice", "rag"
  std::string dataset;     // the text or task file's name
  std::string settings;    // JSON of the options that change the figure (n_ctx, limit, mode, ...)
  std::string metric;      // "ppl", "acc_norm", "hit@5", ...
  double value = 0;
  double error = 0;        // standard error (0 when none)
  std::string date;        // ISO 8601 UTC, set by add_run() when empty
};

class ResultStore {
 public:
  // Opens or creates the database (and its folder). Throws etna::Error (io, corrupt) naming it.
  static std::unique_ptr<ResultStore> open(const std::filesystem::path& db_path);
  ~ResultStore();
  ResultStore(const ResultStore&) = delete;
  ResultStore& operator=(const ResultStore&) = delete;

  // Adds the rows of one evaluation in one transaction under a new run id; returns that id.
  int64_t add_run(std::vector<ResultRow> rows);

  // Every row, newest run first (ties by row id); `task` filters when not empty.
  std::vector<ResultRow> list(const std::string& task = "") const;

 private:
  explicit ResultStore(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Where the leaderboard lives under a data folder.
std::filesystem::path results_path(const std::filesystem::path& data_dir);

}  // namespace etna::eval
