#include "etna/hub/pull.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/hub/sha256.h"

namespace etna::hub {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kMaxListingBytes = 64ull << 20;  // a listing larger than this is refused
constexpr uint64_t kMaxSmallFile = 16ull << 20;     // model cards and error bodies kept in memory

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string human(uint64_t n) {
  if (n >= (1ull << 30)) return fmt::format("{:.2f} GiB", n / double(1ull << 30));
  if (n >= (1ull << 20)) return fmt::format("{:.1f} MiB", n / double(1ull << 20));
  if (n >= (1ull << 10)) return fmt::format("{:.1f} KiB", n / double(1ull << 10));
  return fmt::format("{} B", n);
}

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};

// Escapes each path segment of a repository file path for a URL.
std::string url_path(CURL* c, const std::string& path) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string seg = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    char* e = curl_easy_escape(c, seg.c_str(), static_cast<int>(seg.size()));
    out += e ? e : "";
    curl_free(e);
    if (slash == std::string::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

// One HTTP GET. The body goes to `sink` (return false to stop) for 2xx answers, into `error_body`
// otherwise. Headers are collected (lower-case names).
struct Get {
  std::string url;
  std::string token;
  uint64_t range_from = 0;  // > 0: "Range: bytes=N-"
  const std::atomic<bool>* cancel = nullptr;
  std::function<bool(const char*, size_t)> sink;
  std::function<void()> tick;  // called about once a second even while no data arrives

  long status = 0;
  std::map<std::string, std::string> headers;
  std::string error_body;
  CURLcode code = CURLE_OK;
  std::string curl_error;
  bool sink_stopped = false;

  void run() {
    curl_init_once();
    std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
    if (!c) fail(ErrorKind::internal, "libcurl could not start");
    std::unique_ptr<curl_slist, SlistDeleter> hdrs;
    auto add_header = [&](const std::string& h) { hdrs.reset(curl_slist_append(hdrs.release(), h.c_str())); };
    // curl does not send a custom Authorization header to another host after a redirect (7.58+),
    // so a hub redirecting to a CDN never sees the token leave its own host.
    if (!token.empty()) add_header("Authorization: Bearer " + token);
    add_header("User-Agent: etna/" + std::string("0.1"));
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, hdrs.get());
    curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, 30L);
    // A stalled transfer (under 1 byte/s for 60 s) counts as a dropped connection.
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_TIME, 60L);
    if (range_from > 0) {
      const std::string r = fmt::format("{}-", range_from);
      curl_easy_setopt(c.get(), CURLOPT_RANGE, r.c_str());
    }
    curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, &Get::on_header);
    curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, this);
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &Get::on_body);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, this);
    curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, &Get::on_progress);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, this);
    handle_ = c.get();
    code = curl_easy_perform(c.get());
    handle_ = nullptr;
    curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
    curl_error = errbuf[0] ? errbuf : curl_easy_strerror(code);
  }

 private:
  CURL* handle_ = nullptr;

  static size_t on_header(char* p, size_t size, size_t n, void* self) {
    auto* g = static_cast<Get*>(self);
    std::string line(p, size * n);
    if (line.rfind("HTTP/", 0) == 0) g->headers.clear();  // a new response (after a redirect)
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string v = line.substr(colon + 1);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(v.begin());
      g->headers[lower(line.substr(0, colon))] = v;
    }
    return size * n;
  }
  static size_t on_body(char* p, size_t size, size_t n, void* self) {
    auto* g = static_cast<Get*>(self);
    long st = 0;
    curl_easy_getinfo(g->handle_, CURLINFO_RESPONSE_CODE, &st);
    if (st < 200 || st >= 300) {
      if (g->error_body.size() < kMaxSmallFile) g->error_body.append(p, size * n);
      return size * n;
    }
    if (!g->sink(p, size * n)) {
      g->sink_stopped = true;
      return 0;
    }
    return size * n;
  }
  static int on_progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* g = static_cast<Get*>(self);
    if (g->tick) g->tick();
    return g->cancel && g->cancel->load() ? 1 : 0;
  }
};

bool transient(const Get& g) {
  switch (g.code) {
    case CURLE_OK: return g.status >= 500 || g.status == 429 || g.status == 408;
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: return true;
    default: return false;
  }
}

std::string hub_message(const Get& g) {
  // The hub puts its reason in {"error": "..."}; show it when there is one.
  try {
    auto j = json::parse(g.error_body);
    if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  } catch (const json::exception&) {
  }
  return "";
}

[[noreturn]] void fail_http(const Get& g, const std::string& what, const std::string& repo) {
  const std::string msg = hub_message(g);
  const std::string tail = msg.empty() ? "" : ": " + msg;
  if (g.status == 401 || g.status == 403)
    fail(ErrorKind::invalid_argument,
         "{} is gated or private (HTTP {}{}): accept its terms on the hub's page and set HF_TOKEN to an access token "
         "with access to it",
         repo.empty() ? what : repo, g.status, tail);
  if (g.status == 404) fail(ErrorKind::not_found, "{} not found on the hub (HTTP 404{})", what, tail);
  if (g.code != CURLE_OK) fail(ErrorKind::io, "cannot download {}: {}", what, g.curl_error);
  fail(ErrorKind::io, "cannot download {}: HTTP {}{}", what, g.status, tail);
}

int retry_delay_ms(const PullOptions& o) {
  const std::string e = env("ETNA_PULL_RETRY_MS");
  if (!e.empty()) {
    try {
      return std::max(0, std::stoi(e));
    } catch (const std::exception&) {
    }
  }
  return o.retry_delay_ms;
}

void sleep_cancellable(int ms, const std::atomic<bool>* cancel) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < until) {
    if (cancel && cancel->load()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 50)));
  }
}

[[noreturn]] void fail_interrupted(const fs::path& part) {
  fail(ErrorKind::unavailable, "interrupted; the partial download {} is kept: run the same pull again to resume",
       part.string());
}

// GET into memory (listings, model cards), with retries.
std::string get_small(const PullOptions& o, const std::string& url, const std::string& what, const std::string& repo,
                      uint64_t limit, std::map<std::string, std::string>* headers = nullptr, bool* missing = nullptr) {
  int delay = retry_delay_ms(o);
  for (int attempt = 0;; ++attempt) {
    std::string body;
    Get g;
    g.url = url;
    g.token = o.token;
    g.cancel = o.cancel;
    g.sink = [&](const char* p, size_t n) {
      if (body.size() + n > limit) return false;
      body.append(p, n);
      return true;
    };
    g.run();
    if (g.code == CURLE_ABORTED_BY_CALLBACK) fail(ErrorKind::unavailable, "interrupted");
    if (g.sink_stopped) fail(ErrorKind::limit, "{} is larger than {}", what, human(limit));
    if (g.code == CURLE_OK && g.status >= 200 && g.status < 300) {
      if (headers) *headers = g.headers;
      return body;
    }
    if (missing && g.code == CURLE_OK && g.status == 404) {
      *missing = true;
      return "";
    }
    if (!transient(g) || attempt >= o.retries) fail_http(g, what, repo);
    if (o.note) o.note(fmt::format("{}: {}, retrying in {} ms", what, g.code != CURLE_OK ? g.curl_error : fmt::format("HTTP {}", g.status), delay));
    sleep_cancellable(delay, o.cancel);
    delay *= 2;
  }
}

std::string next_link(const std::map<std::string, std::string>& headers) {
  auto it = headers.find("link");
  if (it == headers.end()) return "";
  static const std::regex re("<([^>]+)>\\s*;\\s*rel=\"?next\"?");
  std::smatch m;
  return std::regex_search(it->second, m, re) ? m[1].str() : "";
}

uint64_t free_bytes(const fs::path& dir, const PullOptions& o) {
  const std::string e = env("ETNA_FREE_SPACE_BYTES");
  if (!e.empty()) {
    try {
      return std::stoull(e);
    } catch (const std::exception&) {
      fail(ErrorKind::invalid_argument, "ETNA_FREE_SPACE_BYTES must be a byte count, got '{}'", e);
    }
  }
  if (o.free_space) return *o.free_space;
  struct statvfs s {};
  if (statvfs(dir.c_str(), &s) != 0) return UINT64_MAX;  // cannot tell: the write itself will fail
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

struct ProgressState {
  const PullOptions* o;
  uint64_t done_before = 0, total = 0;
  Clock::time_point start = Clock::now(), last_report{};
  uint64_t bytes_at_start = 0;
  void report(const std::string& file, uint64_t file_done, uint64_t file_total, bool finished) {
    if (!o->progress) return;
    const auto now = Clock::now();
    if (!finished && now - last_report < std::chrono::milliseconds(250)) return;
    last_report = now;
    const double secs = std::chrono::duration<double>(now - start).count();
    PullProgress p;
    p.file = file;
    p.file_done = file_done;
    p.file_total = file_total;
    p.done = done_before + file_done;
    p.total = total;
    p.bytes_per_second = secs > 0 ? (p.done - bytes_at_start) / secs : 0;
    p.finished_file = finished;
    o->progress(p);
  }
};

// Downloads `url` to `dest` through `dest.part`, resuming, retrying and verifying.
// Returns the sha256 of the file.
std::string download(const PullOptions& o, const std::string& url, const fs::path& dest, const RepoFile& f,
                     const std::string& repo, ProgressState& ps) {
  const fs::path part = dest.string() + ".part";
  std::error_code ec;
  uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
  if (f.size > 0 && have > f.size) {
    fs::remove(part, ec);
    have = 0;
  }
  // Hash what is already there, then continue the same digest with what arrives.
  Sha256 hash;
  if (have > 0) {
    std::ifstream in(part, std::ios::binary);
    std::vector<char> buf(1 << 20);
    uint64_t left = have;
    while (left > 0 && in) {
      in.read(buf.data(), static_cast<std::streamsize>(std::min<uint64_t>(left, buf.size())));
      hash.update(buf.data(), static_cast<size_t>(in.gcount()));
      left -= static_cast<uint64_t>(in.gcount());
    }
    if (left != 0) fail(ErrorKind::io, "cannot read {}", part.string());
    if (o.note) o.note(fmt::format("resuming {} at {}", f.path, human(have)));
  }
  int delay = retry_delay_ms(o);
  for (int attempt = 0;; ++attempt) {
    std::FILE* out = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
    if (!out) fail(ErrorKind::io, "cannot write {}", part.string());
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(out, &std::fclose);
    bool write_failed = false;
    Get g;
    g.url = url;
    g.token = o.token;
    g.cancel = o.cancel;
    g.range_from = have;
    g.tick = [&] { ps.report(f.path, have, f.size, false); };
    bool first = true;
    g.sink = [&](const char* p, size_t n) {
      if (first) {
        first = false;
        // A server that ignores Range answers 200 with the whole file: start over.
        if (have > 0 && g.headers.count("content-range") == 0) {
          guard.reset(std::fopen(part.c_str(), "wb"));
          if (!guard) return false;
          have = 0;
          hash = Sha256();
        }
      }
      if (std::fwrite(p, 1, n, guard.get()) != n) {
        write_failed = true;
        return false;
      }
      hash.update(p, n);
      have += n;
      ps.report(f.path, have, f.size, false);
      return true;
    };
    g.run();
    guard.reset();
    if (write_failed) fail(ErrorKind::io, "cannot write {} (disk full?)", part.string());
    if (g.code == CURLE_ABORTED_BY_CALLBACK) fail_interrupted(part);
    const bool range_done = g.code == CURLE_OK && g.status == 416 && f.size > 0 && have == f.size;
    if ((g.code == CURLE_OK && g.status >= 200 && g.status < 300) || range_done) {
      if (f.size > 0 && have < f.size && attempt < o.retries) {
        // The server closed early without an error: resume.
        sleep_cancellable(delay, o.cancel);
        delay *= 2;
        continue;
      }
      break;
    }
    if (g.code == CURLE_OK && g.status == 416) {  // our part no longer matches the file: start over
      fs::remove(part, ec);
      have = 0;
      hash = Sha256();
      if (attempt < o.retries) continue;
    }
    if (!transient(g) || attempt >= o.retries) {
      if (g.code != CURLE_OK && have > 0)
        fail(ErrorKind::io, "cannot download {}: {} after {} attempts; {} of {} kept in {}: run the same pull again to resume",
             f.path, g.curl_error, attempt + 1, human(have), human(f.size), part.string());
      fail_http(g, f.path, repo);
    }
    if (o.note)
      o.note(fmt::format("{}: {} at {}, retrying in {} ms", f.path,
                         g.code != CURLE_OK ? g.curl_error : fmt::format("HTTP {}", g.status), human(have), delay));
    sleep_cancellable(delay, o.cancel);
    if (o.cancel && o.cancel->load()) fail_interrupted(part);
    delay *= 2;
  }
  const std::string digest = hash.hex_digest();
  if (f.size > 0 && have != f.size) {
    fs::remove(part, ec);
    fail(ErrorKind::corrupt, "{} arrived with {} bytes, the hub lists {}; the download was deleted: pull again", f.path,
         have, f.size);
  }
  if (!f.sha256.empty() && lower(f.sha256) != digest) {
    fs::remove(part, ec);
    fail(ErrorKind::corrupt, "checksum mismatch for {}: expected sha256 {}, got {}; the download was deleted: pull again",
         f.path, f.sha256, digest);
  }
  fs::rename(part, dest, ec);
  if (ec) fail(ErrorKind::io, "cannot move {} into place: {}", dest.string(), ec.message());
  ps.report(f.path, have, f.size, true);
  return digest;
}

const std::regex& shard_re() {
  static const std::regex re("^(.*)-(\\d{5})-of-(\\d{5})\\.gguf$", std::regex::icase);
  return re;
}

// The model key of a GGUF file: its path without the split suffix.
std::string group_key(const std::string& path) {
  std::smatch m;
  if (std::regex_match(path, m, shard_re())) return m[1].str();
  return path.substr(0, path.size() - 5);
}

bool tag_matches(const std::string& key, const std::string& tag) {
  const std::string k = lower(fs::path(key).filename().string()), t = lower(tag);
  for (size_t pos = k.find(t); pos != std::string::npos; pos = k.find(t, pos + 1)) {
    const bool left = pos == 0 || !std::isalnum(static_cast<unsigned char>(k[pos - 1]));
    const size_t e = pos + t.size();
    const bool right = e == k.size() || (!std::isalnum(static_cast<unsigned char>(k[e])) && k[e] != '_');
    if (left && right) return true;
  }
  return false;
}

bool is_extra(const std::string& path) {
  const std::string n = lower(path);
  return n == "readme.md" || n.rfind("license", 0) == 0 || n.rfind("licence", 0) == 0 || n == "use_policy.md" ||
         n == "notice" || n == "notice.md";
}

}  // namespace

PullRef parse_pull_ref(std::string_view ref) {
  PullRef r;
  const std::string s(ref);
  if (s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0) {
    r.is_url = true;
    r.url = s;
    return r;
  }
  const size_t colon = s.find(':');
  r.repo = s.substr(0, colon);
  if (colon != std::string::npos) r.tag = s.substr(colon + 1);
  static const std::regex repo_re("^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$");
  if (!std::regex_match(r.repo, repo_re) || r.repo.find("..") != std::string::npos)
    fail(ErrorKind::invalid_argument, "'{}' is not OWNER/REPO[:QUANT|:FILE] or an http(s) URL", s);
  if (colon != std::string::npos && r.tag.empty()) fail(ErrorKind::invalid_argument, "'{}': nothing after ':'", s);
  if (r.tag.find("..") != std::string::npos) fail(ErrorKind::invalid_argument, "'{}': invalid file name", s);
  return r;
}

std::vector<RepoFile> choose_files(const std::vector<RepoFile>& files, const std::string& tag) {
  std::map<std::string, std::vector<RepoFile>> groups;  // model key -> shards in order
  for (const auto& f : files)
    if (ends_with(lower(f.path), ".gguf")) groups[group_key(f.path)].push_back(f);
  for (auto& [k, v] : groups) std::sort(v.begin(), v.end(), [](const RepoFile& a, const RepoFile& b) { return a.path < b.path; });

  std::vector<RepoFile> chosen;
  auto available = [&] {
    std::string s;
    for (const auto& [k, v] : groups) s += (s.empty() ? "" : ", ") + fs::path(k).filename().string();
    return s;
  };
  if (groups.empty()) {
    if (!tag.empty()) fail(ErrorKind::not_found, "the repository has no GGUF files, so there is no '{}' to choose", tag);
    for (const auto& f : files) {
      const std::string n = lower(f.path);
      if (ends_with(n, ".safetensors") || ends_with(n, ".json") || n == "tokenizer.model" || ends_with(n, "/tokenizer.model"))
        chosen.push_back(f);
    }
    if (chosen.empty()) fail(ErrorKind::not_found, "the repository has neither GGUF nor safetensors files");
  } else {
    const std::vector<RepoFile>* group = nullptr;
    if (!tag.empty()) {
      for (const auto& [k, v] : groups)
        for (const auto& f : v)
          if (lower(f.path) == lower(tag) || lower(fs::path(f.path).filename().string()) == lower(tag)) group = &v;
      if (!group) {
        std::vector<const std::vector<RepoFile>*> hits;
        for (const auto& [k, v] : groups)
          if (tag_matches(k, tag)) hits.push_back(&v);
        if (hits.empty()) fail(ErrorKind::not_found, "no GGUF file matches '{}'; the repository has: {}", tag, available());
        if (hits.size() > 1) {
          std::string s;
          for (auto* h : hits) s += (s.empty() ? "" : ", ") + h->front().path;
          fail(ErrorKind::invalid_argument, "'{}' matches several files ({}); name one with :FILE", tag, s);
        }
        group = hits.front();
      }
    } else if (groups.size() == 1) {
      group = &groups.begin()->second;
    } else {
      std::vector<const std::vector<RepoFile>*> hits;
      for (const auto& [k, v] : groups)
        if (tag_matches(k, "q4_k_m") && lower(k).find("mmproj") == std::string::npos) hits.push_back(&v);
      if (hits.size() != 1)
        fail(ErrorKind::invalid_argument, "the repository holds several models; choose one with :QUANT or :FILE: {}", available());
      group = hits.front();
    }
    // Every shard of a split model must be listed.
    std::smatch m;
    if (std::regex_match(group->front().path, m, shard_re())) {
      const size_t n = std::stoul(m[3].str());
      if (group->size() != n)
        fail(ErrorKind::corrupt, "split model {} lists {} of its {} shards", m[1].str(), group->size(), n);
    }
    chosen = *group;
  }
  for (const auto& f : files)
    if (is_extra(f.path)) chosen.push_back(f);
  return chosen;
}

std::string resolve_endpoint(const PullOptions& o) {
  std::string e = !o.endpoint.empty() ? o.endpoint : env("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::vector<RepoFile> list_repo(const PullOptions& o, const std::string& repo) {
  const std::string endpoint = resolve_endpoint(o);
  std::string url = fmt::format("{}/api/models/{}/tree/{}?recursive=true", endpoint, repo, o.revision);
  std::vector<RepoFile> out;
  for (int page = 0; !url.empty(); ++page) {
    if (page > 1000) fail(ErrorKind::limit, "the listing of {} does not end", repo);
    std::map<std::string, std::string> headers;
    const std::string body = get_small(o, url, "repository " + repo, repo, kMaxListingBytes, &headers);
    json j;
    try {
      j = json::parse(body);
    } catch (const json::exception&) {
      fail(ErrorKind::corrupt, "the hub's listing of {} is not JSON", repo);
    }
    if (!j.is_array()) fail(ErrorKind::corrupt, "the hub's listing of {} is not a list of files", repo);
    for (const auto& e : j) {
      if (!e.is_object() || e.value("type", "") != "file") continue;
      RepoFile f;
      f.path = e.value("path", "");
      if (f.path.empty() || f.path.find("..") != std::string::npos || f.path.front() == '/') continue;
      if (e.contains("size") && e["size"].is_number_unsigned()) f.size = e["size"].get<uint64_t>();
      if (e.contains("lfs") && e["lfs"].is_object()) {
        const auto& l = e["lfs"];
        f.sha256 = l.value("oid", l.value("sha256", ""));
        if (l.contains("size") && l["size"].is_number_unsigned()) f.size = l["size"].get<uint64_t>();
      }
      out.push_back(std::move(f));
    }
    url = next_link(headers);
  }
  return out;
}

Manifest pull(const Library& library, const std::string& ref_text, const PullOptions& opts) {
  PullOptions o = opts;
  if (o.token.empty()) o.token = env("HF_TOKEN");
  if (o.token.empty()) o.token = env("HUGGING_FACE_HUB_TOKEN");
  const PullRef ref = parse_pull_ref(ref_text);
  const std::string endpoint = resolve_endpoint(o);

  Manifest m;
  std::vector<RepoFile> files;
  std::vector<std::string> urls;
  std::unique_ptr<CURL, CurlDeleter> esc(curl_easy_init());
  if (ref.is_url) {
    std::string file = ref.url.substr(0, ref.url.find_first_of("?#"));
    file = file.substr(file.find_last_of('/') + 1);
    char* un = curl_easy_unescape(esc.get(), file.c_str(), static_cast<int>(file.size()), nullptr);
    file = un ? un : file;
    curl_free(un);
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      fail(ErrorKind::invalid_argument, "cannot tell a file name from {}", ref.url);
    files.push_back({file, 0, lower(o.sha256)});
    urls.push_back(ref.url);
    m.source_kind = "url";
    m.source = ref.url;
  } else {
    const auto listing = list_repo(o, ref.repo);
    files = choose_files(listing, ref.tag);
    for (const auto& f : files)
      urls.push_back(fmt::format("{}/{}/resolve/{}/{}", endpoint, ref.repo, url_path(esc.get(), o.revision),
                                 url_path(esc.get(), f.path)));
    m.source_kind = "hub";
    m.source = ref.repo;
    m.revision = o.revision;
    m.endpoint = endpoint;
  }
  const auto main = std::find_if(files.begin(), files.end(), [](const RepoFile& f) { return ends_with(lower(f.path), ".gguf"); });
  m.name = !o.name.empty() ? o.name
           : main != files.end() ? model_name_for(main->path)
                                 : model_name_for(ref.repo.substr(ref.repo.find('/') + 1));
  if (!valid_model_name(m.name)) fail(ErrorKind::invalid_argument, "invalid model name '{}'", m.name);
  if (auto existing = library.find(m.name)) {
    bool complete = existing->source == m.source && !existing->files.empty();
    std::error_code ec;
    for (const auto& f : existing->files) complete = complete && fs::exists(f.path, ec) && fs::file_size(f.path, ec) == f.size;
    if (complete) {
      if (o.note) o.note(fmt::format("{} is already in the library", m.name));
      return *existing;
    }
    if (existing->source != m.source)
      fail(ErrorKind::conflict, "a model named '{}' from {} is already in the library; choose another with --name",
           m.name, existing->source);
  }

  const fs::path dir = library.model_dir(m.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", dir.string(), ec.message());

  // Free space first: what is still missing of every file.
  uint64_t need = 0, total = 0;
  for (const auto& f : files) {
    total += f.size;
    const fs::path dest = dir / fs::path(f.path).filename();
    if (fs::exists(dest, ec) && fs::file_size(dest, ec) == f.size && f.size > 0) continue;
    const fs::path part = dest.string() + ".part";
    const uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
    need += f.size > have ? f.size - have : 0;
  }
  const uint64_t avail = free_bytes(dir, o);
  if (need > avail)
    fail(ErrorKind::limit, "not enough free space in {}: the download needs {} more, {} is free", dir.string(),
         human(need), human(avail));

  ProgressState ps{&o};
  ps.total = total;
  for (size_t i = 0; i < files.size(); ++i) {
    const RepoFile& f = files[i];
    const fs::path dest = dir / fs::path(f.path).filename();
    ModelFile mf{fs::path(f.path).filename().string(), fs::absolute(dest).string(), f.size, f.sha256};
    if (fs::exists(dest, ec) && f.size > 0 && fs::file_size(dest, ec) == f.size) {
      // Completed by an earlier, interrupted pull: it was verified before it was moved into place.
      ps.done_before += f.size;
      m.files.push_back(mf);
      continue;
    }
    if (o.note) o.note(fmt::format("downloading {} ({})", f.path, f.size ? human(f.size) : "size unknown"));
    mf.sha256 = download(o, urls[i], dest, f, ref.repo, ps);
    mf.size = fs::file_size(dest, ec);
    ps.done_before += mf.size;
    m.files.push_back(mf);
  }

  // The model card's front matter fills in what the GGUF does not say about the licence.
  // A LICENSE file fills in what neither says.
  LicenceRecord card, file;
  for (const auto& f : m.files) {
    const std::string n = lower(f.name);
    const bool is_card = n == "readme.md", is_licence = n.rfind("license", 0) == 0 || n.rfind("licence", 0) == 0;
    if (!is_card && !is_licence) continue;
    std::ifstream in(f.path);
    std::stringstream ss;
    ss << in.rdbuf();
    if (is_card) card = licence_from_model_card(ss.str());
    else if (!file.known()) file = licence_from_licence_file(ss.str());
  }
  m.licence = merge_licence(card, file);
  const std::string main_path = m.main_path();
  if (!main_path.empty() && ends_with(lower(main_path), ".gguf")) describe_gguf(main_path, m);
  m.owns_files = true;
  m.pulled_at = utc_now();
  library.save(m);
  return m;
}

}  // namespace etna::hub
