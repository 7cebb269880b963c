#include "etna/server/models_api.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/hub/library.h"
#include "etna/hub/pull.h"

namespace etna::server {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string job_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) s += hex[rng() & 15];
  return s;
}

struct PullJob {
  std::string id, ref, name;
  std::string state = "running";  // running | done | failed | cancelled
  hub::PullProgress progress;
  std::string error, model;       // model: the library name once done
  std::atomic<bool> cancel{false};
};

bool same_file(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  std::error_code ec;
  return fs::weakly_canonical(fs::absolute(a), ec) == fs::weakly_canonical(fs::absolute(b), ec);
}

}  // namespace

struct ModelsService::Impl {
  ModelsOptions opt;
  hub::Library library;
  std::mutex mu;
  std::condition_variable done_cv;
  std::map<std::string, std::shared_ptr<PullJob>> jobs;
  std::deque<std::string> finished;
  std::vector<std::thread> workers;

  explicit Impl(ModelsOptions o) : opt(std::move(o)), library(opt.data_dir / "models") {}

  // REQUIRES: mu held.
  json job_json(const PullJob& j) const {
    return {{"job", j.id},
            {"ref", j.ref},
            {"state", j.state},
            {"file", j.progress.file},
            {"file_done", j.progress.file_done},
            {"file_total", j.progress.file_total},
            {"done", j.progress.done},
            {"total", j.progress.total},
            {"bytes_per_second", j.progress.bytes_per_second},
            {"model", j.model.empty() ? json(nullptr) : json(j.model)},
            {"error", j.error.empty() ? json(nullptr) : json(j.error)}};
  }

  json model_json(const hub::Manifest& m) const {
    json j = m.to_json();
    j["served"] = same_file(m.main_path(), opt.served_model_path) || same_file(m.main_path(), opt.served_embedding_path);
    return j;
  }

  std::shared_ptr<PullJob> start(const std::string& ref, const std::string& name) {
    auto job = std::make_shared<PullJob>();
    job->id = job_id();
    job->ref = ref;
    job->name = name;
    std::lock_guard l(mu);
    for (const auto& [id, j] : jobs)
      if (j->state == "running" && j->ref == ref)
        fail(ErrorKind::conflict, "{} is already being pulled (job {})", ref, id);
    jobs[job->id] = job;
    workers.emplace_back([this, job] { run(job); });
    return job;
  }

  void run(const std::shared_ptr<PullJob>& job) {
    hub::PullOptions po;
    po.endpoint = opt.hub_endpoint;
    po.name = job->name;
    po.cancel = &job->cancel;
    po.progress = [this, job](const hub::PullProgress& p) {
      std::lock_guard l(mu);
      job->progress = p;
    };
    std::string error, model;
    bool cancelled = false;
    try {
      model = hub::pull(library, job->ref, po).name;
    } catch (const std::exception& e) {
      error = e.what();
      cancelled = job->cancel.load();
    }
    std::lock_guard l(mu);
    job->model = model;
    job->error = error;
    job->state = !error.empty() ? (cancelled ? "cancelled" : "failed") : "done";
    if (!error.empty() && !cancelled) log::warn("models: pull of {} failed: {}", job->ref, error);
    finished.push_back(job->id);
    while (finished.size() > opt.max_jobs_kept) {
      jobs.erase(finished.front());
      finished.pop_front();
    }
    done_cv.notify_all();
  }
};

ModelsService::ModelsService(ModelsOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

ModelsService::~ModelsService() {
  {
    std::lock_guard l(impl_->mu);
    for (auto& [id, j] : impl_->jobs) j->cancel = true;
  }
  for (auto& t : impl_->workers)
    if (t.joinable()) t.join();
}

void register_models_routes(HttpServer& server, ModelsService& service) {
  auto& m = service.impl();
  server.route(Method::get, "/api/models", [&m](const httplib::Request&, httplib::Response& res) {
    json arr = json::array();
    for (const auto& man : m.library.list()) arr.push_back(m.model_json(man));
    json served = m.opt.served_model_path.empty() ? json(nullptr) : json(fs::path(m.opt.served_model_path).stem().string());
    send_json(res, {{"models", arr}, {"served", served}, {"library", m.library.root().string()}});
  });
  server.route(Method::get, R"(/api/models/([^/]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto man = m.library.find(name);
    if (!man) fail(ErrorKind::not_found, "no model named '{}' in the library", name);
    send_json(res, m.model_json(*man));
  });
  server.route(Method::del, R"(/api/models/([^/]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto man = m.library.find(name);
    if (!man) fail(ErrorKind::not_found, "no model named '{}' in the library", name);
    if (m.model_json(*man)["served"].get<bool>())
      fail(ErrorKind::conflict, "'{}' is the model this server runs; stop the server to remove it", name);
    m.library.remove(name);
    send_json(res, {{"deleted", name}});
  });
  server.route(Method::post, "/api/models/pull", [&m](const httplib::Request& req, httplib::Response& res) {
    const json body = parse_json_body(req);
    if (!body.is_object() || !body.contains("model") || !body["model"].is_string())
      fail(ErrorKind::invalid_argument, "'model' (OWNER/REPO[:QUANT|:FILE] or a URL) is required");
    std::string name;
    if (body.contains("name") && !body["name"].is_null()) {
      if (!body["name"].is_string() || !hub::valid_model_name(body["name"].get<std::string>()))
        fail(ErrorKind::invalid_argument, "'name' must use letters, digits, '.', '_' and '-'");
      name = body["name"].get<std::string>();
    }
    if (m.opt.offline) fail(ErrorKind::unavailable, "this server is offline: it does not pull models");
    const std::string ref = body["model"].get<std::string>();
    hub::parse_pull_ref(ref);  // 400 now rather than a failed job
    auto job = m.start(ref, name);
    send_json(res, {{"job", job->id}}, 202);
  });
  server.route(Method::get, R"(/api/pulls/([0-9a-f]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard l(m.mu);
    auto it = m.jobs.find(req.matches[1]);
    if (it == m.jobs.end()) fail(ErrorKind::not_found, "no pull job {}", req.matches[1].str());
    send_json(res, m.job_json(*it->second));
  });
  server.route(Method::del, R"(/api/pulls/([0-9a-f]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    std::unique_lock l(m.mu);
    auto it = m.jobs.find(req.matches[1]);
    if (it == m.jobs.end()) fail(ErrorKind::not_found, "no pull job {}", req.matches[1].str());
    auto job = it->second;
    job->cancel = true;
    m.done_cv.wait(l, [&] { return job->state != "running"; });
    send_json(res, m.job_json(*job));
  });
}

}  // namespace etna::server
