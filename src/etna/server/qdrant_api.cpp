#include "etna/server/qdrant_api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "etna/base/log.h"
#include "etna/server/web_app.h"
#include "etna/store/filter.h"

namespace etna::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using store::PointId;

// ---- envelope -------------------------------------------------------------------------------

void send_result(httplib::Response& res, json result) {
  json body = {{"result", std::move(result)}, {"status", "ok"}, {"time", request_elapsed_seconds()}};
  send_json(res, body, 200);
}

json qdrant_error_body(int /*status*/, const std::string& message) {
  return {{"status", {{"error", message}}}, {"time", request_elapsed_seconds()}};
}

json update_result(uint64_t operation_id) { return {{"operation_id", operation_id}, {"status", "completed"}}; }

// Qdrant answers 422 for bodies that parse but break a rule (e.g. limit 0).
[[noreturn]] void validation_error(const std::string& message) {
  throw HttpError(422, ErrorKind::invalid_argument, "Validation error in JSON body: " + message);
}

// ---- request parsing ------------------------------------------------------------------------

std::shared_ptr<store::Collection> find_collection(store::Database& db, const std::string& name) {
  std::shared_ptr<store::Collection> c;
  if (db.has_collection(name)) {
    try {
      c = db.acquire(name);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
    }
  }
  if (!c) fail(ErrorKind::not_found, "Not found: Collection `{}` doesn't exist!", name);
  return c;
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

void require_object(const json& body, const char* what) {
  if (!body.is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {} must be a JSON object", what);
}

std::vector<float> parse_vector(const json& j, const std::string& where) {
  const json* arr = &j;
  if (j.is_object()) {
    // {"": [...]} names the default vector; any other name is a named vector, which Etna lacks.
    if (j.size() == 1 && j.begin().key().empty()) {
      arr = &j.begin().value();
    } else {
      fail(ErrorKind::invalid_argument,
           "Format error in JSON body: {}: named and sparse vectors are not supported; send a plain array of numbers",
           where);
    }
  }
  if (!arr->is_array())
    fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: expected an array of numbers", where);
  std::vector<float> v;
  v.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    const json& x = (*arr)[i];
    if (!x.is_number()) {
      fail(ErrorKind::invalid_argument,
           "Format error in JSON body: {}[{}]: expected a number, got {} (NaN and infinities cannot be sent as JSON)",
           where, i, x.is_null() ? "null" : x.type_name());
    }
    double d = x.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > 3.4e38)
      fail(ErrorKind::invalid_argument, "Format error in JSON body: {}[{}]: {} is not a finite 32-bit float", where, i, d);
    v.push_back(static_cast<float>(d));
  }
  return v;
}

PointId parse_id(const json& j, const std::string& where) {
  try {
    return PointId::from_json(j);
  } catch (const Error& e) {
    fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: {}", where, e.what());
  }
}

std::vector<PointId> parse_ids(const json& j, const std::string& where) {
  if (!j.is_array()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: expected an array of point ids", where);
  std::vector<PointId> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) ids.push_back(parse_id(j[i], fmt::format("{}[{}]", where, i)));
  return ids;
}

std::shared_ptr<const store::Filter> parse_filter_field(const json& body, const char* name = "filter") {
  const json* f = field(body, name);
  if (!f) return nullptr;
  try {
    return store::parse_filter(*f);
  } catch (const Error& e) {
    throw Error(e.kind(), std::string("Format error in JSON body: ") + e.what());
  }
}

// {"points": [ids]} or {"filter": {...}} (Qdrant's PointsSelector), as used by delete and payload calls.
store::PointSelector parse_selector(const json& body, bool required = true) {
  const json* points = field(body, "points");
  const json* filter = field(body, "filter");
  if (points && filter)
    fail(ErrorKind::invalid_argument, "Format error in JSON body: give either \"points\" or \"filter\", not both");
  if (points) return store::PointSelector::by_ids(parse_ids(*points, "points"));
  if (filter) return store::PointSelector::by_filter(parse_filter_field(body));
  if (required)
    fail(ErrorKind::invalid_argument, "Format error in JSON body: expected \"points\" (a list of ids) or \"filter\"");
  return store::PointSelector::by_ids({});
}

void reject_unsupported(const json& body, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    if (field(body, k)) fail(ErrorKind::unsupported, "\"{}\" is not supported by Etna's Qdrant-compatible API", k);
  }
}

void reject_named_vector(const json& body, const char* key) {
  const json* u = field(body, key);
  if (u && !(u->is_string() && u->get<std::string>().empty()))
    fail(ErrorKind::unsupported, "\"{}\": named vectors are not supported; omit it to use the collection's vector", key);
}

size_t parse_count(const json& body, const char* name, size_t fallback, bool positive) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer() || (v->is_number_integer() && v->get<int64_t>() < 0 && !v->is_number_unsigned()))
    fail(ErrorKind::invalid_argument, "Format error in JSON body: \"{}\" must be a non-negative integer", name);
  uint64_t n = v->get<uint64_t>();
  if (positive && n == 0) validation_error(fmt::format("{}: value 0 invalid, must be 1 or larger", name));
  if (n > (1ull << 32)) validation_error(fmt::format("{}: value {} is too large", name, n));
  return static_cast<size_t>(n);
}

bool parse_with_vector(const json& body) {
  const json* v = field(body, "with_vector");
  if (!v) v = field(body, "with_vectors");
  if (!v) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_array()) {
    for (const auto& name : *v)
      if (name.is_string() && name.get<std::string>().empty()) return true;
    if (v->empty()) return false;
    fail(ErrorKind::unsupported, "with_vector: named vectors are not supported; use true or false");
  }
  fail(ErrorKind::invalid_argument, "Format error in JSON body: with_vector: expected true, false or a list of names");
}

store::PayloadSelector parse_with_payload(const json& body, bool default_all) {
  const json* v = field(body, "with_payload");
  if (!v) return default_all ? store::PayloadSelector::all() : store::PayloadSelector::none();
  try {
    return store::PayloadSelector::from_json(*v);
  } catch (const Error& e) {
    throw Error(e.kind(), std::string("Format error in JSON body: ") + e.what());
  }
}

// The search part shared by search, search batch and query: filter, params, limit, offset, etc.
store::SearchRequest parse_search_common(const json& body) {
  store::SearchRequest r;
  r.filter = parse_filter_field(body);
  r.limit = parse_count(body, "limit", 10, true);
  r.offset = parse_count(body, "offset", 0, false);
  r.with_payload = parse_with_payload(body, false);
  r.with_vector = parse_with_vector(body);
  if (const json* t = field(body, "score_threshold")) {
    if (!t->is_number()) fail(ErrorKind::invalid_argument, "Format error in JSON body: score_threshold must be a number");
    r.score_threshold = t->get<float>();
  }
  if (const json* p = field(body, "params")) {
    if (!p->is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params must be an object");
    if (const json* ef = field(*p, "hnsw_ef")) {
      if (!ef->is_number_unsigned() || ef->get<uint64_t>() == 0)
        validation_error("params.hnsw_ef must be a positive integer");
      r.hnsw_ef = ef->get<size_t>();
    }
    if (const json* ex = field(*p, "exact")) {
      if (!ex->is_boolean()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params.exact must be a boolean");
      r.exact = ex->get<bool>();
    }
  }
  return r;
}

store::SearchRequest parse_search(const json& body) {
  require_object(body, "search request");
  store::SearchRequest r = parse_search_common(body);
  const json* v = field(body, "vector");
  if (!v) fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `vector`");
  if (v->is_object() && v->contains("name") && v->contains("vector")) {
    // NamedVectorStruct {"name": ..., "vector": [...]}: only the default (empty) name exists.
    if (!(*v)["name"].is_string() || !(*v)["name"].get<std::string>().empty())
      fail(ErrorKind::unsupported, "vector.name: named vectors are not supported");
    r.vector = parse_vector((*v)["vector"], "vector.vector");
  } else {
    r.vector = parse_vector(*v, "vector");
  }
  return r;
}

// ---- response shaping -----------------------------------------------------------------------

// A float as the double with the same shortest decimal form (0.95f -> 0.95, not 0.949999988...),
// which is how Qdrant prints its f32 values.
double f32(float x) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
  if (ec != std::errc()) return x;
  double d = x;
  std::from_chars(buf, end, d);
  return d;
}

json vector_json(const std::vector<float>& v) {
  json a = json::array();
  for (float x : v) a.push_back(f32(x));
  return a;
}

// Rewrites the float-valued fields of a collection config in their shortest f32 form.
void clean_config_floats(json& config) {
  auto q = config.find("quantization_config");
  if (q != config.end() && q->is_object() && q->contains("scalar")) {
    json& scalar = (*q)["scalar"];
    if (scalar.contains("quantile") && scalar["quantile"].is_number_float())
      scalar["quantile"] = f32(scalar["quantile"].get<float>());
  }
}

json record_json(const store::Record& r) {
  json j = {{"id", r.id.to_json()}};
  j["payload"] = r.payload ? *r.payload : json(nullptr);
  j["vector"] = r.vector ? vector_json(*r.vector) : json(nullptr);
  return j;
}

json scored_json(const store::ScoredPoint& p) {
  json j = {{"id", p.id.to_json()}, {"version", p.version}, {"score", f32(p.score)}};
  j["payload"] = p.payload ? *p.payload : json(nullptr);
  j["vector"] = p.vector ? vector_json(*p.vector) : json(nullptr);
  return j;
}

json scored_list(const std::vector<store::ScoredPoint>& pts) {
  json a = json::array();
  for (const auto& p : pts) a.push_back(scored_json(p));
  return a;
}

json collection_info_json(const store::CollectionInfo& info) {
  json schema = json::object();
  for (const auto& [name, f] : info.payload_schema)
    schema[name] = {{"data_type", store::payload_schema_type_name(f.type)}, {"points", f.points}};
  json config = info.config.to_json();
  clean_config_floats(config);
  return {{"status", info.status},
          {"optimizer_status", "ok"},
          {"vectors_count", info.points_count},
          {"indexed_vectors_count", info.indexed_vectors_count},
          {"points_count", info.points_count},
          {"segments_count", info.segments_count},
          {"config", config},
          {"payload_schema", schema}};
}

std::string iso_time(fs::file_time_type t) {
  auto sys = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::file_clock::to_sys(t));
  std::time_t tt = std::chrono::system_clock::to_time_t(sys);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

json snapshot_json(const fs::path& p) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  auto mtime = fs::last_write_time(p, ec);
  return {{"name", p.filename().string()},
          {"creation_time", ec ? json(nullptr) : json(iso_time(mtime))},
          {"size", ec ? 0 : size},
          {"checksum", nullptr}};
}

// Resolves a recover location (plain path, file:// URL, or a bare snapshot name of `collection`)
// and checks that it lies inside the store's snapshot directory.
fs::path resolve_snapshot_location(const store::Database& db, const std::string& collection, std::string location) {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0)
    fail(ErrorKind::unsupported, "recovering from a remote URL is not supported; give a file:// URL or a path under {}",
         (db.dir() / "snapshots").string());
  if (location.rfind("file://", 0) == 0) {
    location = location.substr(7);
    if (location.rfind("localhost/", 0) == 0) location = location.substr(9);
    std::string decoded;
    for (size_t i = 0; i < location.size(); ++i) {
      if (location[i] == '%' && i + 2 < location.size() && std::isxdigit(static_cast<unsigned char>(location[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(location[i + 2]))) {
        decoded.push_back(static_cast<char>(std::stoi(location.substr(i + 1, 2), nullptr, 16)));
        i += 2;
      } else {
        decoded.push_back(location[i]);
      }
    }
    location = decoded;
  }
  if (location.empty()) fail(ErrorKind::invalid_argument, "Format error in JSON body: \"location\" is empty");
  fs::path root = fs::weakly_canonical(db.dir() / "snapshots");
  fs::path p(location);
  if (p.is_relative()) p = (location.find('/') == std::string::npos) ? root / collection / p : root / p;
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(p, ec);
  if (ec) fail(ErrorKind::invalid_argument, "cannot resolve snapshot location '{}': {}", location, ec.message());
  auto rel = canon.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..")
    fail(ErrorKind::invalid_argument, "snapshot location '{}' is outside the snapshot directory {}", location, root.string());
  if (!fs::is_regular_file(canon, ec)) fail(ErrorKind::not_found, "Not found: snapshot file '{}' does not exist", location);
  return canon;
}

PointId parse_path_id(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = std::strtoull(text.c_str(), &end, 10);
    if (errno == ERANGE) fail(ErrorKind::invalid_argument, "point id '{}' does not fit in 64 bits", text);
    return PointId(static_cast<uint64_t>(n));
  }
  try {
    return PointId::uuid(text);
  } catch (const Error&) {
    fail(ErrorKind::invalid_argument, "'{}' is not a valid point id: expected an unsigned integer or a UUID", text);
  }
}

// ---- handlers -------------------------------------------------------------------------------

std::vector<store::Point> parse_upsert(const json& body) {
  require_object(body, "upsert request");
  std::vector<store::Point> points;
  if (const json* list = field(body, "points")) {
    if (!list->is_array()) fail(ErrorKind::invalid_argument, "Format error in JSON body: \"points\" must be an array");
    points.reserve(list->size());
    for (size_t i = 0; i < list->size(); ++i) {
      const json& p = (*list)[i];
      std::string where = fmt::format("points[{}]", i);
      if (!p.is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {} must be an object", where);
      store::Point pt;
      const json* id = field(p, "id");
      if (!id) fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: missing field `id`", where);
      pt.id = parse_id(*id, where + ".id");
      const json* v = field(p, "vector");
      if (!v) fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: missing field `vector`", where);
      pt.vector = parse_vector(*v, where + ".vector");
      if (const json* pl = field(p, "payload")) {
        if (!pl->is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {}.payload must be an object", where);
        pt.payload = *pl;
      }
      points.push_back(std::move(pt));
    }
  } else if (const json* batch = field(body, "batch")) {
    if (!batch->is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: \"batch\" must be an object");
    const json* ids = field(*batch, "ids");
    const json* vectors = field(*batch, "vectors");
    const json* payloads = field(*batch, "payloads");
    if (!ids) fail(ErrorKind::invalid_argument, "Format error in JSON body: batch: missing field `ids`");
    if (!vectors) fail(ErrorKind::invalid_argument, "Format error in JSON body: batch: missing field `vectors`");
    std::vector<PointId> id_list = parse_ids(*ids, "batch.ids");
    if (!vectors->is_array())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: batch.vectors must be an array of vectors");
    if (vectors->size() != id_list.size())
      fail(ErrorKind::invalid_argument, "Wrong input: batch has {} ids but {} vectors", id_list.size(), vectors->size());
    if (payloads && (!payloads->is_array() || payloads->size() != id_list.size()))
      fail(ErrorKind::invalid_argument, "Wrong input: batch.payloads must be an array with one entry per id ({})", id_list.size());
    points.reserve(id_list.size());
    for (size_t i = 0; i < id_list.size(); ++i) {
      store::Point pt;
      pt.id = id_list[i];
      pt.vector = parse_vector((*vectors)[i], fmt::format("batch.vectors[{}]", i));
      if (payloads && !(*payloads)[i].is_null()) {
        if (!(*payloads)[i].is_object())
          fail(ErrorKind::invalid_argument, "Format error in JSON body: batch.payloads[{}] must be an object or null", i);
        pt.payload = (*payloads)[i];
      }
      points.push_back(std::move(pt));
    }
  } else {
    fail(ErrorKind::invalid_argument, "Format error in JSON body: expected \"points\" (a list) or \"batch\" ({{ids, vectors, payloads}})");
  }
  return points;
}

// Store errors about bad input read better with Qdrant's prefix (clients and users grep for it).
template <typename F>
auto wrong_input(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const HttpError&) {
    throw;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::invalid_argument && std::string(e.what()).rfind("Format error", 0) != 0 &&
        std::string(e.what()).rfind("Wrong input", 0) != 0)
      throw Error(e.kind(), std::string("Wrong input: ") + e.what());
    throw;
  }
}

json run_query(store::Collection& c, const json& body) {
  require_object(body, "query request");
  reject_unsupported(body, {"prefetch", "lookup_from"});
  reject_named_vector(body, "using");
  const json* q = field(body, "query");
  if (!q) {
    // No query: points in id order (with score 0), honouring filter, offset and limit.
    store::ScrollRequest sr;
    sr.filter = parse_filter_field(body);
    size_t limit = parse_count(body, "limit", 10, true);
    size_t offset = parse_count(body, "offset", 0, false);
    sr.limit = limit + offset;
    sr.with_payload = parse_with_payload(body, false);
    sr.with_vector = parse_with_vector(body);
    auto page = c.scroll(sr);
    json points = json::array();
    for (size_t i = offset; i < page.points.size(); ++i) {
      json j = record_json(page.points[i]);
      j["version"] = 0;
      j["score"] = 0.0;
      points.push_back(std::move(j));
    }
    return {{"points", points}};
  }
  store::SearchRequest r = parse_search_common(body);
  const json* target = q;
  if (q->is_object()) {
    if (q->contains("nearest")) {
      target = &(*q)["nearest"];
    } else {
      std::string kind = q->empty() ? "{}" : q->begin().key();
      fail(ErrorKind::unsupported,
           "query type \"{}\" is not supported by Etna; use a vector, a point id, or {{\"nearest\": vector or id}}", kind);
    }
  }
  std::optional<PointId> exclude;
  if (target->is_array() || target->is_object()) {
    r.vector = parse_vector(*target, "query");
  } else if (target->is_number_unsigned() || target->is_string()) {
    PointId id = parse_id(*target, "query");
    auto recs = c.retrieve({id}, store::PayloadSelector::none(), true);
    if (recs.empty() || !recs[0].vector) fail(ErrorKind::not_found, "Not found: No point with id {} found", id.to_string());
    r.vector = *recs[0].vector;
    exclude = id;
  } else {
    fail(ErrorKind::invalid_argument, "Format error in JSON body: query: expected a vector, a point id or an object");
  }
  if (exclude) {
    // The point asked about is not its own neighbour (as in Qdrant's id-based queries).
    auto f = std::make_shared<store::Filter>();
    if (r.filter) f->must.emplace_back(r.filter);
    f->must_not.emplace_back(store::HasIdCondition{{*exclude}});
    r.filter = f;
  }
  return {{"points", scored_list(c.search(r))}};
}

}  // namespace

void register_qdrant_routes(HttpServer& server, store::Database& db) {
  server.set_error_format("/collections", qdrant_error_body);
  server.set_error_format("/healthz", qdrant_error_body);
  server.set_error_format("/readyz", qdrant_error_body);
  server.set_error_format("/livez", qdrant_error_body);
  // Qdrant's other root-level route families: a 404 (or any error) there is in Qdrant's envelope,
  // which its clients parse, even where Etna has no such route.
  for (const char* p : {"/aliases", "/cluster", "/telemetry", "/snapshots", "/locks", "/issues"})
    server.set_error_format(p, qdrant_error_body);
  store::Database* dbp = &db;
  const std::string C = "/collections/([^/]+)";

  // Root: Qdrant's version banner (the JS client reads .version to check compatibility).
  // Browsers (Accept: text/html) get the web app instead (web_app.h).
  server.route(Method::get, "/", [&server](const httplib::Request& req, httplib::Response& res) {
    if (serve_web_index(req, res)) return;
    json body = {{"title", "etna - qdrant-compatible vector search engine"},
                 {"version", kQdrantCompatVersion},
                 {"etna_version", server.options().version}};
    send_json(res, body);
  });
  for (const char* probe : {"/healthz", "/livez", "/readyz"}) {
    server.route(Method::get, probe, [](const httplib::Request&, httplib::Response& res) {
      res.set_content("healthz check passed", "text/plain");
    });
  }

  // ---- collections ----
  server.route(Method::get, "/collections", [dbp](const httplib::Request&, httplib::Response& res) {
    json list = json::array();
    for (const auto& n : dbp->list_collections()) list.push_back({{"name", n}});
    send_result(res, {{"collections", list}});
  });
  server.route(Method::get, C + "/exists", [dbp](const httplib::Request& req, httplib::Response& res) {
    send_result(res, {{"exists", dbp->has_collection(req.matches[1].str())}});
  });
  server.route(Method::get, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    send_result(res, collection_info_json(c->info()));
  });
  server.route(Method::put, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    json body = parse_json_body(req);
    require_object(body, "collection config");
    reject_unsupported(body, {"sparse_vectors", "init_from", "sharding_method"});
    store::CollectionConfig config = wrong_input([&] { return store::CollectionConfig::from_create_json(body); });
    if (dbp->has_collection(name)) fail(ErrorKind::conflict, "Wrong input: Collection `{}` already exists!", name);
    wrong_input([&] { return &dbp->create_collection(name, config); });
    send_result(res, true);
  });
  server.route(Method::del, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    send_result(res, dbp->drop_collection(req.matches[1].str()));
  });

  // ---- points ----
  server.route(Method::put, C + "/points", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    auto points = parse_upsert(body);
    uint64_t op = wrong_input([&] { return c->upsert(std::move(points)); });
    send_result(res, update_result(op));
  });
  server.route(Method::post, C + "/points/delete", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "delete request");
    auto sel = parse_selector(body);
    send_result(res, update_result(wrong_input([&] { return c->delete_points(sel); })));
  });
  server.route(Method::post, C + "/points", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "retrieve request");
    const json* ids = field(body, "ids");
    if (!ids) fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `ids`");
    auto recs = c->retrieve(parse_ids(*ids, "ids"), parse_with_payload(body, true), parse_with_vector(body));
    json out = json::array();
    for (const auto& r : recs) out.push_back(record_json(r));
    send_result(res, out);
  });
  server.route(Method::get, C + "/points/([^/]+)", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    PointId id = parse_path_id(req.matches[2].str());
    auto recs = c->retrieve({id}, store::PayloadSelector::all(), true);
    if (recs.empty()) fail(ErrorKind::not_found, "Not found: No point with id {} found", id.to_string());
    send_result(res, record_json(recs[0]));
  });
  server.route(Method::post, C + "/points/search", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    auto r = parse_search(body);
    send_result(res, scored_list(wrong_input([&] { return c->search(r); })));
  });
  server.route(Method::post, C + "/points/search/batch", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "search batch request");
    const json* searches = field(body, "searches");
    if (!searches || !searches->is_array())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `searches` (an array of search requests)");
    std::vector<store::SearchRequest> reqs;
    for (size_t i = 0; i < searches->size(); ++i) {
      try {
        reqs.push_back(parse_search((*searches)[i]));
      } catch (const HttpError& e) {
        throw HttpError(e.status(), e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
      } catch (const Error& e) {
        throw Error(e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
      }
    }
    // Check dimensions here so the error can name the offending search.
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (reqs[i].vector.size() != c->config().dim)
        fail(ErrorKind::invalid_argument, "Wrong input: searches[{}]: vector has {} dimensions, collection '{}' expects {}", i,
             reqs[i].vector.size(), c->name(), c->config().dim);
    }
    auto results = wrong_input([&] { return c->search_batch(reqs); });
    json out = json::array();
    for (const auto& r : results) out.push_back(scored_list(r));
    send_result(res, out);
  });
  server.route(Method::post, C + "/points/query", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req, true);
    send_result(res, wrong_input([&] { return run_query(*c, body); }));
  });
  server.route(Method::post, C + "/points/query/batch", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "query batch request");
    const json* searches = field(body, "searches");
    if (!searches || !searches->is_array())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `searches` (an array of query requests)");
    json out = json::array();
    for (size_t i = 0; i < searches->size(); ++i) {
      try {
        out.push_back(wrong_input([&] { return run_query(*c, (*searches)[i]); }));
      } catch (const HttpError& e) {
        throw HttpError(e.status(), e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
      } catch (const Error& e) {
        throw Error(e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
      }
    }
    send_result(res, out);
  });
  server.route(Method::post, C + "/points/scroll", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req, true);
    require_object(body, "scroll request");
    reject_unsupported(body, {"order_by"});
    store::ScrollRequest sr;
    if (const json* off = field(body, "offset")) sr.offset = parse_id(*off, "offset");
    sr.limit = parse_count(body, "limit", 10, true);
    sr.filter = parse_filter_field(body);
    sr.with_payload = parse_with_payload(body, true);
    sr.with_vector = parse_with_vector(body);
    auto page = wrong_input([&] { return c->scroll(sr); });
    json points = json::array();
    for (const auto& r : page.points) points.push_back(record_json(r));
    send_result(res, {{"points", points},
                      {"next_page_offset", page.next_page_offset ? page.next_page_offset->to_json() : json(nullptr)}});
  });
  server.route(Method::post, C + "/points/count", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req, true);
    require_object(body, "count request");
    auto f = parse_filter_field(body);
    send_result(res, {{"count", c->count(f.get())}});
  });

  // ---- payload ----
  auto payload_update = [dbp](bool overwrite) {
    return [dbp, overwrite](const httplib::Request& req, httplib::Response& res) {
      auto c = find_collection(*dbp, req.matches[1].str());
      json body = parse_json_body(req);
      require_object(body, "payload request");
      reject_unsupported(body, {"key"});
      const json* payload = field(body, "payload");
      if (!payload || !payload->is_object())
        fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `payload` (a JSON object)");
      auto sel = parse_selector(body);
      uint64_t op = wrong_input([&] { return overwrite ? c->overwrite_payload(*payload, sel) : c->set_payload(*payload, sel); });
      send_result(res, update_result(op));
    };
  };
  server.route(Method::post, C + "/points/payload", payload_update(false));
  server.route(Method::put, C + "/points/payload", payload_update(true));
  server.route(Method::post, C + "/points/payload/delete", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "delete payload request");
    const json* keys = field(body, "keys");
    if (!keys || !keys->is_array())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `keys` (an array of payload keys)");
    std::vector<std::string> ks;
    for (const auto& k : *keys) {
      if (!k.is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: keys must be strings");
      ks.push_back(k.get<std::string>());
    }
    auto sel = parse_selector(body);
    send_result(res, update_result(wrong_input([&] { return c->delete_payload(ks, sel); })));
  });
  server.route(Method::post, C + "/points/payload/clear", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "clear payload request");
    auto sel = parse_selector(body);
    send_result(res, update_result(wrong_input([&] { return c->clear_payload(sel); })));
  });

  // ---- payload indexes ----
  server.route(Method::put, C + "/index", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "create index request");
    const json* name = field(body, "field_name");
    if (!name || !name->is_string() || name->get<std::string>().empty())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `field_name`");
    const json* schema = field(body, "field_schema");
    if (!schema) fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `field_schema`");
    std::string type;
    if (schema->is_string()) {
      type = schema->get<std::string>();
    } else if (schema->is_object() && schema->contains("type") && (*schema)["type"].is_string()) {
      type = (*schema)["type"].get<std::string>();
    } else {
      fail(ErrorKind::invalid_argument, "Format error in JSON body: field_schema must be a type name or {{\"type\": ...}}");
    }
    auto t = wrong_input([&] { return store::parse_payload_schema_type(type); });
    send_result(res, update_result(wrong_input([&] { return c->create_payload_index(name->get<std::string>(), t); })));
  });
  server.route(Method::del, C + "/index/([^/]+)", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    send_result(res, update_result(wrong_input([&] { return c->delete_payload_index(req.matches[2].str()); })));
  });

  // ---- snapshots ----
  server.route(Method::post, C + "/snapshots", [dbp](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    find_collection(*dbp, name);
    send_result(res, snapshot_json(dbp->snapshot(name)));
  });
  server.route(Method::get, C + "/snapshots", [dbp](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    find_collection(*dbp, name);
    json out = json::array();
    for (const auto& p : dbp->list_snapshots(name)) out.push_back(snapshot_json(p));
    send_result(res, out);
  });
  server.route(Method::put, C + "/snapshots/recover", [dbp](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    json body = parse_json_body(req);
    require_object(body, "recover request");
    const json* loc = field(body, "location");
    if (!loc || !loc->is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `location`");
    if (field(body, "checksum"))
      fail(ErrorKind::unsupported, "snapshot checksums are not verified by Etna; omit \"checksum\"");
    fs::path file = resolve_snapshot_location(*dbp, name, loc->get<std::string>());
    dbp->restore(name, file);
    send_result(res, true);
  });
  auto find_snapshot = [](store::Database& db, const std::string& collection, const std::string& snap) {
    for (const auto& p : db.list_snapshots(collection))
      if (p.filename().string() == snap) return p;
    fail(ErrorKind::not_found, "Not found: Snapshot {} not found", snap);
  };
  server.route(Method::get, C + "/snapshots/([^/]+)", [dbp, find_snapshot](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    find_collection(*dbp, name);
    fs::path p = find_snapshot(*dbp, name, req.matches[2].str());
    std::ifstream in(p, std::ios::binary);
    if (!in) fail(ErrorKind::io, "cannot read snapshot {}", p.string());
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    res.set_content(std::move(data), "application/octet-stream");
  });
  server.route(Method::del, C + "/snapshots/([^/]+)", [dbp, find_snapshot](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    find_collection(*dbp, name);
    fs::path p = find_snapshot(*dbp, name, req.matches[2].str());
    std::error_code ec;
    fs::remove(p, ec);
    if (ec) fail(ErrorKind::io, "cannot delete snapshot {}: {}", p.string(), ec.message());
    send_result(res, true);
  });
}

}  // namespace etna::server
