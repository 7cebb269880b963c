#include "etna/server/qdrant_api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
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

void send_result(httplib::Response& res, json result, const store::SearchPlan* plan = nullptr) {
  json body = {{"result", std::move(result)}, {"status", "ok"}, {"time", request_elapsed_seconds()}};
  // Collections with named or sparse vectors do not plan (they have no planner): no "plan" then.
  if (plan && !plan->index.empty()) body["plan"] = {{"index", plan->index}, {"reason", plan->reason}};
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

std::shared_ptr<store::Collection> find_collection(store::Database& db, const std::string& alias_or_name) {
  const std::string name = db.resolve(alias_or_name);
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
      fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: expected an array of numbers", where);
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

store::SparseVector parse_sparse(const json& j, const std::string& where) {
  try {
    return store::SparseVector::from_json(j, where);
  } catch (const Error& e) {
    throw Error(e.kind(), std::string("Format error in JSON body: ") + e.what());
  }
}

bool is_sparse_json(const json& j) { return j.is_object() && j.contains("indices") && j.contains("values"); }

// A point's vectors: a plain array (the default vector) or an object of named vectors, each a
// dense array or a sparse {indices, values}.
void parse_point_vectors(const json& j, const std::string& where, store::Point& pt) {
  if (j.is_array()) {
    pt.vector = parse_vector(j, where);
    return;
  }
  if (!j.is_object())
    fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: expected an array of numbers or named vectors", where);
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string w = where + "." + (it.key().empty() ? std::string("\"\"") : it.key());
    if (it.value().is_object()) {
      if (!is_sparse_json(it.value()))
        fail(ErrorKind::unsupported, "{}: only dense arrays and sparse {{indices, values}} vectors are supported "
             "(documents, images and multi-vectors are not)", w);
      pt.named.sparse[it.key()] = parse_sparse(it.value(), w);
    } else if (it.value().is_array() && !it.value().empty() && it.value()[0].is_array()) {
      fail(ErrorKind::unsupported, "{}: multi-vectors (arrays of vectors) are not supported", w);
    } else {
      pt.named.dense[it.key()] = parse_vector(it.value(), w);
    }
  }
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

// The vector names a with_vector list asks for (none: all, or with_vector is a boolean).
std::optional<std::set<std::string>> vector_names(const json& body) {
  const json* v = field(body, "with_vector");
  if (!v) v = field(body, "with_vectors");
  if (!v || !v->is_array()) return std::nullopt;
  std::set<std::string> names;
  for (const auto& n : *v)
    if (n.is_string()) names.insert(n.get<std::string>());
  return names;
}

bool parse_with_vector(const json& body) {
  const json* v = field(body, "with_vector");
  if (!v) v = field(body, "with_vectors");
  if (!v) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_array()) {
    for (const auto& name : *v)
      if (!name.is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: with_vector: names must be strings");
    return !v->empty();
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

// params.quantization: {rescore, oversampling, ignore}. Etna always rescores with the floats.
std::optional<double> parse_quantization_params(const json& params) {
  const json* q = field(params, "quantization");
  if (!q) return std::nullopt;
  if (!q->is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params.quantization must be an object");
  if (const json* r = field(*q, "rescore"); r && *r == false)
    fail(ErrorKind::unsupported, "params.quantization.rescore = false is not supported (Etna always rescores)");
  if (const json* i = field(*q, "ignore"); i && *i == true)
    fail(ErrorKind::unsupported, "params.quantization.ignore = true is not supported");
  if (const json* o = field(*q, "oversampling")) {
    if (!o->is_number() || o->get<double>() < 1.0 || o->get<double>() > 1000.0)
      validation_error("params.quantization.oversampling must be a number between 1 and 1000");
    return o->get<double>();
  }
  return std::nullopt;
}

// params.ivf_nprobe (an Etna extension): lists an IVF collection scans.
std::optional<size_t> parse_ivf_nprobe(const json& params) {
  const json* np = field(params, "ivf_nprobe");
  if (!np) return std::nullopt;
  if (!np->is_number_unsigned() || np->get<uint64_t>() == 0)
    validation_error("params.ivf_nprobe must be a positive integer (it is clamped to the collection's nlist)");
  return np->get<size_t>();
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
    r.oversampling = parse_quantization_params(*p);
    r.ivf_nprobe = parse_ivf_nprobe(*p);
  }
  return r;
}

// params.debug (an Etna extension): the response gets a top-level "plan" next to "result".
bool wants_plan(const json& body) {
  const json* p = field(body, "params");
  const json* d = p && p->is_object() ? field(*p, "debug") : nullptr;
  if (d && !d->is_boolean()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params.debug must be a boolean");
  return d && d->get<bool>();
}

store::SearchRequest parse_search(const json& body) {
  require_object(body, "search request");
  store::SearchRequest r = parse_search_common(body);
  const json* v = field(body, "vector");
  if (!v) fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `vector`");
  if (v->is_object() && v->contains("name") && v->contains("vector")) {
    // {"name": ..., "vector": [...]} (a named dense vector) or {"name", "vector": {indices, values}}.
    if (!(*v)["name"].is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: vector.name must be a string");
    r.using_name = (*v)["name"].get<std::string>();
    if (is_sparse_json((*v)["vector"])) r.sparse = parse_sparse((*v)["vector"], "vector.vector");
    else r.vector = parse_vector((*v)["vector"], "vector.vector");
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

using Names = std::optional<std::set<std::string>>;

json vectors_json(const std::optional<std::vector<float>>& v, const std::optional<store::NamedVectors>& nv,
                  const Names& names) {
  if (nv) {
    json o = json::object();
    for (const auto& [n, d] : nv->dense)
      if (!names || names->count(n)) o[n] = vector_json(d);
    for (const auto& [n, sv] : nv->sparse)
      if (!names || names->count(n)) {
        json vals = json::array();
        for (float x : sv.values) vals.push_back(f32(x));
        o[n] = {{"indices", sv.indices}, {"values", vals}};
      }
    return o;
  }
  if (v && (!names || names->count(""))) return vector_json(*v);
  return nullptr;
}

json record_json(const store::Record& r, const Names& names = std::nullopt) {
  json j = {{"id", r.id.to_json()}};
  j["payload"] = r.payload ? *r.payload : json(nullptr);
  j["vector"] = vectors_json(r.vector, r.vectors, names);
  return j;
}

json scored_json(const store::ScoredPoint& p, const Names& names = std::nullopt) {
  json j = {{"id", p.id.to_json()}, {"version", p.version}, {"score", f32(p.score)}};
  j["payload"] = p.payload ? *p.payload : json(nullptr);
  j["vector"] = vectors_json(p.vector, p.vectors, names);
  return j;
}

json scored_list(const std::vector<store::ScoredPoint>& pts, const Names& names = std::nullopt) {
  json a = json::array();
  for (const auto& p : pts) a.push_back(scored_json(p, names));
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
      parse_point_vectors(*v, where + ".vector", pt);
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
    if (!vectors->is_array() && !vectors->is_object())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: batch.vectors must be an array of vectors or named lists");
    if (vectors->is_object()) {
      for (auto it = vectors->begin(); it != vectors->end(); ++it)
        if (!it.value().is_array() || it.value().size() != id_list.size())
          fail(ErrorKind::invalid_argument, "Wrong input: batch.vectors.{} must hold one vector per id ({})", it.key(),
               id_list.size());
    } else if (vectors->size() != id_list.size()) {
      fail(ErrorKind::invalid_argument, "Wrong input: batch has {} ids but {} vectors", id_list.size(), vectors->size());
    }
    if (payloads && (!payloads->is_array() || payloads->size() != id_list.size()))
      fail(ErrorKind::invalid_argument, "Wrong input: batch.payloads must be an array with one entry per id ({})", id_list.size());
    points.reserve(id_list.size());
    for (size_t i = 0; i < id_list.size(); ++i) {
      store::Point pt;
      pt.id = id_list[i];
      if (vectors->is_object()) {
        json named = json::object();
        for (auto it = vectors->begin(); it != vectors->end(); ++it)
          if (!it.value()[i].is_null()) named[it.key()] = it.value()[i];
        parse_point_vectors(named, fmt::format("batch.vectors[{}]", i), pt);
      } else {
        parse_point_vectors((*vectors)[i], fmt::format("batch.vectors[{}]", i), pt);
      }
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

// ---- Query API ------------------------------------------------------------------------------
//
// A query is evaluated as a tree: each prefetch is a query of its own (nested to any depth) whose
// results are the candidates of the stage above. Internally stages pass scored ids; payloads and
// vectors are fetched once for the final page.

using Hits = std::vector<store::ScoredPoint>;
using FilterPtr = std::shared_ptr<const store::Filter>;

FilterPtr and_filters(FilterPtr a, FilterPtr b) {
  if (!a || a->empty()) return b;
  if (!b || b->empty()) return a;
  auto f = std::make_shared<store::Filter>();
  f->must.emplace_back(a);
  f->must.emplace_back(b);
  return f;
}

FilterPtr with_ids(FilterPtr f, std::vector<PointId> ids, bool exclude) {
  auto g = std::make_shared<store::Filter>();
  if (f && !f->empty()) g->must.emplace_back(f);
  if (exclude) g->must_not.emplace_back(store::HasIdCondition{std::move(ids)});
  else g->must.emplace_back(store::HasIdCondition{std::move(ids)});
  return g;
}

std::string using_of(const json& body) {
  const json* u = field(body, "using");
  if (!u) return "";
  if (!u->is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: \"using\" must be a vector name");
  return u->get<std::string>();
}

// A vector given to a query: dense, sparse, or the stored vector of a point (by id).
struct QueryVector {
  std::vector<float> dense;
  std::optional<store::SparseVector> sparse;
  std::optional<PointId> from;  // the point it was read from (excluded from the results)
};

QueryVector query_vector(store::Collection& c, const json& j, const std::string& using_name, const std::string& where) {
  QueryVector q;
  if (j.is_number_unsigned() || j.is_string()) {
    PointId id = parse_id(j, where);
    auto recs = c.retrieve({id}, store::PayloadSelector::none(), true);
    if (recs.empty()) fail(ErrorKind::not_found, "Not found: No point with id {} found", id.to_string());
    const auto& r = recs[0];
    if (r.vectors) {
      if (auto it = r.vectors->dense.find(using_name); it != r.vectors->dense.end()) q.dense = it->second;
      else if (auto s = r.vectors->sparse.find(using_name); s != r.vectors->sparse.end()) q.sparse = s->second;
      else fail(ErrorKind::invalid_argument, "Wrong input: point {} has no vector '{}'", id.to_string(), using_name);
    } else if (r.vector && using_name.empty()) {
      q.dense = *r.vector;
    } else {
      fail(ErrorKind::invalid_argument, "Wrong input: Not existing vector name error: {}", using_name);
    }
    q.from = id;
  } else if (is_sparse_json(j)) {
    q.sparse = parse_sparse(j, where);
  } else if (j.is_array()) {
    if (!j.empty() && j[0].is_array()) fail(ErrorKind::unsupported, "{}: multi-vector queries are not supported", where);
    q.dense = parse_vector(j, where);
  } else if (j.is_object() && j.size() == 1 && j.begin().key().empty()) {
    q.dense = parse_vector(j, where);
  } else {
    fail(ErrorKind::unsupported, "{}: expected a vector, a sparse vector {{indices, values}} or a point id "
         "(documents, images and inference objects are not supported)", where);
  }
  return q;
}

// Common knobs of one stage.
struct StageParams {
  std::string using_name;
  FilterPtr filter;
  size_t limit = 10;
  std::optional<float> score_threshold;
  std::optional<size_t> hnsw_ef;
  std::optional<double> oversampling;
  std::optional<size_t> ivf_nprobe;
  bool exact = false;
};

Hits nearest(store::Collection& c, const QueryVector& q, const StageParams& p, FilterPtr filter, size_t limit) {
  store::SearchRequest r;
  r.using_name = p.using_name;
  r.vector = q.dense;
  r.sparse = q.sparse;
  r.filter = filter;
  r.limit = limit;
  r.score_threshold = p.score_threshold;
  r.hnsw_ef = p.hnsw_ef;
  r.oversampling = p.oversampling;
  r.ivf_nprobe = p.ivf_nprobe;
  r.exact = p.exact;
  if (limit == 0) return {};
  return c.search(r);
}

// The score every candidate (all points passing `filter`) gets against q.
std::unordered_map<PointId, float, store::PointIdHash> score_all(store::Collection& c, const QueryVector& q,
                                                                 const StageParams& p, FilterPtr filter) {
  StageParams exact = p;
  exact.exact = true;
  exact.score_threshold.reset();
  size_t n = c.count(filter.get());
  std::unordered_map<PointId, float, store::PointIdHash> out;
  for (const auto& h : nearest(c, q, exact, filter, n)) out[h.id] = h.score;
  return out;
}

bool higher_better(store::Collection& c, const std::string& using_name) {
  const auto& cfg = c.config();
  if (cfg.sparse.count(using_name)) return true;
  auto d = cfg.dense_spaces();
  auto it = d.find(using_name);
  return it == d.end() || store::higher_is_better(it->second.distance);
}

void sort_hits(Hits& h) {
  std::stable_sort(h.begin(), h.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
}

std::vector<QueryVector> example_list(store::Collection& c, const json* list, const std::string& using_name,
                                      const std::string& where) {
  std::vector<QueryVector> out;
  if (!list) return out;
  if (!list->is_array()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {} must be an array", where);
  for (size_t i = 0; i < list->size(); ++i)
    out.push_back(query_vector(c, (*list)[i], using_name, fmt::format("{}[{}]", where, i)));
  return out;
}

// Qdrant's recommend: average_vector searches avg_pos + (avg_pos - avg_neg); best_score takes
// per candidate the best similarity to any example, negated and squared when a negative wins;
// sum_scores adds similarities to positives and subtracts those to negatives.
Hits recommend(store::Collection& c, const json& rec, const StageParams& p, FilterPtr filter, size_t limit) {
  if (!rec.is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: recommend must be an object");
  auto pos = example_list(c, field(rec, "positive"), p.using_name, "recommend.positive");
  auto neg = example_list(c, field(rec, "negative"), p.using_name, "recommend.negative");
  std::string strategy = "average_vector";
  if (const json* s = field(rec, "strategy")) {
    if (!s->is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: recommend.strategy must be a string");
    strategy = s->get<std::string>();
  }
  if (pos.empty() && (strategy == "average_vector" || neg.empty()))
    fail(ErrorKind::invalid_argument, "Wrong input: recommend needs at least one positive example");
  std::vector<PointId> used;
  for (const auto* l : {&pos, &neg})
    for (const auto& q : *l)
      if (q.from) used.push_back(*q.from);
  if (!used.empty()) filter = with_ids(filter, used, true);
  if (strategy == "average_vector") {
    for (const auto* l : {&pos, &neg})
      for (const auto& q : *l)
        if (q.sparse) fail(ErrorKind::unsupported, "recommend: average_vector on sparse vectors is not supported; use best_score");
    size_t dim = pos[0].dense.size();
    std::vector<float> ap(dim, 0.0f), an(dim, 0.0f);
    for (const auto& q : pos) {
      if (q.dense.size() != dim) fail(ErrorKind::invalid_argument, "Wrong input: recommend examples differ in dimension");
      for (size_t k = 0; k < dim; ++k) ap[k] += q.dense[k] / float(pos.size());
    }
    for (const auto& q : neg) {
      if (q.dense.size() != dim) fail(ErrorKind::invalid_argument, "Wrong input: recommend examples differ in dimension");
      for (size_t k = 0; k < dim; ++k) an[k] += q.dense[k] / float(neg.size());
    }
    QueryVector target;
    target.dense.resize(dim);
    for (size_t k = 0; k < dim; ++k) target.dense[k] = neg.empty() ? ap[k] : ap[k] + ap[k] - an[k];
    return nearest(c, target, p, filter, limit);
  }
  if (strategy != "best_score" && strategy != "sum_scores")
    fail(ErrorKind::invalid_argument, "Format error in JSON body: recommend.strategy: unknown strategy \"{}\" "
         "(average_vector, best_score, sum_scores)", strategy);
  if (!higher_better(c, p.using_name))
    fail(ErrorKind::unsupported, "recommend: {} on a distance metric (Euclid, Manhattan, ...) is not supported", strategy);
  std::vector<std::unordered_map<PointId, float, store::PointIdHash>> ps, ns;
  for (const auto& q : pos) ps.push_back(score_all(c, q, p, filter));
  for (const auto& q : neg) ns.push_back(score_all(c, q, p, filter));
  std::set<PointId> ids;
  for (const auto* l : {&ps, &ns})
    for (const auto& m : *l)
      for (const auto& [id, s] : m) ids.insert(id);
  Hits out;
  auto at = [](const auto& m, const PointId& id) {
    auto it = m.find(id);
    return it == m.end() ? 0.0f : it->second;
  };
  for (const auto& id : ids) {
    float score;
    if (strategy == "sum_scores") {
      score = 0;
      for (const auto& m : ps) score += at(m, id);
      for (const auto& m : ns) score -= at(m, id);
    } else {
      float bp = -INFINITY, bn = -INFINITY;
      for (const auto& m : ps) bp = std::max(bp, at(m, id));
      for (const auto& m : ns) bn = std::max(bn, at(m, id));
      score = bp >= bn ? bp : -(bn * bn);
    }
    if (p.score_threshold && score < *p.score_threshold) continue;
    store::ScoredPoint sp;
    sp.id = id;
    sp.score = score;
    out.push_back(sp);
  }
  sort_hits(out);
  if (out.size() > limit) out.resize(limit);
  return out;
}

// Qdrant's discovery: per context pair +1 when the candidate is closer to the positive, -1 when
// closer to the negative; with a target the score is that rank plus sigmoid(similarity to
// target), without one (context search) the sum over pairs of min(sim(pos) - sim(neg), 0).
float scaled_sigmoid(float x) { return 0.5f * (x / (1.0f + std::fabs(x)) + 1.0f); }

Hits discover(store::Collection& c, const json* target_json, const json* context, const StageParams& p, FilterPtr filter,
              size_t limit) {
  if (!higher_better(c, p.using_name))
    fail(ErrorKind::unsupported, "discover/context on a distance metric (Euclid, Manhattan, ...) is not supported");
  std::vector<std::pair<QueryVector, QueryVector>> pairs;
  if (context) {
    const json& cl = context->is_array() ? *context : json::array({*context});
    for (size_t i = 0; i < cl.size(); ++i) {
      const json& pr = cl[i];
      const json* pj = pr.is_object() ? field(pr, "positive") : nullptr;
      const json* nj = pr.is_object() ? field(pr, "negative") : nullptr;
      if (!pj || !nj)
        fail(ErrorKind::invalid_argument, "Format error in JSON body: context[{}] must be {{\"positive\": .., \"negative\": ..}}", i);
      pairs.emplace_back(query_vector(c, *pj, p.using_name, fmt::format("context[{}].positive", i)),
                         query_vector(c, *nj, p.using_name, fmt::format("context[{}].negative", i)));
    }
  }
  std::optional<QueryVector> target;
  if (target_json) target = query_vector(c, *target_json, p.using_name, "target");
  if (!target && pairs.empty()) fail(ErrorKind::invalid_argument, "Wrong input: discover needs a target or context pairs");
  std::vector<PointId> used;
  if (target && target->from) used.push_back(*target->from);
  for (const auto& [a, b] : pairs) {
    if (a.from) used.push_back(*a.from);
    if (b.from) used.push_back(*b.from);
  }
  if (!used.empty()) filter = with_ids(filter, used, true);
  std::vector<std::pair<std::unordered_map<PointId, float, store::PointIdHash>,
                        std::unordered_map<PointId, float, store::PointIdHash>>> scores;
  for (const auto& [a, b] : pairs) scores.emplace_back(score_all(c, a, p, filter), score_all(c, b, p, filter));
  std::unordered_map<PointId, float, store::PointIdHash> ts;
  if (target) ts = score_all(c, *target, p, filter);
  std::set<PointId> ids;
  for (const auto& [a, b] : scores) {
    for (const auto& [id, s] : a) ids.insert(id);
    for (const auto& [id, s] : b) ids.insert(id);
  }
  for (const auto& [id, s] : ts) ids.insert(id);
  auto at = [](const auto& m, const PointId& id) {
    auto it = m.find(id);
    return it == m.end() ? 0.0f : it->second;
  };
  Hits out;
  for (const auto& id : ids) {
    float score = 0;
    if (target) {
      for (const auto& [a, b] : scores) score += at(a, id) > at(b, id) ? 1.0f : -1.0f;
      score += scaled_sigmoid(at(ts, id));
    } else {
      for (const auto& [a, b] : scores) score += std::min(at(a, id) - at(b, id), 0.0f);
    }
    if (p.score_threshold && score < *p.score_threshold) continue;
    store::ScoredPoint sp;
    sp.id = id;
    sp.score = score;
    out.push_back(sp);
  }
  sort_hits(out);
  if (out.size() > limit) out.resize(limit);
  return out;
}

// Reciprocal rank fusion (Cormack et al. 2009) as Qdrant computes it: sum of w / (k + rank),
// rank counted from 0, k = 2 unless given.
Hits fuse_rrf(const std::vector<Hits>& lists, double k, const std::vector<double>& weights) {
  std::unordered_map<PointId, double, store::PointIdHash> acc;
  std::vector<PointId> order;
  for (size_t l = 0; l < lists.size(); ++l) {
    double w = l < weights.size() ? weights[l] : 1.0;
    for (size_t r = 0; r < lists[l].size(); ++r) {
      auto [it, fresh] = acc.emplace(lists[l][r].id, 0.0);
      if (fresh) order.push_back(lists[l][r].id);
      it->second += w / (k + double(r));
    }
  }
  Hits out;
  for (const auto& id : order) {
    store::ScoredPoint sp;
    sp.id = id;
    sp.score = float(acc[id]);
    out.push_back(sp);
  }
  sort_hits(out);
  return out;
}

// Distribution-based score fusion: each list's scores are mapped through mean +- 3 standard
// deviations onto [0, 1] (clipped), then summed per point.
Hits fuse_dbsf(const std::vector<Hits>& lists, const std::vector<bool>& higher) {
  std::unordered_map<PointId, double, store::PointIdHash> acc;
  std::vector<PointId> order;
  for (size_t l = 0; l < lists.size(); ++l) {
    const auto& h = lists[l];
    if (h.empty()) continue;
    double mean = 0, var = 0;
    for (const auto& x : h) mean += x.score;
    mean /= double(h.size());
    for (const auto& x : h) var += (x.score - mean) * (x.score - mean);
    double sd = h.size() > 1 ? std::sqrt(var / double(h.size() - 1)) : 0.0;
    double lo = mean - 3 * sd, hi = mean + 3 * sd;
    for (const auto& x : h) {
      double s = hi > lo ? (x.score - lo) / (hi - lo) : 0.5;
      s = std::clamp(s, 0.0, 1.0);
      if (!higher[l]) s = 1.0 - s;
      auto [it, fresh] = acc.emplace(x.id, 0.0);
      if (fresh) order.push_back(x.id);
      it->second += s;
    }
  }
  Hits out;
  for (const auto& id : order) {
    store::ScoredPoint sp;
    sp.id = id;
    sp.score = float(acc[id]);
    out.push_back(sp);
  }
  sort_hits(out);
  return out;
}

// The first number (or RFC 3339 date-time, as seconds) at `key` in a payload.
std::optional<double> order_value(const json& payload, const store::KeyPath& key) {
  for (const json* v : store::values_at(payload, key)) {
    if (v->is_number()) return v->get<double>();
    if (v->is_string())
      if (auto t = store::parse_datetime(v->get<std::string>())) return *t;
  }
  return std::nullopt;
}

struct OrderBy {
  store::KeyPath key;
  bool descending = false;
  std::optional<double> start_from;
};

OrderBy parse_order_by(const json& j) {
  OrderBy o;
  if (j.is_string()) {
    o.key = wrong_input([&] { return store::KeyPath::parse(j.get<std::string>()); });
    return o;
  }
  if (!j.is_object() || !field(j, "key") || !j["key"].is_string())
    fail(ErrorKind::invalid_argument, "Format error in JSON body: order_by must be a key or {{\"key\", \"direction\", \"start_from\"}}");
  o.key = wrong_input([&] { return store::KeyPath::parse(j["key"].get<std::string>()); });
  if (const json* d = field(j, "direction")) {
    if (*d != "asc" && *d != "desc")
      fail(ErrorKind::invalid_argument, "Format error in JSON body: order_by.direction must be \"asc\" or \"desc\"");
    o.descending = *d == "desc";
  }
  if (const json* s = field(j, "start_from")) {
    if (s->is_number()) o.start_from = s->get<double>();
    else if (s->is_string() && store::parse_datetime(s->get<std::string>())) o.start_from = *store::parse_datetime(s->get<std::string>());
    else fail(ErrorKind::invalid_argument, "Format error in JSON body: order_by.start_from must be a number or a date-time");
  }
  return o;
}

// Points passing `filter` (and among `only` when set) ordered by a payload value; score = value.
Hits order_points(store::Collection& c, const OrderBy& o, FilterPtr filter, size_t limit) {
  store::ScrollRequest sr;
  sr.limit = std::numeric_limits<uint32_t>::max();
  sr.filter = filter;
  sr.with_payload = store::PayloadSelector::all();
  auto page = c.scroll(sr);
  std::vector<std::pair<double, PointId>> vals;
  for (const auto& r : page.points) {
    auto v = order_value(*r.payload, o.key);
    if (!v) continue;
    if (o.start_from && (o.descending ? *v > *o.start_from : *v < *o.start_from)) continue;
    vals.emplace_back(*v, r.id);
  }
  std::stable_sort(vals.begin(), vals.end(), [&](const auto& a, const auto& b) {
    return o.descending ? a.first > b.first : a.first < b.first;
  });
  Hits out;
  for (size_t i = 0; i < vals.size() && out.size() < limit; ++i) {
    store::ScoredPoint sp;
    sp.id = vals[i].second;
    sp.score = float(vals[i].first);
    out.push_back(sp);
  }
  return out;
}

StageParams parse_stage_params(const json& s, FilterPtr outer, size_t limit) {
  StageParams p;
  p.using_name = using_of(s);
  p.filter = and_filters(outer, parse_filter_field(s));
  p.limit = limit;
  if (const json* t = field(s, "score_threshold")) {
    if (!t->is_number()) fail(ErrorKind::invalid_argument, "Format error in JSON body: score_threshold must be a number");
    p.score_threshold = t->get<float>();
  }
  if (const json* pr = field(s, "params")) {
    if (!pr->is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params must be an object");
    if (const json* ef = field(*pr, "hnsw_ef")) {
      if (!ef->is_number_unsigned() || ef->get<uint64_t>() == 0) validation_error("params.hnsw_ef must be a positive integer");
      p.hnsw_ef = ef->get<size_t>();
    }
    if (const json* ex = field(*pr, "exact")) {
      if (!ex->is_boolean()) fail(ErrorKind::invalid_argument, "Format error in JSON body: params.exact must be a boolean");
      p.exact = ex->get<bool>();
    }
    p.oversampling = parse_quantization_params(*pr);
    p.ivf_nprobe = parse_ivf_nprobe(*pr);
  }
  return p;
}

// Evaluates one stage (the whole query or a prefetch) and returns up to `limit` scored ids.
Hits exec_stage(store::Collection& c, const json& s, FilterPtr outer, size_t limit, int depth) {
  require_object(s, depth == 0 ? "query request" : "prefetch");
  if (depth > 16) fail(ErrorKind::invalid_argument, "Wrong input: prefetch is nested more than 16 levels deep");
  reject_unsupported(s, {"lookup_from"});
  StageParams p = parse_stage_params(s, outer, limit);
  std::vector<Hits> lists;
  bool has_prefetch = false;
  if (const json* pf = field(s, "prefetch")) {
    has_prefetch = true;
    const json& arr = pf->is_array() ? *pf : json::array({*pf});
    for (size_t i = 0; i < arr.size(); ++i) {
      size_t sub_limit = arr[i].is_object() ? parse_count(arr[i], "limit", 10, true) : 10;
      try {
        lists.push_back(exec_stage(c, arr[i], p.filter, sub_limit, depth + 1));
      } catch (const HttpError& e) {
        throw HttpError(e.status(), e.kind(), fmt::format("prefetch[{}]: {}", i, e.what()));
      } catch (const Error& e) {
        throw Error(e.kind(), fmt::format("prefetch[{}]: {}", i, e.what()));
      }
    }
  }
  std::vector<PointId> cands;
  if (has_prefetch) {
    std::set<PointId> seen;
    for (const auto& l : lists)
      for (const auto& h : l)
        if (seen.insert(h.id).second) cands.push_back(h.id);
  }
  FilterPtr filter = has_prefetch ? with_ids(p.filter, cands, false) : p.filter;
  const json* q = field(s, "query");
  if (!q) {
    if (has_prefetch) {
      Hits all;
      std::set<PointId> seen;
      for (const auto& l : lists)
        for (const auto& h : l)
          if (seen.insert(h.id).second) all.push_back(h);
      if (lists.size() > 1) sort_hits(all);
      if (all.size() > limit) all.resize(limit);
      return all;
    }
    // No query: points in id order with score 0.
    store::ScrollRequest sr;
    sr.filter = p.filter;
    sr.limit = limit;
    sr.with_payload = store::PayloadSelector::none();
    Hits out;
    for (const auto& r : c.scroll(sr).points) {
      store::ScoredPoint sp;
      sp.id = r.id;
      out.push_back(sp);
    }
    return out;
  }
  if (q->is_object() && !is_sparse_json(*q) && !(q->size() == 1 && q->begin().key().empty())) {
    if (q->size() != 1) fail(ErrorKind::invalid_argument, "Format error in JSON body: query object must have exactly one kind");
    const std::string kind = q->begin().key();
    const json& arg = q->begin().value();
    if (kind == "nearest") {
      if (arg.is_object() && arg.contains("nearest")) fail(ErrorKind::invalid_argument, "Format error in JSON body: nested nearest");
      QueryVector v = query_vector(c, arg, p.using_name, "query.nearest");
      return nearest(c, v, p, v.from ? with_ids(filter, {*v.from}, true) : filter, limit);
    }
    if (kind == "recommend") return recommend(c, arg, p, filter, limit);
    if (kind == "discover") {
      if (!arg.is_object()) fail(ErrorKind::invalid_argument, "Format error in JSON body: discover must be an object");
      const json* t = field(arg, "target");
      if (!t) fail(ErrorKind::invalid_argument, "Format error in JSON body: discover: missing field `target`");
      return discover(c, t, field(arg, "context"), p, filter, limit);
    }
    if (kind == "context") return discover(c, nullptr, &arg, p, filter, limit);
    if (kind == "order_by") return order_points(c, parse_order_by(arg), filter, limit);
    if (kind == "fusion" || kind == "rrf") {
      if (!has_prefetch) fail(ErrorKind::invalid_argument, "Wrong input: fusion needs \"prefetch\" (the lists to fuse)");
      std::string method = kind == "rrf" ? "rrf" : arg.is_string() ? arg.get<std::string>() : "";
      if (method == "rrf") {
        double k = 2;
        std::vector<double> weights;
        if (kind == "rrf" && arg.is_object()) {
          if (const json* kk = field(arg, "k")) {
            if (!kk->is_number() || kk->get<double>() < 0) fail(ErrorKind::invalid_argument, "Format error in JSON body: rrf.k must be a non-negative number");
            k = kk->get<double>();
          }
          if (const json* w = field(arg, "weights")) {
            if (!w->is_array()) fail(ErrorKind::invalid_argument, "Format error in JSON body: rrf.weights must be an array");
            for (const auto& x : *w) weights.push_back(x.get<double>());
          }
        }
        Hits out = fuse_rrf(lists, k, weights);
        if (out.size() > limit) out.resize(limit);
        return out;
      }
      if (method == "dbsf") {
        std::vector<bool> higher;
        const json& arr = field(s, "prefetch")->is_array() ? *field(s, "prefetch") : json::array({*field(s, "prefetch")});
        for (const auto& pj : arr) higher.push_back(higher_better(c, pj.is_object() ? using_of(pj) : ""));
        Hits out = fuse_dbsf(lists, higher);
        if (out.size() > limit) out.resize(limit);
        return out;
      }
      fail(ErrorKind::invalid_argument, "Format error in JSON body: query.fusion: expected \"rrf\" or \"dbsf\"");
    }
    fail(ErrorKind::unsupported, "query type \"{}\" is not supported by Etna (nearest, recommend, discover, context, "
         "order_by, fusion and rrf are)", kind);
  }
  QueryVector v = query_vector(c, *q, p.using_name, "query");
  return nearest(c, v, p, v.from ? with_ids(filter, {*v.from}, true) : filter, limit);
}

// Adds payloads and vectors to the final hits (one retrieve for the page).
void decorate(store::Collection& c, Hits& hits, const store::PayloadSelector& with_payload, bool with_vector) {
  if (hits.empty() || (with_payload.mode == store::PayloadSelector::Mode::None && !with_vector)) return;
  std::vector<PointId> ids;
  for (const auto& h : hits) ids.push_back(h.id);
  auto recs = c.retrieve(ids, with_payload, with_vector);
  std::unordered_map<PointId, const store::Record*, store::PointIdHash> by;
  for (const auto& r : recs) by[r.id] = &r;
  for (auto& h : hits) {
    auto it = by.find(h.id);
    if (it == by.end()) continue;
    h.payload = it->second->payload;
    h.vector = it->second->vector;
    h.vectors = it->second->vectors;
  }
}

Hits query_hits(store::Collection& c, const json& body) {
  size_t limit = parse_count(body, "limit", 10, true);
  size_t offset = parse_count(body, "offset", 0, false);
  Hits hits = exec_stage(c, body, nullptr, limit + offset, 0);
  if (offset >= hits.size()) hits.clear();
  else hits.erase(hits.begin(), hits.begin() + long(offset));
  decorate(c, hits, parse_with_payload(body, false), parse_with_vector(body));
  return hits;
}

json run_query(store::Collection& c, const json& body) {
  require_object(body, "query request");
  return {{"points", scored_list(query_hits(c, body), vector_names(body))}};
}

// ---- groups ---------------------------------------------------------------------------------

Hits strip_payload(Hits hits, const store::PayloadSelector& want) {
  for (auto& h : hits)
    if (h.payload) {
      if (want.mode == store::PayloadSelector::Mode::None) h.payload.reset();
      else h.payload = want.apply(*h.payload);
    }
  return hits;
}

// Groups hits by the value(s) at group_by (strings or integers; a point with an array value
// joins each of its groups), keeping the best `group_size` per group and the first `groups`
// groups in order of their best hit. Runs `search(n)` with a growing n until enough groups are
// full or the collection is exhausted.
json grouped(const json& body, const std::function<Hits(size_t)>& search, const Names& names) {
  const json* gb = field(body, "group_by");
  if (!gb || !gb->is_string() || gb->get<std::string>().empty())
    fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `group_by` (a payload key)");
  reject_unsupported(body, {"with_lookup"});
  store::KeyPath key = wrong_input([&] { return store::KeyPath::parse(gb->get<std::string>()); });
  size_t group_size = parse_count(body, "group_size", 3, true);
  size_t groups = parse_count(body, "limit", 10, true);
  std::vector<std::pair<json, Hits>> out;
  for (size_t n = std::max<size_t>(groups * group_size * 4, 64);; n *= 4) {
    Hits hits = search(n);
    out.clear();
    std::map<std::string, size_t> where;
    for (const auto& h : hits) {
      if (!h.payload) continue;
      std::set<std::string> mine;
      for (const json* v : store::values_at(*h.payload, key)) {
        if (!v->is_string() && !v->is_number_integer()) continue;
        std::string k = v->dump();
        if (!mine.insert(k).second) continue;
        auto it = where.find(k);
        if (it == where.end()) {
          if (out.size() == groups) continue;
          it = where.emplace(k, out.size()).first;
          out.emplace_back(*v, Hits{});
        }
        if (out[it->second].second.size() < group_size) out[it->second].second.push_back(h);
      }
    }
    bool full = out.size() == groups && std::all_of(out.begin(), out.end(), [&](const auto& g) { return g.second.size() == group_size; });
    if (full || hits.size() < n || n > (1u << 24)) break;
  }
  json arr = json::array();
  auto want = parse_with_payload(body, false);
  for (const auto& [id, hits] : out) arr.push_back({{"id", id}, {"hits", scored_list(strip_payload(hits, want), names)}});
  return {{"groups", arr}};
}


}  // namespace

void register_qdrant_routes(HttpServer& server, store::Database& db) {
  server.set_error_format("/collections", qdrant_error_body);
  server.set_error_format("/healthz", qdrant_error_body);
  server.set_error_format("/aliases", qdrant_error_body);
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
  // ---- aliases (registered before C so "aliases" is not taken for a collection name) ----
  auto alias_list = [](const std::map<std::string, std::string>& a, const std::string* only) {
    json list = json::array();
    for (const auto& [alias, coll] : a)
      if (!only || coll == *only) list.push_back({{"alias_name", alias}, {"collection_name", coll}});
    return json{{"aliases", list}};
  };
  for (const char* path : {"/aliases", "/collections/aliases"}) {
    server.route(Method::get, path, [dbp, alias_list](const httplib::Request&, httplib::Response& res) {
      send_result(res, alias_list(dbp->aliases(), nullptr));
    });
  }
  server.route(Method::post, "/collections/aliases", [dbp](const httplib::Request& req, httplib::Response& res) {
    json body = parse_json_body(req);
    require_object(body, "alias request");
    const json* actions = field(body, "actions");
    if (!actions || !actions->is_array())
      fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `actions` (an array)");
    std::vector<store::Database::AliasAction> acts;
    auto str = [](const json& o, const char* k, const std::string& where) {
      const json* v = field(o, k);
      if (!v || !v->is_string()) fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: missing field `{}`", where, k);
      return v->get<std::string>();
    };
    for (size_t i = 0; i < actions->size(); ++i) {
      const json& a = (*actions)[i];
      std::string where = fmt::format("actions[{}]", i);
      if (!a.is_object() || a.size() != 1)
        fail(ErrorKind::invalid_argument, "Format error in JSON body: {} must be one of create_alias, delete_alias, rename_alias", where);
      const std::string kind = a.begin().key();
      const json& o = a.begin().value();
      using K = store::Database::AliasAction::Kind;
      if (kind == "create_alias") acts.push_back({K::Create, str(o, "alias_name", where), str(o, "collection_name", where)});
      else if (kind == "delete_alias") acts.push_back({K::Delete, str(o, "alias_name", where), ""});
      else if (kind == "rename_alias") acts.push_back({K::Rename, str(o, "old_alias_name", where), str(o, "new_alias_name", where)});
      else fail(ErrorKind::invalid_argument, "Format error in JSON body: {}: unknown action \"{}\"", where, kind);
    }
    dbp->update_aliases(acts);
    send_result(res, true);
  });
  server.route(Method::get, C + "/aliases", [dbp, alias_list](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    send_result(res, alias_list(dbp->aliases(), &c->name()));
  });
  server.route(Method::get, C + "/exists", [dbp](const httplib::Request& req, httplib::Response& res) {
    send_result(res, {{"exists", dbp->has_collection(dbp->resolve(req.matches[1].str()))}});
  });
  server.route(Method::get, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    send_result(res, collection_info_json(c->info()));
  });
  server.route(Method::put, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1].str();
    json body = parse_json_body(req);
    require_object(body, "collection config");
    reject_unsupported(body, {"init_from", "sharding_method"});
    store::CollectionConfig config = wrong_input([&] { return store::CollectionConfig::from_create_json(body); });
    if (dbp->has_collection(name)) fail(ErrorKind::conflict, "Wrong input: Collection `{}` already exists!", name);
    wrong_input([&] { return &dbp->create_collection(name, config); });
    send_result(res, true);
  });
  server.route(Method::patch, C, [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "collection update");
    wrong_input([&] {
      c->update_config(body);
      return 0;
    });
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
    for (const auto& r : recs) out.push_back(record_json(r, vector_names(body)));
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
    store::SearchPlan plan;
    if (wants_plan(body)) r.plan = &plan;
    json hits = scored_list(wrong_input([&] { return c->search(r); }), vector_names(body));
    send_result(res, std::move(hits), r.plan);
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
    for (size_t i = 0; i < reqs.size() && !c->config().multi(); ++i) {
      if (reqs[i].vector.size() != c->config().dim)
        fail(ErrorKind::invalid_argument, "Wrong input: searches[{}]: vector has {} dimensions, collection '{}' expects {}", i,
             reqs[i].vector.size(), c->name(), c->config().dim);
    }
    auto results = wrong_input([&] { return c->search_batch(reqs); });
    json out = json::array();
    for (size_t i = 0; i < results.size(); ++i) out.push_back(scored_list(results[i], vector_names((*searches)[i])));
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
  // Recommend and discover: the Query API's recommend / discover forms with their own bodies.
  auto as_query = [](const json& body, const char* kind) {
    require_object(body, (std::string(kind) + " request").c_str());
    json q = body;
    json inner = json::object();
    if (std::string(kind) == "recommend") {
      for (const char* k : {"positive", "negative", "strategy"})
        if (body.contains(k)) inner[k] = body[k], q.erase(k);
      if (!body.contains("positive") && !body.contains("negative"))
        fail(ErrorKind::invalid_argument, "Format error in JSON body: recommend needs \"positive\" and/or \"negative\"");
    } else {
      for (const char* k : {"target", "context"})
        if (body.contains(k)) inner[k] = body[k], q.erase(k);
      if (!inner.contains("target")) {
        json ctx = inner.value("context", json::array());
        q["query"] = {{"context", ctx}};
        return q;
      }
    }
    q["query"] = {{kind, inner}};
    return q;
  };
  for (const char* kind : {"recommend", "discover"}) {
    std::string k = kind;
    server.route(Method::post, C + "/points/" + k, [dbp, as_query, k](const httplib::Request& req, httplib::Response& res) {
      auto c = find_collection(*dbp, req.matches[1].str());
      json body = parse_json_body(req);
      json q = as_query(body, k.c_str());
      send_result(res, wrong_input([&] { return scored_list(query_hits(*c, q), vector_names(body)); }));
    });
    server.route(Method::post, C + "/points/" + k + "/batch", [dbp, as_query, k](const httplib::Request& req, httplib::Response& res) {
      auto c = find_collection(*dbp, req.matches[1].str());
      json body = parse_json_body(req);
      require_object(body, (k + " batch request").c_str());
      const json* searches = field(body, "searches");
      if (!searches || !searches->is_array())
        fail(ErrorKind::invalid_argument, "Format error in JSON body: missing field `searches` (an array of {} requests)", k);
      json out = json::array();
      for (size_t i = 0; i < searches->size(); ++i) {
        try {
          json q = as_query((*searches)[i], k.c_str());
          out.push_back(wrong_input([&] { return scored_list(query_hits(*c, q), vector_names((*searches)[i])); }));
        } catch (const HttpError& e) {
          throw HttpError(e.status(), e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
        } catch (const Error& e) {
          throw Error(e.kind(), fmt::format("searches[{}]: {}", i, e.what()));
        }
      }
      send_result(res, out);
    });
  }
  // Groups: the same search or query run deep enough to fill `limit` groups of `group_size`.
  server.route(Method::post, C + "/points/search/groups", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    store::SearchRequest r = parse_search(body);
    r.offset = 0;
    r.with_payload = store::PayloadSelector::all();
    auto search = [&](size_t n) {
      r.limit = n;
      return c->search(r);
    };
    send_result(res, wrong_input([&] { return grouped(body, search, vector_names(body)); }));
  });
  server.route(Method::post, C + "/points/recommend/groups", [dbp, as_query](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "recommend groups request");
    json base = body;
    for (const char* k : {"group_by", "group_size", "limit", "with_lookup"}) base.erase(k);
    json q = as_query(base, "recommend");
    auto search = [&](size_t n) {
      q["limit"] = n;
      q["with_payload"] = true;
      return query_hits(*c, q);
    };
    send_result(res, wrong_input([&] { return grouped(body, search, vector_names(body)); }));
  });
  server.route(Method::post, C + "/points/query/groups", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req);
    require_object(body, "query groups request");
    auto search = [&](size_t n) {
      json q = body;
      q["limit"] = n;
      q.erase("offset");
      q["with_payload"] = true;
      return query_hits(*c, q);
    };
    send_result(res, wrong_input([&] { return grouped(body, search, vector_names(body)); }));
  });
  server.route(Method::post, C + "/points/scroll", [dbp](const httplib::Request& req, httplib::Response& res) {
    auto c = find_collection(*dbp, req.matches[1].str());
    json body = parse_json_body(req, true);
    require_object(body, "scroll request");
    if (const json* ob = field(body, "order_by")) {
      // Ordered scroll: every point with a value at the key, in value order; no next page offset.
      OrderBy o = parse_order_by(*ob);
      size_t limit = parse_count(body, "limit", 10, true);
      auto hits = wrong_input([&] { return order_points(*c, o, parse_filter_field(body), limit); });
      decorate(*c, hits, parse_with_payload(body, true), parse_with_vector(body));
      json points = json::array();
      for (const auto& h : hits) {
        store::Record r{h.id, h.payload, h.vector, h.vectors};
        json j = record_json(r, vector_names(body));
        j["order_value"] = f32(h.score);
        points.push_back(std::move(j));
      }
      send_result(res, {{"points", points}, {"next_page_offset", nullptr}});
      return;
    }
    store::ScrollRequest sr;
    if (const json* off = field(body, "offset")) sr.offset = parse_id(*off, "offset");
    sr.limit = parse_count(body, "limit", 10, true);
    sr.filter = parse_filter_field(body);
    sr.with_payload = parse_with_payload(body, true);
    sr.with_vector = parse_with_vector(body);
    auto page = wrong_input([&] { return c->scroll(sr); });
    json points = json::array();
    for (const auto& r : page.points) points.push_back(record_json(r, vector_names(body)));
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
      for (auto it = schema->begin(); it != schema->end(); ++it) {
        const std::string& k = it.key();
        const json& v = it.value();
        if (k == "type" || v.is_null() || k == "on_disk" || k == "is_tenant" || k == "is_principal" || k == "range" ||
            k == "lookup")
          continue;
        if (type == "text" && k == "tokenizer" && (v == "word" || v == "whitespace")) continue;
        if (type == "text" && k == "lowercase" && v == true) continue;
        if (type == "text" && (k == "min_token_len" || k == "max_token_len")) {
          fail(ErrorKind::unsupported, "field_schema.{}: token length limits are not supported", k);
        }
        fail(ErrorKind::unsupported, "field_schema.{} = {} is not supported (text indexes split words at "
             "non-alphanumeric characters and lower-case them)", k, v.dump());
      }
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
