#include "etna/server/web_app.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <unordered_map>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/engine/memory.h"
#include "etna/server/web_assets.h"
#include "etna/tensor/kernels.h"

namespace etna::server {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The page may load and fetch only from this server; no inline scripts, no plugins, no framing.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const char* content_type_for(const std::string& path) {
  static const std::pair<const char*, const char*> types[] = {
      {".html", "text/html; charset=utf-8"},  {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},            {".svg", "image/svg+xml"},
      {".png", "image/png"},                    {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},    {".woff2", "font/woff2"},
  };
  for (const auto& [ext, type] : types) {
    const std::string e = ext;
    if (path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0) return type;
  }
  return "application/octet-stream";
}

struct Asset {
  std::string_view body;
  const char* type;
  std::string etag;
};

// FNV-1a 64: a stable content hash for ETags (changes whenever the embedded file changes).
std::string etag_of(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("\"{:016x}-{}\"", h, data.size());
}

const std::unordered_map<std::string, Asset>& assets() {
  static const auto table = [] {
    std::unordered_map<std::string, Asset> t;
    for (const WebAsset& a : web_assets()) {
      std::string_view body(a.data, a.size);
      t.emplace(a.path, Asset{body, content_type_for(a.path), etag_of(body)});
    }
    return t;
  }();
  return table;
}

void set_security_headers(httplib::Response& res) {
  res.set_header("Content-Security-Policy", kContentSecurityPolicy);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
}

// Sends an embedded file; 304 when the client's copy (If-None-Match) is current.
void send_asset(const httplib::Request& req, httplib::Response& res, const Asset& a) {
  set_security_headers(res);
  res.set_header("ETag", a.etag);
  res.set_header("Cache-Control", "no-cache");  // revalidate every time: cheap with the ETag
  const std::string inm = req.get_header_value("If-None-Match");
  if (!inm.empty() && inm.find(a.etag) != std::string::npos) {
    res.status = 304;
    return;
  }
  res.set_content(std::string(a.body), a.type);
}

bool accepts_html(const httplib::Request& req) {
  return req.get_header_value("Accept").find("text/html") != std::string::npos;
}

std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- conversations ----------------------------------------------------------------------------

class Conversations {
 public:
  Conversations(fs::path dir, std::size_t max_bytes, std::size_t max_count)
      : dir_(std::move(dir)), max_bytes_(max_bytes), max_count_(max_count) {}

  // From the index (.index.json: id -> title, created, updated), never from the files themselves.
  json list() const {
    std::lock_guard lock(mutex_);
    load_index_locked();
    json out = json::array();
    for (const auto& [id, e] : index_) out.push_back({{"id", id}, {"title", e.title}, {"updated", e.updated}});
    std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
      return a["updated"].get<int64_t>() > b["updated"].get<int64_t>();
    });
    return out;
  }

  json get(const std::string& id) const {
    check_id(id);
    std::lock_guard lock(mutex_);
    const fs::path p = path_of(id);
    if (!fs::exists(p)) fail(ErrorKind::not_found, "no conversation '{}'", id);
    return read_file(p);
  }

  // Validates and stores `body` as conversation `id`; returns what was stored and whether it is new.
  std::pair<json, bool> put(const std::string& id, const httplib::Request& req) {
    check_id(id);
    if (req.body.size() > max_bytes_)
      fail(ErrorKind::limit, "the conversation is {} bytes; at most {} are kept", req.body.size(), max_bytes_);
    json body = parse_json_body(req);
    if (!body.is_object()) fail(ErrorKind::invalid_argument, "a conversation must be a JSON object");
    if (body.contains("id") && body["id"] != id)
      fail(ErrorKind::invalid_argument, "the body's id does not match the path ('{}')", id);
    json c = json::object();
    c["id"] = id;
    std::string title = "New conversation";
    if (body.contains("title") && !body["title"].is_null()) {
      if (!body["title"].is_string()) fail(ErrorKind::invalid_argument, "'title' must be a string");
      title = body["title"].get<std::string>();
      if (title.size() > 500) fail(ErrorKind::invalid_argument, "'title' is longer than 500 bytes");
    }
    c["title"] = title;
    json messages = json::array();
    if (body.contains("messages")) {
      if (!body["messages"].is_array()) fail(ErrorKind::invalid_argument, "'messages' must be an array");
      for (const json& m : body["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
            !m["content"].is_string())
          fail(ErrorKind::invalid_argument, "each message must be an object with string 'role' and 'content'");
        const std::string role = m["role"];
        if (role != "system" && role != "user" && role != "assistant")
          fail(ErrorKind::invalid_argument, "message role must be system, user or assistant (got '{}')", role);
        json kept = {{"role", role}, {"content", m["content"]}};
        if (m.contains("sources")) kept["sources"] = m["sources"];  // retrieved sources shown with an answer
        messages.push_back(std::move(kept));
      }
    }
    c["messages"] = std::move(messages);
    if (body.contains("settings") && !body["settings"].is_null()) {
      if (!body["settings"].is_object()) fail(ErrorKind::invalid_argument, "'settings' must be an object");
      c["settings"] = body["settings"];
    } else {
      c["settings"] = json::object();
    }
    std::lock_guard lock(mutex_);
    load_index_locked();
    const fs::path p = path_of(id);
    auto known = index_.find(id);
    const bool created = known == index_.end() && !fs::exists(p);
    if (created && index_.size() >= max_count_)
      throw HttpError(507, ErrorKind::limit,
                      fmt::format("at most {} conversations are kept; delete some to start a new one", max_count_));
    const int64_t created_ms = known != index_.end() ? known->second.created : unix_ms();
    c["created"] = created_ms;
    // Strictly after every other save, so the list's newest-first order has no ties (two saves
    // in the same millisecond would otherwise list in either order).
    int64_t updated = unix_ms();
    for (const auto& [other, e] : index_) updated = std::max(updated, e.updated + 1);
    c["updated"] = updated;
    // Compact: indentation grows with nesting, so pretty-printing multiplied a deep body's size.
    write_atomically(p, c.dump(-1, ' ', false, json::error_handler_t::replace));
    index_[id] = {title, created_ms, c["updated"].get<int64_t>()};
    save_index_locked();
    return {c, created};
  }

  void remove(const std::string& id) {
    check_id(id);
    std::lock_guard lock(mutex_);
    load_index_locked();
    std::error_code ec;
    const bool removed = fs::remove(path_of(id), ec);
    const bool indexed = index_.erase(id) > 0;
    if (indexed) save_index_locked();
    if (!removed) {
      if (ec) fail(ErrorKind::io, "cannot delete conversation '{}': {}", id, ec.message());
      if (!indexed) fail(ErrorKind::not_found, "no conversation '{}'", id);
    }
  }

 private:
  static void check_id(const std::string& id) {
    if (!valid_conversation_id(id))
      fail(ErrorKind::invalid_argument, "invalid conversation id: use 1..64 characters of A-Z, a-z, 0-9, '_' and '-'");
  }
  fs::path path_of(const std::string& id) const { return dir_ / (id + ".json"); }

  json read_file(const fs::path& p) const {
    std::ifstream in(p, std::ios::binary);
    if (!in) fail(ErrorKind::io, "cannot read {}", p.string());
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail(ErrorKind::corrupt, "{} is not a JSON object", p.string());
    return j;
  }

  void write_atomically(const fs::path& p, const std::string& text) const {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) fail(ErrorKind::io, "cannot create {}: {}", dir_.string(), ec.message());
    thread_local std::mt19937_64 rng{std::random_device{}()};
    const fs::path tmp = dir_ / fmt::format(".{}.{:x}.tmp", p.filename().string(), rng());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.flush();
      if (!out) {
        fs::remove(tmp, ec);
        fail(ErrorKind::io, "cannot write {}", tmp.string());
      }
    }
    fs::rename(tmp, p, ec);
    if (ec) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      fail(ErrorKind::io, "cannot replace {}: {}", p.string(), ec.message());
    }
  }

  struct Entry {
    std::string title;
    int64_t created = 0, updated = 0;
  };

  // REQUIRES: mutex_ held. Reads .index.json once; without one (a data folder from before the
  // index, or a damaged index), rebuilds it from the conversation files, once.
  void load_index_locked() const {
    if (index_loaded_) return;
    index_loaded_ = true;
    const fs::path ip = dir_ / ".index.json";
    std::error_code ec;
    if (fs::exists(ip, ec)) {
      try {
        const json j = read_file(ip);
        for (const auto& [id, e] : j.items())
          if (valid_conversation_id(id) && e.is_object())
            index_[id] = {e.value("title", std::string("Untitled")), e.value("created", int64_t{0}), e.value("updated", int64_t{0})};
        return;
      } catch (const std::exception& e) {
        log::warn("web: rebuilding the conversation index: {}", e.what());
        index_.clear();
      }
    }
    if (!fs::is_directory(dir_, ec)) return;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      const fs::path p = entry.path();
      if (p.extension() != ".json" || !valid_conversation_id(p.stem().string())) continue;
      try {
        const json c = read_file(p);
        index_[p.stem().string()] = {c.value("title", std::string("Untitled")), c.value("created", int64_t{0}),
                                     c.value("updated", int64_t{0})};
      } catch (const std::exception& e) {
        log::warn("web: skipping unreadable conversation {}: {}", p.string(), e.what());
      }
    }
    save_index_locked();
  }

  // REQUIRES: mutex_ held.
  void save_index_locked() const {
    json j = json::object();
    for (const auto& [id, e] : index_) j[id] = {{"title", e.title}, {"created", e.created}, {"updated", e.updated}};
    write_atomically(dir_ / ".index.json", j.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  fs::path dir_;
  std::size_t max_bytes_;
  std::size_t max_count_;
  mutable std::mutex mutex_;
  mutable bool index_loaded_ = false;             // REQUIRES: mutex_ held
  mutable std::map<std::string, Entry> index_;    // REQUIRES: mutex_ held
};

// ---- status ------------------------------------------------------------------------------------

json status_json(const HttpServer& server, OpenAIService* openai, std::chrono::steady_clock::time_point started) {
  json s;
  s["version"] = server.options().version;
  s["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  s["model"] = nullptr;
  s["embedding_model"] = nullptr;
  const auto rss = engine::resident_memory();
  json memory = {{"rss", rss.current}, {"rss_peak", rss.peak}, {"weights", 0}, {"kv", 0}};
  json queue = {{"active", 0}, {"waiting", 0}, {"capacity", 0}};
  json tps = {{"decode", 0.0}, {"mean_time_to_first_token_s", 0.0}};
  json tokens = {{"prompt", 0}, {"generated", 0}};
  uint64_t requests = 0;
  s["loading"] = false;
  if (openai) {
    const auto& o = openai->options();
    s["loading"] = !openai->ready();
    if (!openai->model_id().empty())
      s["model"] = {{"id", openai->model_id()}, {"path", o.model_path}, {"n_ctx", openai->n_ctx()}, {"parallel", o.n_parallel}};
    if (!openai->embedding_model_id().empty()) s["embedding_model"] = openai->embedding_model_id();
    const auto st = openai->stats();
    memory["weights"] = st.weight_bytes;
    memory["kv"] = st.kv_bytes;
    queue = {{"active", st.active}, {"waiting", st.queued}, {"capacity", o.queue_capacity}};
    tps = {{"decode", st.decode_tokens_per_second}, {"mean_time_to_first_token_s", st.mean_time_to_first_token}};
    tokens = {{"prompt", st.prompt_tokens}, {"generated", st.generated_tokens}};
    requests = st.requests;
  }
  s["memory"] = memory;
  s["queue"] = queue;
  s["tokens_per_second"] = tps;
  s["tokens"] = tokens;
  s["requests"] = requests;
  try {
    s["kernels"] = tensor::kernel_table_name(tensor::active_kernel_table());
  } catch (const Error&) {
    s["kernels"] = "unknown";
  }
  return s;
}

}  // namespace

bool valid_conversation_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool serve_web_index(const httplib::Request& req, httplib::Response& res) {
  if (!accepts_html(req)) return false;
  auto it = assets().find("/index.html");
  if (it == assets().end()) return false;
  send_asset(req, res, it->second);
  return true;
}

void register_web_routes(HttpServer& server, WebOptions options) {
  server.add_public_path("/index.html");
  // A browser opening "/" gets the page without a key (it holds no data; the app then asks for
  // the key and sends it on every API call). "/" answered as JSON (Qdrant's banner) stays private.
  server.add_public_request([](const httplib::Request& req) {
    return (req.method == "GET" || req.method == "HEAD") && req.path == "/" && accepts_html(req) &&
           assets().count("/index.html") > 0;
  });
  for (const auto& [path, asset] : assets()) {
    if (path == "/index.html") continue;
    server.add_public_path(path);
    const Asset* a = &asset;
    server.route(Method::get, regex_escape(path),
                 [a](const httplib::Request& req, httplib::Response& res) { send_asset(req, res, *a); });
  }
  server.route(Method::get, "/index\\.html", [](const httplib::Request& req, httplib::Response& res) {
    auto it = assets().find("/index.html");
    if (it == assets().end()) fail(ErrorKind::not_found, "this build has no web app");
    send_asset(req, res, it->second);
  });
  // Anything else under the asset folders: a clear 404 (exact routes above win: registered first).
  server.add_public_path("/js/");
  server.add_public_path("/assets/");
  server.route(Method::get, "/(?:js|assets)/.*", [](const httplib::Request& req, httplib::Response&) {
    fail(ErrorKind::not_found, "no such asset: {}", req.path);
  });

  const auto started = std::chrono::steady_clock::now();
  OpenAIService* openai = options.openai;
  server.route(Method::get, "/api/status", [&server, openai, started](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    send_json(res, status_json(server, openai, started));
  });

  auto conv = std::make_shared<Conversations>(options.data_dir / "conversations", options.max_conversation_bytes,
                                              options.max_conversations);
  server.route(Method::get, "/api/conversations", [conv](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"conversations", conv->list()}});
  });
  const std::string one = "/api/conversations/([^/]+)";
  server.route(Method::get, one, [conv](const httplib::Request& req, httplib::Response& res) {
    send_json(res, conv->get(req.matches[1]));
  });
  server.route(Method::put, one, [conv](const httplib::Request& req, httplib::Response& res) {
    auto [stored, created] = conv->put(req.matches[1], req);
    send_json(res, stored, created ? 201 : 200);
  });
  server.route(Method::del, one, [conv](const httplib::Request& req, httplib::Response& res) {
    conv->remove(req.matches[1]);
    send_json(res, {{"deleted", true}});
  });
}

}  // namespace etna::server
