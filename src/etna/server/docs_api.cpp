#include "etna/server/docs_api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "etna/base/log.h"
#include "etna/engine/embedder.h"
#include "etna/rag/answer.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"
#include "etna/rag/loader.h"
#include "etna/rag/rerank.h"
#include "etna/rag/retriever.h"
#include "etna/server/openai_api.h"

namespace etna::server {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string random_hex(int n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) s += hex[rng() & 15];
  return s;
}

bool valid_utf8(std::string_view s) { return rag::sanitize_utf8(s) == s; }

// True when `p` is `root` or inside it (both lexically normal, absolute).
bool inside(const fs::path& p, const fs::path& root) {
  auto pi = p.begin();
  for (auto ri = root.begin(); ri != root.end(); ++ri, ++pi) {
    if (ri->empty()) continue;  // a trailing separator
    if (pi == p.end() || *pi != *ri) return false;
  }
  return true;
}

struct Job {
  std::string id, collection;
  std::string state = "running";  // running | done | failed
  rag::IngestProgress progress;
  std::optional<rag::IngestReport> report;
  std::string error;
  Clock::time_point start = Clock::now();
  double seconds = 0;
  json uploads;  // uploads only: [{"name": as sent, "stored": the name kept}]
};

// How API clients see a stored file's path: an uploaded file as "uploads/NAME" (relative to its
// collection), never the server's absolute path to the data folder. Files ingested from an
// --allow-ingest folder keep the absolute path the client gave.
std::string shown_path(const fs::path& documents, const std::string& stored) {
  const std::string root = documents.lexically_normal().string() + "/";
  if (stored.compare(0, root.size(), root) != 0) return stored;
  const std::string rest = stored.substr(root.size());  // COLLECTION/uploads/NAME
  const auto slash = rest.find('/');
  if (slash == std::string::npos || rest.compare(slash + 1, 8, "uploads/") != 0) return stored;
  return rest.substr(slash + 1);
}

// shown_path applied to every "file" and "path" string in `j`.
void show_paths(json& j, const fs::path& documents) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if ((it.key() == "file" || it.key() == "path" || it.key() == "current") && it->is_string())
        *it = shown_path(documents, it->get<std::string>());
      else
        show_paths(*it, documents);
    }
  } else if (j.is_array()) {
    for (auto& x : j) show_paths(x, documents);
  }
}

json report_json(const rag::IngestReport& r) {
  json skipped = json::array();
  for (const auto& s : r.skipped) skipped.push_back({{"path", rag::sanitize_utf8(s.path)}, {"reason", s.reason}});
  return {{"files_seen", r.files_seen},         {"files_new", r.files_new},
          {"files_updated", r.files_updated},   {"files_unchanged", r.files_unchanged},
          {"files_deleted", r.files_deleted},   {"chunks_added", r.chunks_added},
          {"chunks_removed", r.chunks_removed}, {"chunks_embedded", r.chunks_embedded},
          {"skipped", skipped},                 {"seconds", r.seconds}};
}

// REQUIRES: the jobs mutex held.
json job_json(const Job& j) {
  const double seconds =
      j.state == "running" ? std::chrono::duration<double>(Clock::now() - j.start).count() : j.seconds;
  return {{"job", j.id},
          {"collection", j.collection},
          {"state", j.state},
          {"files_done", j.progress.files_done},
          {"files_total", j.progress.files_total},
          {"chunks", j.progress.chunks},
          {"seconds", seconds},
          {"current", rag::sanitize_utf8(j.progress.current)},
          {"report", j.report ? report_json(*j.report) : json(nullptr)},
          {"error", j.error.empty() ? json(nullptr) : json(j.error)},
          {"uploads", j.uploads.is_array() ? j.uploads : json::array()}};
}

// Body field helpers: absent or null fields take the default.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string string_field(const json& body, const char* name, bool required) {
  const json* f = field(body, name);
  if (!f) {
    if (required) fail(ErrorKind::invalid_argument, "'{}' is required", name);
    return {};
  }
  if (!f->is_string()) fail(ErrorKind::invalid_argument, "'{}' must be a string", name);
  return f->get<std::string>();
}

double number_field(const json& body, const char* name, double def, double lo, double hi) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number()) fail(ErrorKind::invalid_argument, "'{}' must be a number", name);
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi)) fail(ErrorKind::invalid_argument, "'{}' must be between {} and {} (got {})", name, lo, hi, v);
  return v;
}

int int_field(const json& body, const char* name, int def, int lo, int hi) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number() || std::floor(f->get<double>()) != f->get<double>())
    fail(ErrorKind::invalid_argument, "'{}' must be an integer", name);
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi)) fail(ErrorKind::invalid_argument, "'{}' must be between {} and {} (got {})", name, lo, hi, v);
  return static_cast<int>(v);
}

bool bool_field(const json& body, const char* name, bool def) {
  const json* f = field(body, name);
  if (!f) return def;
  if (!f->is_boolean()) fail(ErrorKind::invalid_argument, "'{}' must be true or false", name);
  return f->get<bool>();
}

json object_body(const httplib::Request& req) {
  json body = parse_json_body(req, /*allow_empty=*/true);
  if (!body.is_object()) fail(ErrorKind::invalid_argument, "the request body must be a JSON object");
  return body;
}

bool wait_param(const httplib::Request& req) {
  const std::string w = req.get_param_value("wait");
  return w == "true" || w == "1";
}

std::string sse(const char* event, const json& data) { return fmt::format("event: {}\ndata: {}\n\n", event, dump(data)); }

}  // namespace

std::string safe_upload_name(const std::string& filename) {
  if (filename.size() > 4096) fail(ErrorKind::invalid_argument, "the file name is too long");
  if (!valid_utf8(filename)) fail(ErrorKind::invalid_argument, "the file name is not valid UTF-8");
  for (unsigned char c : filename)
    if (c < 0x20 || c == 0x7f) fail(ErrorKind::invalid_argument, "the file name contains control characters");
  // Components split on both separators (browsers on Windows may send "C:\dir\file.txt").
  std::string last;
  size_t start = 0;
  for (size_t i = 0; i <= filename.size(); ++i) {
    if (i == filename.size() || filename[i] == '/' || filename[i] == '\\') {
      const std::string part = filename.substr(start, i - start);
      if (part == "..") fail(ErrorKind::invalid_argument, "the file name '{}' tries to leave the upload folder", filename);
      last = part;
      start = i + 1;
    }
  }
  if (last.empty() || last == ".") fail(ErrorKind::invalid_argument, "the file name '{}' has no file part", filename);
  if (last[0] == '.') fail(ErrorKind::invalid_argument, "the file name '{}' starts with '.' (hidden files are not ingested)", last);
  if (last.size() > 255) fail(ErrorKind::invalid_argument, "the file name is longer than 255 bytes");
  return last;
}

struct DocsService::Impl {
  DocsOptions opt;
  OpenAIService* models = nullptr;
  std::vector<fs::path> allowed;  // canonical

  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  struct CachedRetriever {
    std::shared_ptr<rag::Retriever> retriever;
    std::shared_ptr<std::mutex> mutex;  // a Retriever's catalog connection is not thread-safe
    uint64_t generation = 0;
    const engine::Embedder* embedder = nullptr;
  };

  std::mutex mu;  // guards everything below
  std::condition_variable job_done;
  std::map<std::string, std::shared_ptr<Job>> jobs;
  std::deque<std::string> finished_jobs;
  std::map<std::string, std::shared_ptr<std::mutex>> collection_locks;  // held while a job writes
  std::map<std::string, int> running;                                    // unfinished jobs per collection
  std::map<std::string, uint64_t> generation;                            // bumped on every change
  std::map<std::string, CachedRetriever> retrievers;
  std::vector<Worker> workers;
  std::atomic<bool> stopping{false};

  fs::path documents() const { return opt.data_dir / "documents"; }

  // The collection's folder; throws not_found when it was never created (or ingested).
  fs::path existing(const std::string& name) const {
    const fs::path dir = rag::collection_dir(opt.data_dir, name);
    if (!fs::exists(dir / "catalog.db")) fail(ErrorKind::not_found, "collection '{}' not found", name);
    return dir;
  }

  std::shared_ptr<std::mutex> lock_of(const std::string& name) {
    std::lock_guard lock(mu);
    auto& l = collection_locks[name];
    if (!l) l = std::make_shared<std::mutex>();
    return l;
  }

  void changed(const std::string& name) {
    std::lock_guard lock(mu);
    ++generation[name];
    retrievers.erase(name);
  }

  const engine::Embedder* embedder() const {
    if (!models) return nullptr;
    return models->shared_embedder();
  }

  // Hits for `query`, hybrid when the loaded embedding model is the one the collection's vectors
  // were made with, else BM25.
  std::vector<rag::SearchHit> search(const std::string& name, const std::string& query, size_t k, bool* hybrid) {
    const fs::path dir = existing(name);
    const engine::Embedder* emb = embedder();
    CachedRetriever c;
    uint64_t gen = 0;
    {
      std::lock_guard lock(mu);
      gen = generation[name];
      auto it = retrievers.find(name);
      if (it != retrievers.end() && it->second.generation == gen && it->second.embedder == emb) c = it->second;
    }
    if (!c.retriever) {
      std::shared_ptr<rag::Retriever> r;
      if (emb) {
        try {
          rag::RetrieverOptions ro;
          ro.vector_store = opt.vector_store;
          r = rag::Retriever::open(dir, emb, ro);
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::invalid_argument) throw;
          log::warn("documents: {}; searching '{}' with BM25 alone", e.what(), name);
        }
      }
      if (!r) r = rag::Retriever::open(dir, nullptr);
      c = {std::move(r), std::make_shared<std::mutex>(), gen, emb};
      std::lock_guard lock(mu);
      if (generation[name] == gen) retrievers[name] = c;
    }
    const engine::Reranker* reranker = opt.reranker;
    std::vector<rag::SearchHit> hits;
    {
      std::lock_guard lock(*c.mutex);
      if (hybrid) *hybrid = c.retriever->hybrid();
      hits = c.retriever->search(query, reranker ? rag::rerank_candidates(k) : k);
    }
    // The rerank stage (serve --reranker): the best fused candidates scored by the cross-encoder.
    if (reranker) rag::rerank(hits, *reranker, query, k);
    return hits;
  }

  // Starts an ingestion job over `paths` and returns it.
  // `confine`: canonical folders every file's real path must lie in (empty for uploads).
  std::shared_ptr<Job> start_job(const std::string& name, const fs::path& dir, std::vector<fs::path> paths,
                                 std::vector<fs::path> confine = {}) {
    auto job = std::make_shared<Job>();
    job->id = random_hex(16);
    job->collection = name;
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(mu);
    if (stopping) fail(ErrorKind::unavailable, "the server is shutting down");
    // Join workers that have ended.
    for (auto it = workers.begin(); it != workers.end();) {
      if (*it->finished) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    jobs[job->id] = job;
    ++running[name];
    workers.push_back({std::thread([this, job, name, dir, paths = std::move(paths), confine = std::move(confine), finished] {
                         run_job(job, name, dir, paths, confine);
                         *finished = true;
                       }),
                       finished});
    return job;
  }

  void run_job(const std::shared_ptr<Job>& job, const std::string& name, const fs::path& dir,
               const std::vector<fs::path>& paths, const std::vector<fs::path>& confine) {
    rag::IngestReport report;
    std::string error;
    try {
      auto col = lock_of(name);
      std::lock_guard col_lock(*col);  // one job at a time per collection
      rag::IngestOptions io;
      io.chunk = opt.chunk;
      io.max_file_bytes = opt.max_file_bytes;
      io.confine_to = confine;
      io.vector_store = opt.vector_store;
      if (const engine::Embedder* emb = embedder()) {
        io.embedder = emb;
        io.embedder_path = opt.embedding_model_path;  // rag::ingest fits the chunks to it
      }
      changed(name);
      report = rag::ingest(dir, paths, io, [&](const rag::IngestProgress& p) {
        if (stopping) fail(ErrorKind::unavailable, "the server is shutting down");
        std::lock_guard lock(mu);
        job->progress = p;
      });
    } catch (const std::exception& e) {
      error = e.what();
    }
    changed(name);
    std::lock_guard lock(mu);
    job->seconds = std::chrono::duration<double>(Clock::now() - job->start).count();
    if (error.empty()) {
      job->state = "done";
      job->report = std::move(report);
      job->progress.files_done = job->progress.files_total;
    } else {
      job->state = "failed";
      job->error = error;
      log::warn("documents: ingestion job {} for '{}' failed: {}", job->id, name, error);
    }
    if (--running[name] == 0) running.erase(name);
    finished_jobs.push_back(job->id);
    while (finished_jobs.size() > opt.max_jobs_kept) {
      jobs.erase(finished_jobs.front());
      finished_jobs.pop_front();
    }
    job_done.notify_all();
  }

  // 202 {"job"} now, or with ?wait=true 200 and the finished job.
  void respond_job(const httplib::Request& req, httplib::Response& res, const std::shared_ptr<Job>& job) {
    if (!wait_param(req)) {
      send_json(res, {{"job", job->id}}, 202);
      return;
    }
    std::unique_lock lock(mu);
    job_done.wait(lock, [&] { return job->state != "running"; });
    json j = job_json(*job);
    show_paths(j, documents());
    send_json(res, j, 200);
  }
};

DocsService::DocsService(DocsOptions options, OpenAIService* models) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  impl_->models = models;
  for (const auto& d : impl_->opt.allowed_ingest_dirs) {
    std::error_code ec;
    const fs::path c = fs::canonical(d, ec);
    if (ec || !fs::is_directory(c)) fail(ErrorKind::invalid_argument, "--allow-ingest {}: not a folder", d.string());
    impl_->allowed.push_back(c);
  }
}

DocsService::~DocsService() {
  std::vector<Impl::Worker> workers;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    workers = std::move(impl_->workers);
  }
  for (auto& w : workers) w.thread.join();
}

namespace {

json list_collections(DocsService::Impl& m) {
  json out = json::array();
  std::error_code ec;
  std::vector<std::string> names;
  if (fs::is_directory(m.documents(), ec))
    for (const auto& e : fs::directory_iterator(m.documents(), ec))
      if (e.is_directory() && fs::exists(e.path() / "catalog.db")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    try {
      auto cat = rag::Catalog::open(m.documents() / name / "catalog.db");
      const auto model = cat->meta("embedding_model");
      out.push_back({{"name", name},
                     {"files", cat->files().size()},
                     {"chunks", cat->chunk_count()},
                     {"embedding_model", model && !model->empty() ? json(fs::path(*model).stem().string()) : json(nullptr)}});
    } catch (const Error& e) {
      log::warn("documents: cannot read collection '{}': {}", name, e.what());
    }
  }
  return out;
}

json file_json(const rag::FileRecord& f) {
  return {{"path", rag::sanitize_utf8(f.path)},
          {"name", rag::sanitize_utf8(fs::path(f.path).filename().string())},
          {"size", f.size},
          {"format", f.format},
          {"chunks", f.chunks},
          {"mtime", f.mtime_ns / 1000000000}};
}

void upload(DocsService::Impl& m, const httplib::Request& req, httplib::Response& res, const std::string& name) {
  const fs::path dir = m.existing(name);
  if (!req.is_multipart_form_data())
    fail(ErrorKind::invalid_argument, "upload files as multipart/form-data with parts named 'file'");
  std::vector<std::pair<std::string, const httplib::MultipartFormData*>> parts;
  for (const auto& [key, part] : req.files) {
    if (key != "file" && key != "files" && key != "file[]") continue;
    parts.emplace_back(safe_upload_name(part.filename), &part);  // validates every name first
  }
  if (parts.empty()) fail(ErrorKind::invalid_argument, "no file in the upload (multipart parts named 'file')");
  const fs::path uploads = dir / "uploads";
  std::error_code ec;
  fs::create_directories(uploads, ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", uploads.string(), ec.message());
  std::vector<fs::path> paths;
  json kept = json::array();
  for (const auto& [sent, part] : parts) {
    // A name that exists with other content is kept beside it as "name (2).ext" (never replaced
    // silently); the same content again is the same file. Written under a hidden temporary name,
    // then renamed: a reader never sees half a file.
    fs::path final_path = uploads / sent;
    for (int n = 2; fs::exists(final_path, ec); ++n) {
      if (fs::file_size(final_path, ec) == part->content.size()) {
        std::ifstream in(final_path, std::ios::binary);
        std::string have((std::istreambuf_iterator<char>(in)), {});
        if (have == part->content) break;
      }
      const fs::path base(sent);
      final_path = uploads / fmt::format("{} ({}){}", base.stem().string(), n, base.extension().string());
    }
    const fs::path tmp = uploads / ("." + random_hex(8) + ".part");
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f.write(part->content.data(), static_cast<std::streamsize>(part->content.size()));
      f.close();
      if (!f) {
        fs::remove(tmp, ec);
        fail(ErrorKind::io, "cannot write {}", final_path.string());
      }
    }
    fs::rename(tmp, final_path, ec);
    if (ec) {
      fs::remove(tmp, ec);
      fail(ErrorKind::io, "cannot store {}: {}", final_path.string(), ec.message());
    }
    kept.push_back({{"name", sent}, {"stored", final_path.filename().string()}});
    if (std::find(paths.begin(), paths.end(), final_path) == paths.end()) paths.push_back(final_path);
  }
  auto job = m.start_job(name, dir, std::move(paths));
  {
    std::lock_guard lock(m.mu);
    job->uploads = std::move(kept);
  }
  m.respond_job(req, res, job);
}

void ingest_folder(DocsService::Impl& m, const httplib::Request& req, httplib::Response& res, const std::string& name) {
  const fs::path dir = m.existing(name);
  const json body = object_body(req);
  const std::string path = string_field(body, "path", true);
  if (m.allowed.empty())
    throw HttpError(403, ErrorKind::invalid_argument,
                    "ingesting server folders is disabled: start the server with --allow-ingest DIR");
  // A NUL would cut the path short at the first system call: refused, not truncated.
  if (path.find('\0') != std::string::npos) fail(ErrorKind::invalid_argument, "'path' contains a NUL byte");
  if (path.empty() || fs::path(path).is_relative())
    fail(ErrorKind::invalid_argument, "'path' must be an absolute path on the server");
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(fs::path(path), ec);
  bool ok = !ec;
  if (ok) {
    ok = false;
    for (const auto& a : m.allowed) ok = ok || inside(canon, a);
  }
  if (!ok) throw HttpError(403, ErrorKind::invalid_argument, fmt::format("'{}' is not inside a folder the server allows (--allow-ingest)", path));
  if (!fs::exists(canon, ec)) fail(ErrorKind::not_found, "'{}' does not exist on the server", path);
  m.respond_job(req, res, m.start_job(name, dir, {canon}, m.allowed));
}

void delete_file(DocsService::Impl& m, const httplib::Request& req, httplib::Response& res, const std::string& name) {
  const fs::path dir = m.existing(name);
  if (!req.has_param("path")) fail(ErrorKind::invalid_argument, "give the file as ?path=... (its 'path' in the file list)");
  std::string path = req.get_param_value("path");
  if (path.compare(0, 8, "uploads/") == 0) {  // as the file list shows an uploaded file
    const fs::path p = (dir / path).lexically_normal();
    if (!inside(p, (dir / "uploads").lexically_normal())) fail(ErrorKind::invalid_argument, "invalid file path '{}'", path);
    path = p.string();
  }
  auto col = m.lock_of(name);
  std::unique_lock col_lock(*col, std::try_to_lock);
  if (!col_lock.owns_lock()) fail(ErrorKind::conflict, "collection '{}' is being ingested; retry when the job is done", name);
  auto cat = rag::Catalog::open(dir / "catalog.db");
  if (!cat->file(path)) fail(ErrorKind::not_found, "collection '{}' has no file '{}'", name, path);
  // The store the catalogue records, never another one named by --vector-store.
  auto vectors = rag::open_recorded_vector_backend(dir, *cat, m.opt.vector_store);
  rag::claim_vector_store(*vectors, *cat);
  const std::vector<int64_t> ids = cat->remove_file(path);
  vectors->remove(ids);
  // An uploaded file goes from disk too, or the next ingest of the folder would bring it back.
  const fs::path p = fs::path(path).lexically_normal();
  if (inside(p, (dir / "uploads").lexically_normal()) && p != (dir / "uploads").lexically_normal()) {
    std::error_code ec;
    fs::remove(p, ec);
  }
  col_lock.unlock();
  m.changed(name);
  send_json(res, {{"deleted", true}, {"chunks_removed", ids.size()}});
}

void delete_collection(DocsService::Impl& m, httplib::Response& res, const std::string& name) {
  const fs::path dir = m.existing(name);
  {
    std::lock_guard lock(m.mu);
    if (m.running.count(name)) fail(ErrorKind::conflict, "collection '{}' is being ingested; retry when the job is done", name);
  }
  auto col = m.lock_of(name);
  std::unique_lock col_lock(*col, std::try_to_lock);
  if (!col_lock.owns_lock()) fail(ErrorKind::conflict, "collection '{}' is busy; retry shortly", name);
  m.changed(name);
  {
    // Vectors kept in an external store go with it (when they are this catalogue's), before the
    // local files: a stale copy of the writer's catalogue (conflict) or an unreachable store
    // (unavailable) fails here and leaves everything as it was.
    auto cat = rag::Catalog::open(dir / "catalog.db");
    if (cat->meta("vector_store").value_or(rag::kBuiltinVectorStore) != rag::kBuiltinVectorStore) {
      auto vectors = rag::open_recorded_vector_backend(dir, *cat, m.opt.vector_store);
      rag::claim_vector_store(*vectors, *cat);
      vectors->drop(cat->meta("catalog_id").value_or(""));
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) fail(ErrorKind::io, "cannot delete {}: {}", dir.string(), ec.message());
  send_json(res, {{"deleted", true}});
}

struct AskRequest {
  std::string question;
  int k = 5;
  engine::SamplingParams params;
  bool stream = true;
};

// A prepared answer: the prompt's tokens and sources, and how to turn the generation into JSON.
struct PreparedAsk {
  std::shared_ptr<std::vector<tokenizer::Token>> tokens;
  json retrieved;
  bool hybrid = false;
  size_t dropped = 0;
  std::function<json(const engine::GenerationEvent&)> finish;
};

PreparedAsk prepare_ask(DocsService::Impl& m, const std::string& name, const AskRequest& a) {
  m.existing(name);
  OpenAIService* models = m.models;
  if (!models || !models->has_chat_model())
    fail(ErrorKind::unavailable, "asking needs a chat model: start the server with -m MODEL.gguf");
  if (!models->ready()) fail(ErrorKind::unavailable, "the model is still loading; retry shortly");

  PreparedAsk out;
  std::vector<rag::SearchHit> hits = m.search(name, a.question, static_cast<size_t>(a.k), &out.hybrid);
  const tokenizer::ChatTemplate* tmpl = models->own_chat_template();
  rag::AnswerPromptOptions popt;
  popt.chat_template = tmpl;
  const int n_ctx = models->n_ctx();
  popt.max_prompt_tokens = static_cast<size_t>(n_ctx - std::min(a.params.max_tokens, n_ctx / 2));
  const bool templated = tmpl != nullptr;
  auto prompt = std::make_shared<rag::AnswerPrompt>(rag::build_answer_prompt(
      a.question, std::move(hits), popt,
      [&](const std::string& t) { return models->encode_prompt(t, templated).size(); }));
  out.tokens = std::make_shared<std::vector<tokenizer::Token>>(models->encode_prompt(prompt->text, templated));
  out.retrieved = json::array();
  for (size_t i = 0; i < prompt->sources.size(); ++i) out.retrieved.push_back(rag::source_json(prompt->sources[i], static_cast<int>(i + 1)));
  show_paths(out.retrieved, m.documents());
  out.dropped = prompt->dropped;
  out.finish = [prompt, documents = m.documents()](const engine::GenerationEvent& r) {
    const rag::ResolvedCitations c = rag::resolve_citations(r.text, prompt->sources);
    json citations = json::array();
    for (const auto& x : c.citations) citations.push_back(rag::citation_json(x));
    show_paths(citations, documents);
    return json{{"answer", rag::sanitize_utf8(r.text)},
                {"citations", citations},
                {"unmatched", c.unmatched},
                {"finish_reason", engine::finish_reason_name(r.finish)},
                {"usage", {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.completion_tokens}}}};
  };
  return out;
}

json answer_now(DocsService::Impl& m, const std::string& name, const AskRequest& a) {
  const PreparedAsk p = prepare_ask(m, name, a);
  json out = p.finish(m.models->generate(*p.tokens, a.params, {}));
  out["retrieved"] = p.retrieved;
  out["hybrid"] = p.hybrid;
  out["reranked"] = m.opt.reranker != nullptr;
  out["dropped"] = p.dropped;
  return out;
}

void ask(DocsService::Impl& m, const httplib::Request& req, httplib::Response& res, const std::string& name) {
  const json body = object_body(req);
  AskRequest a;
  a.question = string_field(body, "question", true);
  if (a.question.find_first_not_of(" \t\r\n") == std::string::npos) fail(ErrorKind::invalid_argument, "'question' is empty");
  a.k = int_field(body, "k", 5, 1, 50);
  a.params.max_tokens = int_field(body, "max_tokens", 256, 1, 1 << 20);
  a.params.temperature = static_cast<float>(number_field(body, "temperature", 0.0, 0.0, 2.0));
  a.params.top_p = static_cast<float>(number_field(body, "top_p", 0.95, 0.0, 1.0));
  if (a.params.top_p <= 0) fail(ErrorKind::invalid_argument, "'top_p' must be greater than 0");
  if (const json* s = field(body, "seed")) {
    if (!s->is_number_integer()) fail(ErrorKind::invalid_argument, "'seed' must be an integer");
    a.params.seed = s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
    if (a.params.seed == engine::kRandomSeed) a.params.seed = 0;
  }
  a.stream = bool_field(body, "stream", true);
  a.params.validate();

  if (!a.stream) {
    send_json(res, answer_now(m, name, a));
    return;
  }
  const PreparedAsk p = prepare_ask(m, name, a);
  OpenAIService* models = m.models;
  auto tokens = p.tokens;
  auto finish = p.finish;
  const json retrieved = p.retrieved;
  const bool hybrid = p.hybrid;
  auto params = std::make_shared<engine::SamplingParams>(a.params);
  start_stream(
      req, res, "text/event-stream",
      [models, tokens, params, finish, retrieved, hybrid, dropped = p.dropped](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        if (!write(sse("sources", {{"retrieved", retrieved}, {"hybrid", hybrid}, {"dropped", dropped}}))) return false;
        int idle = 0;
        try {
          const engine::GenerationEvent r = models->generate(*tokens, *params, [&](const std::string& piece) {
            if (piece.empty()) return ++idle % 4 != 0 || write(": keep-alive\n\n");
            return write(sse("delta", {{"text", piece}}));
          });
          if (r.finish == engine::FinishReason::cancelled) return false;  // the client left
          write(sse("done", finish(r)));
        } catch (const std::exception& e) {
          write(sse("error", {{"message", e.what()}}));
        }
        sink.done();
        return true;
      });
}

}  // namespace

json DocsService::collections() { return list_collections(*impl_); }

json DocsService::files(const std::string& collection) {
  auto cat = rag::Catalog::open(impl_->existing(collection) / "catalog.db");
  json files = json::array();
  for (const auto& f : cat->files()) files.push_back(file_json(f));
  show_paths(files, impl_->documents());
  return files;
}

json DocsService::search(const std::string& collection, const std::string& query, int k) {
  if (k < 1 || k > 100) fail(ErrorKind::invalid_argument, "'k' must be between 1 and 100 (got {})", k);
  bool hybrid = false;
  const auto hits = impl_->search(collection, query, static_cast<size_t>(k), &hybrid);
  json out = json::array();
  for (const auto& h : hits) out.push_back(rag::source_json(h, 0));
  show_paths(out, impl_->documents());
  return {{"hybrid", hybrid}, {"reranked", impl_->opt.reranker != nullptr}, {"hits", out}};
}

json DocsService::passage(const std::string& collection, int64_t chunk_id) {
  auto cat = rag::Catalog::open(impl_->existing(collection) / "catalog.db");
  const auto rows = cat->chunks({chunk_id});
  if (rows.empty()) fail(ErrorKind::not_found, "collection '{}' has no chunk {}", collection, chunk_id);
  rag::SearchHit h;
  h.chunk = rows[0];
  json j = rag::source_json(h, 0);
  show_paths(j, impl_->documents());
  return j;
}

json DocsService::ask(const std::string& collection, const std::string& question, int k, int max_tokens) {
  AskRequest a;
  a.question = question;
  if (a.question.find_first_not_of(" \t\r\n") == std::string::npos) fail(ErrorKind::invalid_argument, "'question' is empty");
  if (k < 1 || k > 50) fail(ErrorKind::invalid_argument, "'k' must be between 1 and 50 (got {})", k);
  if (max_tokens < 1) fail(ErrorKind::invalid_argument, "'max_tokens' must be at least 1");
  a.k = k;
  a.params.max_tokens = max_tokens;
  a.params.temperature = 0.0f;
  a.params.top_p = 0.95f;
  a.stream = false;
  return answer_now(*impl_, collection, a);
}

std::string DocsService::file_text(const std::string& collection, const std::string& path) {
  const fs::path dir = impl_->existing(collection);
  auto cat = rag::Catalog::open(dir / "catalog.db");
  std::string stored = path;
  if (path.compare(0, 8, "uploads/") == 0) {  // as the file list shows an uploaded file
    const fs::path p = (dir / path).lexically_normal();
    if (!inside(p, (dir / "uploads").lexically_normal())) fail(ErrorKind::invalid_argument, "invalid file path '{}'", path);
    stored = p.string();
  }
  const auto rec = cat->file(stored);
  if (!rec) fail(ErrorKind::not_found, "collection '{}' has no file '{}'", collection, path);
  if (rec->size > impl_->opt.max_file_bytes) fail(ErrorKind::limit, "'{}' is larger than the file limit", path);
  std::ifstream f(rec->path, std::ios::binary);
  if (!f) fail(ErrorKind::not_found, "'{}' is in collection '{}' but no longer on disk", path, collection);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  rag::Document doc;
  if (rec->format == "pdf") doc = rag::load_pdf(bytes);
  else if (rec->format == "html") doc = rag::load_html(bytes);
  else if (rec->format == "markdown") doc = rag::load_markdown(std::move(bytes));
  else doc = rag::load_text(std::move(bytes));
  return rag::sanitize_utf8(doc.text);
}

void register_docs_routes(HttpServer& server, DocsService& docs) {
  DocsService::Impl& m = docs.impl();
  const std::string col = R"(/api/collections/([^/]+))";
  server.route(Method::get, "/api/collections", [&docs](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"collections", docs.collections()}});
  });
  server.route(Method::put, col, [&m](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const fs::path dir = rag::collection_dir(m.opt.data_dir, name);
    auto lock = m.lock_of(name);
    std::lock_guard guard(*lock);
    if (fs::exists(dir / "catalog.db")) fail(ErrorKind::conflict, "collection '{}' already exists", name);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail(ErrorKind::io, "cannot create {}: {}", dir.string(), ec.message());
    rag::Catalog::open(dir / "catalog.db");
    m.changed(name);
    send_json(res, {{"name", name}}, 201);
  });
  server.route(Method::get, col, [&m](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    auto cat = rag::Catalog::open(m.existing(name) / "catalog.db");
    const auto model = cat->meta("embedding_model");
    send_json(res, {{"name", name},
                    {"files", cat->files().size()},
                    {"chunks", cat->chunk_count()},
                    {"embedding_model", model && !model->empty() ? json(fs::path(*model).stem().string()) : json(nullptr)}});
  });
  server.route(Method::del, col, [&m](const httplib::Request& req, httplib::Response& res) {
    delete_collection(m, res, req.matches[1]);
  });
  server.route(Method::get, col + "/files", [&docs](const httplib::Request& req, httplib::Response& res) {
    send_json(res, {{"files", docs.files(req.matches[1])}});
  });
  server.route(Method::post, col + "/files", [&m](const httplib::Request& req, httplib::Response& res) {
    upload(m, req, res, req.matches[1]);
  });
  server.route(Method::del, col + "/files", [&m](const httplib::Request& req, httplib::Response& res) {
    delete_file(m, req, res, req.matches[1]);
  });
  server.route(Method::post, col + "/ingest", [&m](const httplib::Request& req, httplib::Response& res) {
    ingest_folder(m, req, res, req.matches[1]);
  });
  server.route(Method::post, col + "/search", [&docs](const httplib::Request& req, httplib::Response& res) {
    const json body = object_body(req);
    const std::string query = string_field(body, "query", true);
    send_json(res, docs.search(req.matches[1], query, int_field(body, "k", 5, 1, 100)));
  });
  server.route(Method::get, col + R"(/chunks/(\d{1,18}))", [&docs](const httplib::Request& req, httplib::Response& res) {
    send_json(res, docs.passage(req.matches[1], std::stoll(req.matches[2])));
  });
  server.route(Method::post, col + "/ask", [&m](const httplib::Request& req, httplib::Response& res) {
    ask(m, req, res, req.matches[1]);
  });
  server.route(Method::get, R"(/api/jobs/([^/]+))", [&m](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    std::lock_guard lock(m.mu);
    auto it = m.jobs.find(id);
    if (it == m.jobs.end()) fail(ErrorKind::not_found, "no job '{}'", id);
    json j = job_json(*it->second);
    show_paths(j, m.documents());
    send_json(res, j);
  });
}

}  // namespace etna::server
