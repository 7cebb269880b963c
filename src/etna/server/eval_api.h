// The web app's evaluation routes: the leaderboard and evaluation runs on the served chat model.
//   GET  /api/eval/results[?task=T]  -> {"results": [rows of eval::ResultStore, newest first]}
//   POST /api/eval/runs {"task": "perplexity" | "hellaswag", "text", "name"?, "ctx"?, "chunks"?, "limit"?}
//        -> 202 {"id", "status": "running"}; 409 while another run is going
//   GET  /api/eval/runs/{id} -> {"id", "task", "status": running | done | failed, "done", "total",
//        "ppl"? (running estimate), "result"? (the command's JSON), "error"?}
// A run is `etna eval ...` in a child process (the model file is read again, so serving goes on
// undisturbed); its result lands in the leaderboard like a run from the command line.
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "etna/server/http_server.h"

namespace etna::server {

struct EvalApiOptions {
  std::filesystem::path data_dir;   // the leaderboard is <data_dir>/eval/results.sqlite
  std::string model_path;           // the served chat model ("" = runs are refused with 503)
  std::string etna_binary = "/proc/self/exe";
};

class EvalRuns;  // the child processes; stopped and reaped when the service goes

class EvalService {
 public:
  explicit EvalService(EvalApiOptions options);
  ~EvalService();
  EvalService(const EvalService&) = delete;
  EvalService& operator=(const EvalService&) = delete;
  EvalRuns& runs() { return *runs_; }
  const EvalApiOptions& options() const { return options_; }

 private:
  EvalApiOptions options_;
  std::unique_ptr<EvalRuns> runs_;
};

// REQUIRES: `service` outlives the server.
void register_eval_routes(HttpServer& server, EvalService& service);

}  // namespace etna::server
