#include "etna/rag/qdrant_backend.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/base/log.h"

namespace etna::rag {

using json = nlohmann::json;

namespace {

constexpr const char* kDense = "dense";
constexpr int64_t kMetaPoint = 0;  // SQLite row ids start at 1, so no chunk has id 0

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// A response body, kept up to `limit` bytes: a longer one stops the transfer (CURLE_WRITE_ERROR).
struct Sink {
  std::string body;
  size_t limit = 0;
  bool too_long = false;
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  auto* sink = static_cast<Sink*>(out);
  if (size * n > sink->limit - std::min(sink->limit, sink->body.size())) {
    sink->too_long = true;
    return 0;
  }
  sink->body.append(data, size * n);
  return size * n;
}

// A string field of a JSON object, "" when it is missing or not a string.
std::string text_field(const json& j, const char* key) {
  if (!j.is_object()) return "";
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Failures worth another attempt: the peer may be restarting or briefly overloaded.
bool transient(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return true;
    default: return false;
  }
}

// Qdrant's error text ({"status": {"error": ...}}), else the start of the body.
std::string error_text(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("status") && j["status"].is_object() && j["status"].contains("error") &&
      j["status"]["error"].is_string())
    return j["status"]["error"].get<std::string>();
  if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  std::string s = body.substr(0, 200);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s.empty() ? "(empty body)" : s;
}

// Whether an http(s):// URL names this machine (127.x.x.x, localhost or [::1]).
bool loopback(const std::string& url) {
  const size_t start = url.find("://") + 3;
  const size_t end = url.find_first_of(":/", url[start] == '[' ? url.find(']', start) : start);
  const std::string host = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

struct Reply {
  long status = 0;
  json body;
};

class QdrantBackend final : public VectorBackend {
 public:
  QdrantBackend(VectorStoreOptions o, std::string collection)
      : opt_(std::move(o)), collection_(std::move(collection)), base_(opt_.url + "/collections/" + collection_) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (!opt_.api_key.empty() && opt_.url.rfind("http://", 0) == 0 && !loopback(opt_.url)) {
      static std::once_flag warned;
      std::call_once(warned, [this] {
        log::warn("the vector store key is sent unencrypted to {}: use https:// for a store on another machine",
                  opt_.url);
      });
    }
  }

  std::string where() const override { return fmt::format("collection {} of the vector store {}", collection_, opt_.url); }

  bool exists() override { return info().has_value(); }

  void check(const VectorMeta& meta) override {
    const std::optional<json> inf = info();
    if (!inf) return;
    const json* size = find_path(*inf, {"config", "params", "vectors", kDense, "size"});
    if (!size || !size->is_number_unsigned())
      fail(ErrorKind::conflict, "{} has no named vector '{}': it was not made by `etna ingest`; delete it or use another "
           "--collection name", where(), kDense);
    if (size->get<size_t>() != meta.dim)
      fail(ErrorKind::invalid_argument,
           "{} holds vectors of dimension {}, but the embedding model makes {}: use the model it was made with, or "
           "delete it (DELETE {}) and ingest again", where(), size->get<size_t>(), meta.dim, base_);
    const std::optional<json> have = read_meta();
    if (!have)
      fail(ErrorKind::conflict, "{} has no Etna record (point {}): it was not made by `etna ingest`; delete it or use "
           "another --collection name", where(), kMetaPoint);
    if (text_field(*have, "catalog") != meta.catalog_id)
      fail(ErrorKind::conflict, "{} holds the vectors of another catalogue (a collection of the same name in another "
           "data folder): ingest from that folder, copy its catalog.db here, or use another --collection name", where());
    if (text_field(*have, "model") != meta.model_id)
      fail(ErrorKind::invalid_argument, "{} was embedded with {}, not {}: use that model or ingest again", where(),
           text_field(*have, "model").empty() ? "?" : text_field(*have, "model"), meta.model_id);
  }

  void ensure(const VectorMeta& meta) override {
    check(meta);
    if (info()) return;
    const json create = {{"vectors", {{kDense, {{"size", meta.dim}, {"distance", "Cosine"}}}}}};
    const Reply r = send("PUT", base_, &create);
    const std::string text = r.body.is_string() ? r.body.get<std::string>() : r.body.dump();
    if ((r.status == 409 || r.status == 400) && text.find("already exists") != std::string::npos) {
      // made meanwhile by another process: it must match too
      check(meta);
      return;
    }
    expect_ok(r, "PUT", base_);
    write_meta({{"model", meta.model_id}, {"dim", meta.dim}, {"catalog", meta.catalog_id}, {"generation", 0}});
  }

  uint64_t generation(const std::string& catalog_id) override {
    const std::optional<json> m = info() ? read_meta() : std::nullopt;
    if (!m || text_field(*m, "catalog") != catalog_id) return 0;
    const json* g = find_path(*m, {"generation"});
    return g && g->is_number_unsigned() ? g->get<uint64_t>() : 0;
  }

  void set_generation(uint64_t g, const std::string& catalog_id) override {
    std::optional<json> m = info() ? read_meta() : std::nullopt;
    if (!m || text_field(*m, "catalog") != catalog_id) return;
    (*m)["generation"] = g;
    write_meta(*m);
  }

  void drop(const std::string& catalog_id) override {
    if (!info()) return;
    const std::optional<json> have = read_meta();
    if (have && text_field(*have, "catalog") == catalog_id) result("DELETE", base_, nullptr);
  }

  void upsert(const std::vector<ChunkVector>& chunks) override {
    json points = json::array();
    for (const auto& c : chunks)
      points.push_back({{"id", c.id}, {"vector", {{kDense, c.vector}}}, {"payload", c.payload}});
    const json body = {{"points", std::move(points)}};
    result("PUT", base_ + "/points?wait=true", &body);
  }

  void remove(const std::vector<int64_t>& ids) override {
    if (ids.empty()) return;
    const json body = {{"points", ids}};
    const Reply r = send("POST", base_ + "/points/delete?wait=true", &body);
    if (r.status == 404) return;  // no collection: nothing to remove
    expect_ok(r, "POST", base_ + "/points/delete");
  }

  std::vector<VectorHit> nearest(const std::vector<float>& query, size_t k) override {
    const json body = {{"query", query}, {"using", kDense}, {"limit", k}, {"with_payload", false}, {"with_vector", false}};
    const json res = result("POST", base_ + "/points/query", &body);
    std::vector<VectorHit> out;
    const json* points = find_path(res, {"points"});
    if (!points || !points->is_array()) malformed("/points/query");
    for (const auto& p : *points) {
      if (!p.is_object() || !p.contains("id") || !p["id"].is_number_integer() || !p.contains("score") ||
          !p["score"].is_number())
        malformed("/points/query");
      out.push_back({p["id"].get<int64_t>(), p["score"].get<float>()});
    }
    return out;
  }

  std::vector<std::pair<int64_t, std::vector<float>>> fetch(const std::vector<int64_t>& ids) override {
    std::vector<std::pair<int64_t, std::vector<float>>> out;
    if (ids.empty()) return out;
    const json body = {{"ids", ids}, {"with_payload", false}, {"with_vector", true}};
    const json res = result("POST", base_ + "/points", &body);
    if (!res.is_array()) malformed("/points");
    for (const auto& p : res) {
      const json* v = find_path(p, {"vector", kDense});
      if (!p.contains("id") || !p["id"].is_number_integer() || !v || !v->is_array()) continue;
      for (const auto& x : *v)
        if (!x.is_number()) malformed("/points");
      out.emplace_back(p["id"].get<int64_t>(), v->get<std::vector<float>>());
    }
    return out;
  }

  uint64_t count() override {
    if (!info()) return 0;
    const json body = {{"exact", true}};
    const json res = result("POST", base_ + "/points/count", &body);
    const json* n = find_path(res, {"count"});
    if (!n || !n->is_number_unsigned()) malformed("/points/count");
    const uint64_t all = n->get<uint64_t>();
    return all > 0 ? all - 1 : 0;  // less the Etna record
  }

 private:
  static const json* find_path(const json& j, std::initializer_list<const char*> keys) {
    const json* p = &j;
    for (const char* k : keys) {
      if (!p->is_object() || !p->contains(k)) return nullptr;  // never a type_error on an odd answer
      p = &(*p)[k];
    }
    return p;
  }

  [[noreturn]] void malformed(const std::string& what) const {
    fail(ErrorKind::internal, "vector store {}: unexpected answer to {}{}", opt_.url, "/collections/" + collection_, what);
  }

  // The collection's info ("result" of GET /collections/NAME), or nothing when it does not exist.
  std::optional<json> info() {
    const Reply r = send("GET", base_, nullptr);
    if (r.status == 404) return std::nullopt;
    expect_ok(r, "GET", base_);
    if (!r.body.is_object()) malformed("");
    const json* res = find_path(r.body, {"result"});
    if (res && !res->is_object()) malformed("");
    return res ? *res : json::object();
  }

  std::optional<json> read_meta() {
    const json body = {{"ids", json::array({kMetaPoint})}, {"with_payload", true}, {"with_vector", false}};
    const json res = result("POST", base_ + "/points", &body);
    if (!res.is_array() || res.empty()) return std::nullopt;
    const json* m = find_path(res[0], {"payload", "etna_meta"});
    if (!m || !m->is_object()) return std::nullopt;
    return *m;
  }

  void write_meta(const json& meta) {
    const json point = {
        {"points", json::array({{{"id", kMetaPoint}, {"vector", json::object()}, {"payload", {{"etna_meta", meta}}}}})}};
    result("PUT", base_ + "/points?wait=true", &point);
  }

  json result(const char* method, const std::string& url, const json* body) {
    const Reply r = send(method, url, body);
    expect_ok(r, method, url);
    if (!r.body.is_object()) malformed(url.substr(base_.size()));
    return r.body.value("result", json());
  }

  void expect_ok(const Reply& r, const char* method, const std::string& url) const {
    if (r.status >= 200 && r.status < 300) return;
    const std::string path = url.substr(opt_.url.size());
    const std::string text = r.body.is_string() ? error_text(r.body.get<std::string>()) : error_text(r.body.dump());
    if (r.status == 401 || r.status == 403)
      fail(ErrorKind::unavailable, "vector store {} refused the API key (HTTP {} to {} {}: {}): check --vector-store-key "
           "or $ETNA_VECTOR_STORE_KEY", opt_.url, r.status, method, path, text);
    if (r.status >= 500)
      fail(ErrorKind::unavailable, "vector store {} failed (HTTP {} to {} {}): {}", opt_.url, r.status, method, path, text);
    fail(ErrorKind::internal, "vector store {} answered HTTP {} to {} {}: {}", opt_.url, r.status, method, path, text);
  }

  // One request, retried after connection errors and 5xx answers. A body that is not JSON is
  // kept as a JSON string (for the error message).
  Reply send(const char* method, const std::string& url, const json* body) {
    std::lock_guard lock(mu_);
    const std::string payload = body ? body->dump(-1, ' ', false, json::error_handler_t::replace) : std::string();
    std::string last_error;
    for (int attempt = 0;; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200) * (1 << (attempt - 1)));
      Sink out;
      out.limit = opt_.max_response_bytes;
      long status = 0;
      const CURLcode rc = perform(method, url, body ? &payload : nullptr, out, status, last_error);
      if (out.too_long || rc == CURLE_FILESIZE_EXCEEDED)
        fail(ErrorKind::unavailable, "vector store {} sent an answer over {} bytes to {} {}: not a Qdrant API, or ask "
             "for less", opt_.url, opt_.max_response_bytes, method, url.substr(opt_.url.size()));
      const bool retry = (rc != CURLE_OK && transient(rc)) || (rc == CURLE_OK && status >= 500);
      if (retry && attempt < opt_.retries) continue;
      if (rc != CURLE_OK)
        fail(ErrorKind::unavailable, "vector store {} unreachable ({} {}: {}{})", opt_.url, method,
             url.substr(opt_.url.size()), last_error,
             attempt > 0 ? fmt::format(", after {} attempts", attempt + 1) : std::string());
      Reply r;
      r.status = status;
      r.body = json::parse(out.body, nullptr, false);
      if (r.body.is_discarded()) r.body = std::move(out.body);
      return r;
    }
  }

  // REQUIRES: mu_ held.
  CURLcode perform(const char* method, const std::string& url, const std::string* payload, Sink& out,
                   long& status, std::string& error) {
    if (!curl_) curl_.reset(curl_easy_init());
    if (!curl_) fail(ErrorKind::internal, "cannot start libcurl");
    CURL* c = curl_.get();
    curl_easy_reset(c);
    char errbuf[CURL_ERROR_SIZE] = {0};
    std::unique_ptr<curl_slist, SlistDeleter> hdrs(curl_slist_append(nullptr, "Content-Type: application/json"));
    // No "Expect: 100-continue" round trip before bodies over 1 KiB (a wait on every upsert).
    hdrs.reset(curl_slist_append(hdrs.release(), "Expect:"));
    if (!opt_.api_key.empty()) {
      // The only place the key goes: a request header, never a message.
      const std::string h = "api-key: " + opt_.api_key;
      hdrs.reset(curl_slist_append(hdrs.release(), h.c_str()));
    }
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs.get());
    if (payload) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload->data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload->size()));
    }
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, opt_.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, opt_.timeout_ms);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (const char* ca = std::getenv("ETNA_VECTOR_STORE_CA"); ca && *ca) curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &append_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(opt_.max_response_bytes));
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      return rc;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return rc;
  }

  VectorStoreOptions opt_;
  std::string collection_;
  std::string base_;  // <url>/collections/<collection>
  std::mutex mu_;
  std::unique_ptr<CURL, CurlDeleter> curl_;
};

}  // namespace

std::unique_ptr<VectorBackend> open_qdrant_backend(const VectorStoreOptions& options, const std::string& collection) {
  return std::make_unique<QdrantBackend>(options, collection);
}

}  // namespace etna::rag
