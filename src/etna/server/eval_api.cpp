#include "etna/server/eval_api.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "etna/eval/results.h"

extern char** environ;

namespace etna::server {

using nlohmann::json;
namespace fs = std::filesystem;

struct Run {
  std::string id, task;
  std::string status = "running";
  int done = 0, total = 0;
  double ppl = 0;
  json result;
  std::string error;
  pid_t pid = -1;
};

class EvalRuns {
 public:
  explicit EvalRuns(const EvalApiOptions& o) : o_(o) {}
  ~EvalRuns() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (auto& [id, r] : runs_)
        if (r.pid > 0) ::kill(r.pid, SIGTERM);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  // Starts `etna eval <task> ... -f <text file>`; returns the run id.
  std::string start(const std::string& task, const std::string& name, const std::string& text,
                    const std::vector<std::string>& extra) {
    std::lock_guard lock(mu_);
    for (auto& [id, r] : runs_)
      if (r.status == "running") throw HttpError(409, ErrorKind::conflict, "an evaluation is already running (" + id + ")");
    const std::string id = fmt::format("eval-{}", ++next_);
    const fs::path dir = o_.data_dir / "eval" / "runs" / id;
    fs::create_directories(dir);
    const fs::path input = dir / name;  // the leaderboard names the dataset after the file
    std::ofstream(input, std::ios::binary) << text;
    std::vector<std::string> args = {o_.etna_binary, "eval", task, "-m", o_.model_path, "-f", input.string(),
                                     "--json", "--data", o_.data_dir.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) fail(ErrorKind::io, "cannot start the evaluation: pipe failed");
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]), ::close(out[1]);
      fail(ErrorKind::io, "cannot start the evaluation: pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) {
      ::close(out[0]), ::close(err[0]);
      fail(ErrorKind::io, "cannot start the evaluation: {}", std::strerror(rc));
    }
    Run& r = runs_[id];
    r.id = id;
    r.task = task;
    r.pid = pid;
    threads_.emplace_back([this, id, pid, o = out[0], e = err[0], input] { watch(id, pid, o, e, input); });
    return id;
  }

  json get(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = runs_.find(id);
    if (it == runs_.end()) fail(ErrorKind::not_found, "no evaluation run '{}'", id);
    const Run& r = it->second;
    json j = {{"id", r.id}, {"task", r.task}, {"status", r.status}, {"done", r.done}, {"total", r.total}};
    if (r.ppl > 0) j["ppl"] = r.ppl;
    if (!r.result.is_null()) j["result"] = r.result;
    if (!r.error.empty()) j["error"] = r.error;
    return j;
  }

 private:
  // Reads the child's progress lines ("[i/n] ...") from stderr and its JSON result from stdout.
  void watch(const std::string& id, pid_t pid, int out_fd, int err_fd, fs::path input) {
    std::string out, err_tail, line;
    std::thread reader([&] {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(out_fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    });
    char buf[4096];
    ssize_t n;
    while ((n = ::read(err_fd, buf, sizeof buf)) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != '\n' && buf[i] != '\r') {
          if (line.size() < 4096) line += buf[i];
          continue;
        }
        int done = 0, total = 0;
        double ppl = 0;
        if (std::sscanf(line.c_str(), "[%d/%d] PPL %lf", &done, &total, &ppl) >= 2 ||
            std::sscanf(line.c_str(), "[%d/%d]", &done, &total) == 2) {
          std::lock_guard lock(mu_);
          Run& r = runs_[id];
          r.done = done, r.total = total;
          if (ppl > 0) r.ppl = ppl;
        } else if (!line.empty()) {
          err_tail = line;  // the command's one-line error, if it fails
        }
        line.clear();
      }
    }
    if (!line.empty()) err_tail = line;
    reader.join();
    ::close(out_fd);
    ::close(err_fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::error_code ec;
    fs::remove_all(input.parent_path(), ec);
    std::lock_guard lock(mu_);
    Run& r = runs_[id];
    r.pid = -1;
    json result = json::parse(out, nullptr, false);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !result.is_discarded()) {
      r.status = "done";
      r.result = std::move(result);
      r.done = r.total;
    } else {
      r.status = "failed";
      const std::string prefix = "etna: error: ";
      if (err_tail.rfind(prefix, 0) == 0) err_tail = err_tail.substr(prefix.size());
      r.error = stopping_ ? "the server stopped" : err_tail.empty() ? "the evaluation failed" : err_tail;
    }
  }

  const EvalApiOptions& o_;
  std::mutex mu_;
  std::map<std::string, Run> runs_;
  std::vector<std::thread> threads_;
  int next_ = 0;
  bool stopping_ = false;
};

EvalService::EvalService(EvalApiOptions options)
    : options_(std::move(options)), runs_(std::make_unique<EvalRuns>(options_)) {}
EvalService::~EvalService() = default;

namespace {

json row_json(const eval::ResultRow& r) {
  return {{"run", r.run}, {"date", r.date}, {"model", r.model}, {"quantisation", r.quantisation},
          {"file_bytes", r.file_bytes}, {"task", r.task}, {"dataset", r.dataset},
          {"settings", json::parse(r.settings, nullptr, false)}, {"metric", r.metric}, {"value", r.value},
          {"error", r.error}};
}

int int_field(const json& body, const char* key, int fallback, int lo, int hi) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number_integer() || body[key].get<int64_t>() < lo || body[key].get<int64_t>() > hi)
    fail(ErrorKind::invalid_argument, "'{}' must be an integer from {} to {}", key, lo, hi);
  return body[key].get<int>();
}

}  // namespace

void register_eval_routes(HttpServer& server, EvalService& service) {
  server.route(Method::get, "/api/eval/results", [&service](const httplib::Request& req, httplib::Response& res) {
    const fs::path db = eval::results_path(service.options().data_dir);
    json rows = json::array();
    if (fs::exists(db))
      for (const auto& r : eval::ResultStore::open(db)->list(req.get_param_value("task"))) rows.push_back(row_json(r));
    send_json(res, {{"results", rows}});
  });
  server.route(Method::post, "/api/eval/runs", [&service](const httplib::Request& req, httplib::Response& res) {
    if (service.options().model_path.empty())
      throw HttpError(503, ErrorKind::unavailable, "this server has no chat model to evaluate (start it with -m MODEL)");
    const json body = parse_json_body(req);
    if (!body.is_object()) fail(ErrorKind::invalid_argument, "the body must be a JSON object");
    const std::string task = body.value("task", "perplexity");
    if (task != "perplexity" && task != "hellaswag")
      fail(ErrorKind::invalid_argument, "'task' must be \"perplexity\" or \"hellaswag\"");
    if (!body.contains("text") || !body["text"].is_string() || body["text"].get<std::string>().empty())
      fail(ErrorKind::invalid_argument, "'text' is required: the text to score (perplexity) or the task file (hellaswag)");
    std::vector<std::string> extra;
    if (task == "perplexity") {
      extra = {"-c", std::to_string(int_field(body, "ctx", 512, 4, 1 << 20))};
      if (int chunks = int_field(body, "chunks", 0, 0, 1 << 20)) extra.insert(extra.end(), {"--chunks", std::to_string(chunks)});
    } else {
      extra = {"-c", std::to_string(int_field(body, "ctx", 2048, 8, 1 << 20))};
      if (int limit = int_field(body, "limit", 0, 0, 1 << 20)) extra.insert(extra.end(), {"--limit", std::to_string(limit)});
    }
    // The dataset's name in the leaderboard: a file name of [A-Za-z0-9._-], not starting with '.'.
    std::string name = body.contains("name") && body["name"].is_string() ? body["name"].get<std::string>() : "";
    for (char& ch : name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ch = '_';
    if (name.empty() || name[0] == '.' || name.size() > 100) name = "text.txt";
    const std::string id = service.runs().start(task, name, body["text"].get<std::string>(), extra);
    send_json(res, {{"id", id}, {"status", "running"}}, 202);
  });
  server.route(Method::get, "/api/eval/runs/([A-Za-z0-9-]+)", [&service](const httplib::Request& req, httplib::Response& res) {
    send_json(res, service.runs().get(req.matches[1]));
  });
}

}  // namespace etna::server
