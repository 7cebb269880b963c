#include "etna/store/multi_collection.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/store/distance.h"
#include "etna/store/hnsw.h"
#include "etna/store/payload_index.h"
#include "etna/store/storage.h"

namespace etna::store::detail {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'E', 'T', 'N', 'A', 'M', 'V', 'C', '1'};
constexpr const char* kDataFile = "data.etna";
constexpr const char* kWalFile = "wal.log";
constexpr size_t kMinDeadForCompaction = 128;

enum Op : uint8_t {
  kUpsert = 1,
  kDelete = 2,
  kSetPayload = 3,
  kOverwritePayload = 4,
  kDeletePayloadKeys = 5,
  kClearPayload = 6,
  kCreateIndex = 7,
  kDeleteIndex = 8,
};

json floats_bin(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return json::binary(std::move(b));
}

std::vector<float> bin_floats(const json& j) {
  if (!j.is_binary()) fail(ErrorKind::corrupt, "multi-vector record: expected binary vector data");
  const auto& b = j.get_binary();
  if (b.size() % sizeof(float)) fail(ErrorKind::corrupt, "multi-vector record: vector data length");
  std::vector<float> v(b.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

json config_to_storage(const CollectionConfig& c) {
  json d = json::object();
  for (const auto& [name, p] : c.dense_spaces())
    d[name] = {{"dim", p.dim},
               {"distance", distance_name(p.distance)},
               {"m", p.hnsw.m},
               {"ef_construct", p.hnsw.ef_construct},
               {"full_scan_threshold", p.hnsw.full_scan_threshold},
               {"on_disk", p.on_disk}};
  json s = json::object();
  for (const auto& [name, p] : c.sparse) s[name] = {{"idf", p.modifier == SparseModifier::Idf}};
  return {{"named", c.named}, {"dense", d}, {"sparse", s}, {"wal_capacity_mb", c.wal_capacity_mb}};
}

CollectionConfig config_from_storage(const json& j) {
  try {
    CollectionConfig c;
    c.named = j.at("named").get<bool>();
    c.wal_capacity_mb = j.at("wal_capacity_mb").get<size_t>();
    for (auto it = j.at("dense").begin(); it != j.at("dense").end(); ++it) {
      VectorParams p;
      const json& o = it.value();
      p.dim = o.at("dim").get<size_t>();
      p.distance = parse_distance(o.at("distance").get<std::string>());
      p.hnsw.m = o.at("m").get<size_t>();
      p.hnsw.ef_construct = o.at("ef_construct").get<size_t>();
      p.hnsw.full_scan_threshold = o.at("full_scan_threshold").get<size_t>();
      p.on_disk = o.value("on_disk", false);
      if (c.named) {
        c.vectors[it.key()] = p;
      } else {
        c.dim = p.dim, c.distance = p.distance, c.hnsw = p.hnsw, c.on_disk = p.on_disk;
      }
    }
    for (auto it = j.at("sparse").begin(); it != j.at("sparse").end(); ++it)
      c.sparse[it.key()].modifier = it.value().at("idf").get<bool>() ? SparseModifier::Idf : SparseModifier::None;
    c.validate();
    return c;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(ErrorKind::corrupt, "collection config is invalid: {}", e.what());
  }
}

void erase_dotted(json& payload, const std::string& key) {
  if (!payload.is_object()) return;
  if (payload.contains(key)) {
    payload.erase(key);
    return;
  }
  json* d = &payload;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!d->is_object()) return;
    if (dot == std::string::npos) {
      d->erase(part);
      return;
    }
    auto it = d->find(part);
    if (it == d->end()) return;
    d = &*it;
    start = dot + 1;
  }
}

struct MSlot {
  PointId id;
  uint64_t version = 0;
  bool live = false;
  json payload;  // object
};

struct DenseSpace {
  VectorParams params;
  std::vector<float> data;   // slot * dim
  std::vector<uint8_t> has;  // per slot
  std::unique_ptr<HnswGraph> graph;
  float dist(const float* a, uint32_t s) const { return distance(params.distance, a, &data[size_t(s) * params.dim], params.dim); }
};

// The HNSW Space over one dense vector space (see hnsw.h).
struct DenseView {
  const DenseSpace* d;
  const float* q;
  float operator()(uint32_t v) const { return d->dist(q, v); }
  float between(uint32_t a, uint32_t b) const { return d->dist(&d->data[size_t(a) * d->params.dim], b); }
  void prefetch(uint32_t v) const { __builtin_prefetch(&d->data[size_t(v) * d->params.dim]); }
  void prefetch_all(uint32_t v) const { prefetch(v); }
};

struct SparseSpace {
  SparseParams params;
  std::vector<SparseVector> vecs;  // per slot (empty when the point has none)
  std::vector<uint8_t> has;
  std::unordered_map<uint32_t, std::vector<std::pair<uint32_t, float>>> postings;  // index -> (slot, value)
  std::unordered_map<uint32_t, uint32_t> df;  // live points holding each index
  size_t live = 0;                            // live points holding this vector
};

}  // namespace

bool is_multi_data_file(const std::filesystem::path& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char buf[8] = {};
  size_t n = std::fread(buf, 1, 8, f);
  std::fclose(f);
  return n == 8 && std::memcmp(buf, kMagic, 8) == 0;
}

class MultiImpl {
 public:
  MultiImpl(std::filesystem::path dir, std::string name, CollectionConfig config, Collection::Options options)
      : dir_(std::move(dir)), name_(std::move(name)), config_(std::move(config)), options_(options) {
    reset_spaces();
  }

  // ---- life cycle ----
  void create_files() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) fail(ErrorKind::io, "cannot create collection directory {}: {}", dir_.string(), ec.message());
    write_data_file();
    open_wal();
  }

  void load_files() {
    auto path = dir_ / kDataFile;
    auto bytes = read_file(path);
    load_data(bytes, path.string());
    checkpoint_size_ = bytes.size();
    open_wal();
  }

  void mark_dropped() {
    std::unique_lock lock(mu_);
    dropped_ = true;
  }

  // ---- writes ----
  uint64_t upsert(std::vector<Point> points) {
    for (auto& p : points) validate_point(p);
    json arg = json::array();
    for (const auto& p : points) arg.push_back(point_json(p.id, 0, p.payload, p.named));
    std::unique_lock lock(mu_);
    check_alive();
    uint64_t op = log(kUpsert, arg);
    for (auto& p : points) apply_upsert(op, p.id, std::move(p.payload), std::move(p.named));
    return after_write(op);
  }

  uint64_t delete_points(const PointSelector& sel) {
    std::unique_lock lock(mu_);
    check_alive();
    auto ids = resolve(sel, false);
    json arg = json::array();
    for (const auto& id : ids) arg.push_back(id.to_json());
    uint64_t op = log(kDelete, {{"ids", arg}});
    for (const auto& id : ids) apply_delete(id);
    return after_write(op);
  }

  uint64_t payload_op(int kind, const json& arg, const PointSelector& sel) {
    if ((kind == kSetPayload || kind == kOverwritePayload) && !arg.is_object())
      fail(ErrorKind::invalid_argument, "payload must be a JSON object");
    std::unique_lock lock(mu_);
    check_alive();
    auto ids = resolve(sel, true);
    json jids = json::array();
    for (const auto& id : ids) jids.push_back(id.to_json());
    uint64_t op = log(static_cast<Op>(kind), {{"arg", arg}, {"ids", jids}});
    apply_payload(op, kind, arg, ids);
    return after_write(op);
  }

  uint64_t index_op(bool create, const std::string& field, PayloadSchemaType type) {
    KeyPath::parse(field);
    std::unique_lock lock(mu_);
    check_alive();
    uint64_t op = log(create ? kCreateIndex : kDeleteIndex, {{"field", field}, {"type", payload_schema_type_name(type)}});
    apply_index(create, field, type);
    return after_write(op);
  }

  // ---- reads ----
  std::vector<Record> retrieve(const std::vector<PointId>& ids, const PayloadSelector& sel, bool with_vector) const {
    std::shared_lock lock(mu_);
    check_alive();
    std::vector<Record> out;
    for (const auto& id : ids) {
      auto it = by_id_.find(id);
      if (it != by_id_.end()) out.push_back(make_record(it->second, sel, with_vector));
    }
    return out;
  }

  ScrollResult scroll(const ScrollRequest& r) const {
    std::shared_lock lock(mu_);
    check_alive();
    ScrollResult res;
    for (uint32_t s : id_order()) {
      if (r.offset && slots_[s].id < *r.offset) continue;
      if (r.filter && !r.filter->matches(slots_[s].id, slots_[s].payload)) continue;
      if (res.points.size() == r.limit) {
        res.next_page_offset = slots_[s].id;
        break;
      }
      res.points.push_back(make_record(s, r.with_payload, r.with_vector));
    }
    return res;
  }

  uint64_t count(const Filter* f) const {
    std::shared_lock lock(mu_);
    check_alive();
    if (!f) return by_id_.size();
    uint64_t n = 0;
    for (const auto& [id, s] : by_id_) n += f->matches(id, slots_[s].payload);
    return n;
  }

  std::vector<ScoredPoint> search(const SearchRequest& r) const {
    std::shared_lock lock(mu_);
    check_alive();
    const Filter* f = r.filter && !r.filter->empty() ? r.filter.get() : nullptr;
    auto accept = [&](uint32_t s) { return slots_[s].live && (!f || f->matches(slots_[s].id, slots_[s].payload)); };
    size_t need = r.limit + r.offset;
    std::vector<std::pair<float, uint32_t>> hits;  // (score, slot), best first
    if (r.limit == 0) return {};
    if (r.sparse) {
      auto it = sparse_.find(r.using_name);
      if (it == sparse_.end()) fail(ErrorKind::invalid_argument, "{}", unknown_vector(r.using_name, true));
      hits = sparse_search(it->second, *r.sparse, need, accept);
    } else {
      auto it = dense_.find(r.using_name);
      if (it == dense_.end()) fail(ErrorKind::invalid_argument, "{}", unknown_vector(r.using_name, false));
      hits = dense_search(it->second, r, need, f, accept);
    }
    std::vector<ScoredPoint> out;
    for (size_t i = r.offset; i < hits.size(); ++i) {
      if (r.score_threshold) {
        bool higher = r.sparse || higher_is_better(dense_.at(r.using_name).params.distance);
        if (higher ? hits[i].first < *r.score_threshold : hits[i].first > *r.score_threshold) break;
      }
      uint32_t s = hits[i].second;
      ScoredPoint sp;
      sp.id = slots_[s].id;
      sp.version = slots_[s].version;
      sp.score = hits[i].first;
      if (r.with_payload.mode != PayloadSelector::Mode::None) sp.payload = r.with_payload.apply(slots_[s].payload);
      if (r.with_vector) sp.vectors = vectors_of(s);
      out.push_back(std::move(sp));
    }
    return out;
  }

  CollectionInfo info() const {
    std::shared_lock lock(mu_);
    check_alive();
    CollectionInfo ci;
    ci.points_count = by_id_.size();
    uint64_t indexed = 0;
    for (const auto& [n, d] : dense_)
      for (uint32_t s = 0; s < slots_.size(); ++s) indexed += slots_[s].live && d.has[s];
    ci.indexed_vectors_count = indexed;
    ci.config = config_;
    for (const auto& [field, idx] : indexes_) ci.payload_schema[field] = {idx->type(), idx->points()};
    return ci;
  }

  void write_snapshot(const std::filesystem::path& path) const {
    std::vector<uint8_t> bytes;
    {
      std::shared_lock lock(mu_);
      check_alive();
      bytes = serialize();
    }
    write_file_atomic(path, bytes);
  }

  void update_config(const json& patch) {
    std::unique_lock lock(mu_);
    check_alive();
    CollectionConfig next = config_;
    next.apply_patch(patch);
    bool graphs = false;
    auto a = config_.dense_spaces(), b = next.dense_spaces();
    for (const auto& [n, p] : a)
      graphs = graphs || p.hnsw.m != b.at(n).hnsw.m || p.hnsw.ef_construct != b.at(n).hnsw.ef_construct;
    config_ = next;
    for (auto& [n, d] : dense_) d.params = b.at(n);
    for (auto& [n, sp] : sparse_) sp.params = config_.sparse.at(n);
    if (graphs) compact();
    checkpoint_locked();
  }

  void checkpoint() {
    std::unique_lock lock(mu_);
    check_alive();
    checkpoint_locked();
  }

  const std::string& name() const { return name_; }
  const CollectionConfig& config() const { return config_; }

 private:
  // ---- validation ----
  std::string unknown_vector(const std::string& name, bool sparse) const {
    std::string known;
    for (const auto& [n, d] : dense_) known += (known.empty() ? "" : ", ") + (n.empty() ? "\"\" (default)" : n);
    for (const auto& [n, s] : sparse_) known += (known.empty() ? "" : ", ") + n + " (sparse)";
    return fmt::format("Not existing vector name error: {}{} in collection '{}' (it has: {})",
                       name.empty() ? "the default vector" : "'" + name + "'", sparse ? " as a sparse vector" : "", name_,
                       known.empty() ? "no vectors" : known);
  }

  void validate_point(Point& p) const {
    std::string where = "point " + p.id.to_string();
    if (!p.vector.empty()) {
      if (p.named.dense.count(""))
        fail(ErrorKind::invalid_argument, "{}: the default vector is given twice", where);
      p.named.dense[""] = std::move(p.vector);
      p.vector.clear();
    }
    for (auto& [name, v] : p.named.dense) {
      auto it = dense_.find(name);
      if (it == dense_.end()) {
        if (sparse_.count(name))
          fail(ErrorKind::invalid_argument, "{}: vector '{}' is sparse in collection '{}'; send {{indices, values}}", where,
               name, name_);
        fail(ErrorKind::invalid_argument, "{}: {}", where, unknown_vector(name, false));
      }
      const VectorParams& vp = it->second.params;
      if (v.size() != vp.dim)
        fail(ErrorKind::invalid_argument, "{}: vector '{}' has {} dimensions, collection '{}' expects {}", where, name,
             v.size(), name_, vp.dim);
      check_values(v, vp.distance, where + " vector '" + name + "'");
      if (vp.distance == Distance::Cosine) normalize(v.data(), v.size());
    }
    for (const auto& [name, v] : p.named.sparse) {
      if (!sparse_.count(name)) {
        if (dense_.count(name))
          fail(ErrorKind::invalid_argument, "{}: vector '{}' is dense in collection '{}'; send an array of numbers", where,
               name, name_);
        fail(ErrorKind::invalid_argument, "{}: {}", where, unknown_vector(name, true));
      }
      if (v.indices.size() != v.values.size())
        fail(ErrorKind::invalid_argument, "{}: sparse vector '{}' has unequal indices and values", where, name);
    }
    if (p.payload.is_null()) p.payload = json::object();
    if (!p.payload.is_object()) fail(ErrorKind::invalid_argument, "{}: payload must be a JSON object", where);
  }

  static void check_values(const std::vector<float>& v, Distance d, const std::string& what) {
    bool binary = d == Distance::Hamming || d == Distance::Jaccard;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i]))
        fail(ErrorKind::invalid_argument, "{}: component {} is not finite (NaN and infinity are not allowed)", what, i);
      if (binary && v[i] != 0.0f && v[i] != 1.0f)
        fail(ErrorKind::invalid_argument, "{}: component {} is {}; {} vectors must hold only 0 and 1", what, i, v[i],
             distance_name(d));
    }
  }

  void check_alive() const {
    if (dropped_) fail(ErrorKind::not_found, "collection '{}' not found (it was deleted)", name_);
  }

  std::vector<uint32_t> id_order() const {
    std::vector<uint32_t> v;
    v.reserve(by_id_.size());
    for (const auto& [id, s] : by_id_) v.push_back(s);
    std::sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) { return slots_[a].id < slots_[b].id; });
    return v;
  }

  std::vector<PointId> resolve(const PointSelector& sel, bool must_exist) const {
    std::vector<PointId> ids;
    if (sel.filter) {
      for (uint32_t s : id_order())
        if (sel.filter->matches(slots_[s].id, slots_[s].payload)) ids.push_back(slots_[s].id);
      return ids;
    }
    for (const auto& id : sel.ids) {
      if (by_id_.count(id)) ids.push_back(id);
      else if (must_exist) fail(ErrorKind::not_found, "no point with id {} in collection '{}'", id.to_string(), name_);
    }
    return ids;
  }

  // ---- log ----
  // REQUIRES: mu_ held exclusively. Appends (fsync'ed) and returns the new operation id.
  uint64_t log(Op type, const json& arg) {
    uint64_t op = last_op_ + 1;
    ByteWriter w;
    w.u8(type);
    w.u64(op);
    w.json(arg);
    wal_->append(w.bytes());
    last_op_ = op;
    return op;
  }

  void open_wal() {
    wal_ = Wal::open(dir_ / kWalFile, [this](const uint8_t* p, size_t n) { replay(p, n); });
  }

  void replay(const uint8_t* p, size_t n) {
    ByteReader r(p, n, "log record of collection '" + name_ + "'");
    auto type = static_cast<Op>(r.u8());
    uint64_t op = r.u64();
    if (op <= last_op_) return;
    json arg = r.json();
    try {
      switch (type) {
        case kUpsert:
          for (const auto& pj : arg) {
            PointId id;
            uint64_t version;
            json payload;
            NamedVectors nv;
            read_point(pj, id, version, payload, nv);
            apply_upsert(op, id, std::move(payload), std::move(nv));
          }
          break;
        case kDelete:
          for (const auto& id : arg.at("ids")) apply_delete(PointId::from_json(id));
          break;
        case kSetPayload:
        case kOverwritePayload:
        case kDeletePayloadKeys:
        case kClearPayload: {
          std::vector<PointId> ids;
          for (const auto& id : arg.at("ids")) ids.push_back(PointId::from_json(id));
          apply_payload(op, type, arg.at("arg"), ids);
          break;
        }
        case kCreateIndex:
        case kDeleteIndex:
          apply_index(type == kCreateIndex, arg.at("field").get<std::string>(),
                      parse_payload_schema_type(arg.at("type").get<std::string>()));
          break;
        default: fail(ErrorKind::corrupt, "collection '{}': unknown log record type {}", name_, int(type));
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(ErrorKind::corrupt, "collection '{}': bad log record: {}", name_, e.what());
    }
    last_op_ = op;
  }

  uint64_t after_write(uint64_t op) {
    size_t dead = slots_.size() - by_id_.size();
    if (dead >= kMinDeadForCompaction && double(dead) >= options_.rebuild_tombstone_fraction * double(slots_.size()))
      compact();
    uint64_t limit = options_.checkpoint_bytes
                         ? options_.checkpoint_bytes
                         : std::max<uint64_t>(uint64_t(config_.wal_capacity_mb) << 20, checkpoint_size_);
    if (wal_->size() > limit) {
      try {
        checkpoint_locked();
      } catch (const std::exception& e) {
        log::error("collection '{}': checkpoint failed (will retry): {}", name_, e.what());
      }
    }
    return op;
  }

  void write_data_file() {
    auto bytes = serialize();
    write_file_atomic(dir_ / kDataFile, bytes);
    checkpoint_size_ = bytes.size();
  }
  void checkpoint_locked() {
    write_data_file();
    wal_->reset();
  }

  // ---- state changes (live writes and replay). REQUIRES: mu_ held exclusively.
  void reset_spaces() {
    slots_.clear();
    by_id_.clear();
    dense_.clear();
    sparse_.clear();
    for (const auto& [name, p] : config_.dense_spaces()) {
      DenseSpace& d = dense_[name];
      d.params = p;
      d.graph = std::make_unique<HnswGraph>(p.hnsw.m, p.hnsw.ef_construct, 100 + dense_.size());
    }
    for (const auto& [name, p] : config_.sparse) sparse_[name].params = p;
  }

  void apply_upsert(uint64_t op, const PointId& id, json payload, NamedVectors nv) {
    if (auto it = by_id_.find(id); it != by_id_.end()) kill(it->second);
    uint32_t s = static_cast<uint32_t>(slots_.size());
    slots_.push_back(MSlot{id, op, true, payload.is_null() ? json::object() : std::move(payload)});
    by_id_[id] = s;
    for (auto& [name, d] : dense_) {
      d.has.push_back(0);
      d.data.resize(slots_.size() * d.params.dim);
      auto v = nv.dense.find(name);
      if (v == nv.dense.end()) continue;
      std::memcpy(&d.data[size_t(s) * d.params.dim], v->second.data(), d.params.dim * sizeof(float));
      d.has[s] = 1;
      d.graph->insert(s, DenseView{&d, &d.data[size_t(s) * d.params.dim]});
    }
    for (auto& [name, sp] : sparse_) {
      sp.has.push_back(0);
      sp.vecs.emplace_back();
      auto v = nv.sparse.find(name);
      if (v == nv.sparse.end()) continue;
      sp.has[s] = 1;
      ++sp.live;
      for (size_t i = 0; i < v->second.indices.size(); ++i) {
        sp.postings[v->second.indices[i]].emplace_back(s, v->second.values[i]);
        ++sp.df[v->second.indices[i]];
      }
      sp.vecs[s] = std::move(v->second);
    }
    index(s);
  }

  void apply_delete(const PointId& id) {
    if (auto it = by_id_.find(id); it != by_id_.end()) kill(it->second);
  }

  // The slot stays (a tombstone in graphs and postings) until compaction.
  void kill(uint32_t s) {
    unindex(s);
    by_id_.erase(slots_[s].id);
    slots_[s].live = false;
    slots_[s].payload = json::object();
    for (auto& [name, sp] : sparse_) {
      if (!sp.has[s]) continue;
      --sp.live;
      for (uint32_t i : sp.vecs[s].indices)
        if (--sp.df[i] == 0) sp.df.erase(i);
    }
  }

  void apply_payload(uint64_t op, int kind, const json& arg, const std::vector<PointId>& ids) {
    for (const auto& id : ids) {
      auto it = by_id_.find(id);
      if (it == by_id_.end()) continue;
      uint32_t s = it->second;
      unindex(s);
      json& pl = slots_[s].payload;
      if (kind == kSetPayload) {
        for (auto kv = arg.begin(); kv != arg.end(); ++kv) pl[kv.key()] = kv.value();
      } else if (kind == kOverwritePayload) {
        pl = arg;
      } else if (kind == kDeletePayloadKeys) {
        for (const auto& k : arg) erase_dotted(pl, k.get<std::string>());
      } else {
        pl = json::object();
      }
      slots_[s].version = op;
      index(s);
    }
  }

  void apply_index(bool create, const std::string& field, PayloadSchemaType type) {
    if (!create) {
      indexes_.erase(field);
      return;
    }
    auto it = indexes_.find(field);
    if (it != indexes_.end() && it->second->type() == type) return;
    auto idx = std::make_unique<PayloadIndex>(field, type);
    for (const auto& [id, s] : by_id_) idx->add(s, slots_[s].payload);
    indexes_[field] = std::move(idx);
  }
  void index(uint32_t s) {
    for (auto& [f, idx] : indexes_) idx->add(s, slots_[s].payload);
  }
  void unindex(uint32_t s) {
    for (auto& [f, idx] : indexes_) idx->remove(s, slots_[s].payload);
  }

  // Renumbers the live points densely and rebuilds graphs, postings and payload indexes.
  void compact() {
    struct Live {
      PointId id;
      uint64_t version;
      json payload;
      NamedVectors nv;
    };
    std::vector<Live> live;
    for (uint32_t s : id_order()) live.push_back({slots_[s].id, slots_[s].version, slots_[s].payload, vectors_of(s)});
    std::vector<std::pair<std::string, PayloadSchemaType>> ix;
    for (const auto& [f, idx] : indexes_) ix.emplace_back(f, idx->type());
    indexes_.clear();
    reset_spaces();
    for (auto& l : live) apply_upsert(l.version, l.id, std::move(l.payload), std::move(l.nv));
    for (const auto& [f, t] : ix) apply_index(true, f, t);
    log::debug("collection '{}': compacted to {} points", name_, by_id_.size());
  }

  // ---- search ----
  template <class Accept>
  std::vector<std::pair<float, uint32_t>> dense_search(const DenseSpace& d, const SearchRequest& r, size_t need,
                                                       const Filter* f, const Accept& accept) const {
    if (r.vector.size() != d.params.dim)
      fail(ErrorKind::invalid_argument, "query vector has {} dimensions, vector '{}' of collection '{}' expects {}",
           r.vector.size(), r.using_name, name_, d.params.dim);
    std::vector<float> q = r.vector;
    check_values(q, d.params.distance, "query");
    if (d.params.distance == Distance::Cosine) normalize(q.data(), q.size());
    std::vector<Candidate> hits;
    bool exact = r.exact || d.graph->empty();
    std::optional<std::vector<uint32_t>> cands;
    if (f) {
      cands = index_candidates(*f);
      if (cands && (cands->size() <= need * 4 ||
                    double(cands->size()) * double(d.params.dim * 4) / 1024.0 < double(d.params.hnsw.full_scan_threshold)))
        exact = true;
    }
    auto scan = [&] {
      std::priority_queue<Candidate> heap;
      auto visit = [&](uint32_t s) {
        if (!d.has[s] || !accept(s)) return;
        float dist = d.dist(q.data(), s);
        if (heap.size() < need) heap.push({dist, s});
        else if (dist < heap.top().distance) heap.pop(), heap.push({dist, s});
      };
      if (cands) {
        for (uint32_t s : *cands) visit(s);
      } else {
        for (uint32_t s = 0; s < slots_.size(); ++s) visit(s);
      }
      std::vector<Candidate> out(heap.size());
      for (size_t i = heap.size(); i-- > 0;) out[i] = heap.top(), heap.pop();
      return out;
    };
    if (exact) {
      hits = scan();
    } else {
      size_t ef = std::max(r.hnsw_ef.value_or(d.params.hnsw.ef_construct), need);
      hits = d.graph->search(DenseView{&d, q.data()}, ef, accept);
      if (hits.size() > need) hits.resize(need);
      if (hits.size() < need) hits = scan();  // the walk may starve under a filter or tombstones
    }
    std::vector<std::pair<float, uint32_t>> out;
    for (const auto& h : hits) out.emplace_back(score_of(d.params.distance, h.distance), h.node);
    return out;
  }

  template <class Accept>
  std::vector<std::pair<float, uint32_t>> sparse_search(const SparseSpace& sp, const SparseVector& q, size_t need,
                                                        const Accept& accept) const {
    std::unordered_map<uint32_t, float> acc;
    for (size_t i = 0; i < q.indices.size(); ++i) {
      auto it = sp.postings.find(q.indices[i]);
      if (it == sp.postings.end()) continue;
      float w = q.values[i];
      if (sp.params.modifier == SparseModifier::Idf) {
        auto df = sp.df.find(q.indices[i]);
        double n = df == sp.df.end() ? 0.0 : double(df->second), N = double(sp.live);
        w *= float(std::log((N - n + 0.5) / (n + 0.5) + 1.0));
      }
      for (const auto& [s, v] : it->second)
        if (slots_[s].live) acc[s] += w * v;
    }
    std::vector<std::pair<float, uint32_t>> out;
    for (const auto& [s, score] : acc)
      if (accept(s)) out.emplace_back(score, s);
    auto better = [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    if (out.size() > need) {
      std::partial_sort(out.begin(), out.begin() + long(need), out.end(), better);
      out.resize(need);
    } else {
      std::sort(out.begin(), out.end(), better);
    }
    return out;
  }

  std::optional<std::vector<uint32_t>> index_candidates(const Filter& f) const {
    std::optional<std::vector<uint32_t>> best;
    for (const auto& c : f.must) {
      std::optional<std::vector<uint32_t>> cand;
      if (auto* fc = std::get_if<FieldCondition>(&c)) {
        auto it = indexes_.find(fc->key.text);
        if (it != indexes_.end()) cand = it->second->candidates(*fc);
      } else if (auto* h = std::get_if<HasIdCondition>(&c)) {
        cand.emplace();
        for (const auto& id : h->ids)
          if (auto it = by_id_.find(id); it != by_id_.end()) cand->push_back(it->second);
        std::sort(cand->begin(), cand->end());
        cand->erase(std::unique(cand->begin(), cand->end()), cand->end());
      }
      if (cand && (!best || cand->size() < best->size())) best = std::move(cand);
    }
    return best;
  }

  NamedVectors vectors_of(uint32_t s) const {
    NamedVectors nv;
    for (const auto& [name, d] : dense_)
      if (d.has[s]) {
        const float* v = &d.data[size_t(s) * d.params.dim];
        nv.dense[name] = std::vector<float>(v, v + d.params.dim);
      }
    for (const auto& [name, sp] : sparse_)
      if (sp.has[s]) nv.sparse[name] = sp.vecs[s];
    return nv;
  }

  Record make_record(uint32_t s, const PayloadSelector& sel, bool with_vector) const {
    Record r;
    r.id = slots_[s].id;
    if (sel.mode != PayloadSelector::Mode::None) r.payload = sel.apply(slots_[s].payload);
    if (with_vector) r.vectors = vectors_of(s);
    return r;
  }

  // ---- persistence ----
  static json point_json(const PointId& id, uint64_t version, const json& payload, const NamedVectors& nv) {
    json d = json::object(), s = json::object();
    for (const auto& [name, v] : nv.dense) d[name] = floats_bin(v);
    for (const auto& [name, v] : nv.sparse) s[name] = {{"i", v.indices}, {"v", floats_bin(v.values)}};
    return {{"id", id.to_json()}, {"ver", version}, {"p", payload}, {"d", d}, {"s", s}};
  }

  void read_point(const json& j, PointId& id, uint64_t& version, json& payload, NamedVectors& nv) const {
    id = PointId::from_json(j.at("id"));
    version = j.at("ver").get<uint64_t>();
    payload = j.at("p");
    if (!payload.is_object()) fail(ErrorKind::corrupt, "collection '{}': stored payload is not an object", name_);
    for (auto it = j.at("d").begin(); it != j.at("d").end(); ++it) {
      auto d = dense_.find(it.key());
      auto v = bin_floats(it.value());
      if (d == dense_.end() || v.size() != d->second.params.dim)
        fail(ErrorKind::corrupt, "collection '{}': stored vector '{}' does not fit the config", name_, it.key());
      nv.dense[it.key()] = std::move(v);
    }
    for (auto it = j.at("s").begin(); it != j.at("s").end(); ++it) {
      if (!sparse_.count(it.key())) fail(ErrorKind::corrupt, "collection '{}': stored sparse vector '{}' unknown", name_, it.key());
      SparseVector sv;
      sv.indices = it.value().at("i").get<std::vector<uint32_t>>();
      sv.values = bin_floats(it.value().at("v"));
      if (sv.indices.size() != sv.values.size()) fail(ErrorKind::corrupt, "collection '{}': bad stored sparse vector", name_);
      nv.sparse[it.key()] = std::move(sv);
    }
  }

  std::vector<uint8_t> serialize() const {
    json doc = {{"format", 1}, {"name", name_}, {"config", config_to_storage(config_)}, {"last_op", last_op_}};
    doc["indexes"] = json::array();
    for (const auto& [f, idx] : indexes_) doc["indexes"].push_back({{"field", f}, {"type", payload_schema_type_name(idx->type())}});
    json pts = json::array();
    for (uint32_t s : id_order()) pts.push_back(point_json(slots_[s].id, slots_[s].version, slots_[s].payload, vectors_of(s)));
    doc["points"] = std::move(pts);
    ByteWriter w;
    w.raw(kMagic, sizeof kMagic);
    w.json(doc);
    w.u32(crc32c(w.bytes().data(), w.bytes().size()));
    return std::move(w.bytes());
  }

  void load_data(const std::vector<uint8_t>& bytes, const std::string& what) {
    if (bytes.size() < sizeof kMagic + 8 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
      fail(ErrorKind::corrupt, "{} is not an Etna multi-vector collection file", what);
    uint32_t stored;
    std::memcpy(&stored, &bytes[bytes.size() - 4], 4);
    if (crc32c(bytes.data(), bytes.size() - 4) != stored) fail(ErrorKind::corrupt, "{} is damaged (checksum mismatch)", what);
    ByteReader r(bytes.data() + sizeof kMagic, bytes.size() - sizeof kMagic - 4, what);
    try {
      json doc = r.json();
      config_ = config_from_storage(doc.at("config"));
      reset_spaces();
      uint64_t last = doc.at("last_op").get<uint64_t>();
      for (const auto& pj : doc.at("points")) {
        PointId id;
        uint64_t version;
        json payload;
        NamedVectors nv;
        read_point(pj, id, version, payload, nv);
        if (by_id_.count(id)) fail(ErrorKind::corrupt, "{}: point id {} appears twice", what, id.to_string());
        apply_upsert(version, id, std::move(payload), std::move(nv));
      }
      for (const auto& ix : doc.at("indexes"))
        apply_index(true, ix.at("field").get<std::string>(), parse_payload_schema_type(ix.at("type").get<std::string>()));
      last_op_ = last;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::corrupt) throw;
      fail(ErrorKind::corrupt, "{}: {}", what, e.what());
    } catch (const std::exception& e) {
      fail(ErrorKind::corrupt, "{}: bad contents: {}", what, e.what());
    }
  }

  const std::filesystem::path dir_;
  const std::string name_;
  CollectionConfig config_;
  const Collection::Options options_;

  mutable std::shared_mutex mu_;  // readers shared, writers exclusive; guards everything below
  bool dropped_ = false;
  uint64_t last_op_ = 0;
  std::vector<MSlot> slots_;
  std::unordered_map<PointId, uint32_t, PointIdHash> by_id_;  // live points
  std::map<std::string, DenseSpace> dense_;
  std::map<std::string, SparseSpace> sparse_;
  std::map<std::string, std::unique_ptr<PayloadIndex>> indexes_;
  std::unique_ptr<Wal> wal_;
  uint64_t checkpoint_size_ = 0;
};

// ---------------------------------------------------------------------------------------------

MultiCollection::MultiCollection(std::unique_ptr<MultiImpl> impl) : impl_(std::move(impl)) {}
MultiCollection::~MultiCollection() = default;

std::unique_ptr<MultiCollection> MultiCollection::create(const std::filesystem::path& dir, std::string name,
                                                         const CollectionConfig& config, Collection::Options options) {
  config.validate();
  if (std::filesystem::exists(dir)) fail(ErrorKind::conflict, "collection directory {} already exists", dir.string());
  auto impl = std::make_unique<MultiImpl>(dir, std::move(name), config, options);
  impl->create_files();
  return std::unique_ptr<MultiCollection>(new MultiCollection(std::move(impl)));
}

std::unique_ptr<MultiCollection> MultiCollection::open(const std::filesystem::path& dir, std::string name,
                                                       Collection::Options options) {
  CollectionConfig placeholder;
  placeholder.named = true;
  auto impl = std::make_unique<MultiImpl>(dir, std::move(name), placeholder, options);
  impl->load_files();
  return std::unique_ptr<MultiCollection>(new MultiCollection(std::move(impl)));
}

const std::string& MultiCollection::name() const { return impl_->name(); }
const CollectionConfig& MultiCollection::config() const { return impl_->config(); }
uint64_t MultiCollection::upsert(std::vector<Point> points) { return impl_->upsert(std::move(points)); }
uint64_t MultiCollection::delete_points(const PointSelector& s) { return impl_->delete_points(s); }
std::vector<Record> MultiCollection::retrieve(const std::vector<PointId>& ids, const PayloadSelector& p, bool v) const {
  return impl_->retrieve(ids, p, v);
}
ScrollResult MultiCollection::scroll(const ScrollRequest& r) const { return impl_->scroll(r); }
uint64_t MultiCollection::count(const Filter* f) const { return impl_->count(f); }
uint64_t MultiCollection::payload_op(int kind, const nlohmann::json& arg, const PointSelector& s) {
  return impl_->payload_op(kind, arg, s);
}
std::vector<ScoredPoint> MultiCollection::search(const SearchRequest& r) const { return impl_->search(r); }
uint64_t MultiCollection::index_op(bool create, const std::string& f, PayloadSchemaType t) {
  return impl_->index_op(create, f, t);
}
CollectionInfo MultiCollection::info() const { return impl_->info(); }
void MultiCollection::write_snapshot(const std::filesystem::path& p) const { impl_->write_snapshot(p); }
void MultiCollection::checkpoint() { impl_->checkpoint(); }
void MultiCollection::update_config(const nlohmann::json& p) { impl_->update_config(p); }
void MultiCollection::mark_dropped() { impl_->mark_dropped(); }

}  // namespace etna::store::detail
