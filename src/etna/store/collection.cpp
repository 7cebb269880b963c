#include "etna/store/collection.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <thread>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/store/distance.h"
#include "etna/store/float_arena.h"
#include "etna/store/hnsw.h"
#include "etna/store/ivf.h"
#include "etna/store/multi_collection.h"
#include "etna/store/payload_index.h"
#include "etna/store/product_quantizer.h"
#include "etna/store/storage.h"

namespace etna::store {

using namespace detail;
using nlohmann::json;

namespace {

// Log record types. Writes selected by filter are logged with the ids they resolved to, so
// replay never re-evaluates a filter.
enum RecordType : uint8_t {
  kUpsert = 1,
  kDelete = 2,
  kSetPayload = 3,
  kOverwritePayload = 4,
  kDeletePayloadKeys = 5,
  kClearPayload = 6,
  kCreateIndex = 7,
  kDeleteIndex = 8,
};

constexpr char kDataMagic[8] = {'E', 'T', 'N', 'A', 'V', 'E', 'C', '1'};
constexpr const char* kDataFile = "data.etna";
constexpr const char* kWalFile = "wal.log";
constexpr const char* kVectorFile = "vectors.f32";  // scratch mapping, rebuilt on open
constexpr size_t kQuantizeMinPoints = 256;  // train int8 ranges once there is enough data
// Product quantisation trains 256 centroids per sub-space, so it waits for more points: k-means
// on fewer than ~8 points per centroid gives a codebook that mostly memorises its sample.
constexpr size_t kProductMinPoints = 2048;
constexpr size_t kMinTombstonesForRebuild = 128;
// Below this many live points every search is an exact scan: it costs less than any index walk.
constexpr size_t kFlatMaxPoints = 256;
// IVF-PQ rescores at least this many candidates per result with the floats.
constexpr size_t kIvfRescoreFactor = 8;

json config_to_storage(const CollectionConfig& c) {
  json j = {{"dim", c.dim},
            {"distance", distance_name(c.distance)},
            {"m", c.hnsw.m},
            {"ef_construct", c.hnsw.ef_construct},
            {"full_scan_threshold", c.hnsw.full_scan_threshold},
            {"on_disk", c.on_disk},
            {"wal_capacity_mb", c.wal_capacity_mb}};
  if (c.quantization) j["quantization"] = {{"quantile", c.quantization->quantile}, {"always_ram", c.quantization->always_ram}};
  if (c.binary) j["binary"] = {{"always_ram", c.binary->always_ram}};
  if (c.product) j["product"] = {{"compression", c.product->compression}, {"always_ram", c.product->always_ram}};
  if (c.ivf)
    j["ivf"] = {{"nlist", c.ivf->nlist ? json(*c.ivf->nlist) : json()},
                {"nprobe", c.ivf->nprobe ? json(*c.ivf->nprobe) : json()},
                {"pq_compression", c.ivf->pq_compression},
                {"training_threshold", c.ivf->training_threshold}};
  return j;
}

CollectionConfig config_from_storage(const json& j) {
  try {
    CollectionConfig c;
    c.dim = j.at("dim").get<size_t>();
    c.distance = parse_distance(j.at("distance").get<std::string>());
    c.hnsw.m = j.at("m").get<size_t>();
    c.hnsw.ef_construct = j.at("ef_construct").get<size_t>();
    c.hnsw.full_scan_threshold = j.at("full_scan_threshold").get<size_t>();
    c.on_disk = j.value("on_disk", false);
    c.wal_capacity_mb = j.value("wal_capacity_mb", size_t(32));
    if (j.contains("quantization") && !j["quantization"].is_null())
      c.quantization = ScalarQuantization{j["quantization"].at("quantile").get<float>(),
                                          j["quantization"].value("always_ram", true)};
    if (j.contains("binary") && !j["binary"].is_null()) c.binary = BinaryQuantization{j["binary"].value("always_ram", true)};
    if (j.contains("product") && !j["product"].is_null())
      c.product = ProductQuantization{j["product"].at("compression").get<uint32_t>(), j["product"].value("always_ram", true)};
    if (auto i = j.find("ivf"); i != j.end() && i->is_object()) {
      IvfConfig v;
      // Both keys are always written (null when unset): a missing one is a damaged file.
      auto optional_size = [&](const char* key) -> std::optional<size_t> {
        auto k = i->find(key);
        if (k == i->end()) fail(ErrorKind::corrupt, "collection config is invalid: ivf.{} is missing", key);
        if (k->is_null()) return std::nullopt;
        return k->get<size_t>();
      };
      v.nlist = optional_size("nlist");
      v.nprobe = optional_size("nprobe");
      v.pq_compression = i->at("pq_compression").get<uint32_t>();
      v.training_threshold = i->at("training_threshold").get<size_t>();
      c.ivf = v;
    }
    c.validate(/*stored=*/true);
    return c;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(ErrorKind::corrupt, "collection config is invalid: {}", e.what());
  }
}

std::vector<std::string> split_dots(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

void erase_path(json& payload, const std::string& key) {
  if (payload.is_object() && payload.contains(key)) {  // a top-level key that contains dots
    payload.erase(key);
    return;
  }
  auto parts = split_dots(key);
  json* d = &payload;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!d->is_object()) return;
    auto it = d->find(parts[i]);
    if (it == d->end()) return;
    d = &*it;
  }
  if (d->is_object()) d->erase(parts.back());
}

// Affine int8 code: x ~ lo + alpha * q with q in 0..kLevels (7 bits, so the AVX2 kernels can
// multiply codes as bytes), ranges clipped at the configured quantile.
struct Quantizer {
  static constexpr float kLevels = 127.0f;
  bool trained = false;
  float lo = 0, hi = 0;
  float alpha() const { return (hi - lo) / kLevels; }
  void encode(const float* x, size_t n, uint8_t* out, float* sum) const {
    float inv = hi > lo ? kLevels / (hi - lo) : 0.0f;
    int32_t s = 0;
    for (size_t i = 0; i < n; ++i) {
      float v = std::round((std::clamp(x[i], lo, hi) - lo) * inv);
      out[i] = static_cast<uint8_t>(std::clamp(v, 0.0f, kLevels));
      s += out[i];
    }
    *sum = static_cast<float>(s);
  }
  // Ranges from the values of up to ~2M components of the given vectors.
  static Quantizer train(const float* base, size_t dim, const std::vector<uint32_t>& slots, float quantile) {
    Quantizer q;
    if (slots.empty()) return q;
    size_t step = std::max<size_t>(1, slots.size() * dim / 2000000);
    std::vector<float> vals;
    for (size_t i = 0; i < slots.size(); i += step) {
      const float* v = base + size_t(slots[i]) * dim;
      vals.insert(vals.end(), v, v + dim);
    }
    double tail = (1.0 - quantile) / 2.0;
    size_t lo_i = static_cast<size_t>(tail * double(vals.size() - 1));
    size_t hi_i = vals.size() - 1 - lo_i;
    std::nth_element(vals.begin(), vals.begin() + lo_i, vals.end());
    q.lo = vals[lo_i];
    std::nth_element(vals.begin(), vals.begin() + hi_i, vals.end());
    q.hi = vals[hi_i];
    if (!(q.hi > q.lo)) q.hi = q.lo + 1e-6f;
    q.trained = true;
    return q;
  }
};

// Binary code: bit d is set when x[d] is above that dimension's mean (training), so codes of
// centred data are sign bits. Distances between codes are Hamming distances.
struct BinaryCoder {
  bool trained = false;
  std::vector<float> mean;
  size_t words = 0;  // uint64 words per code
  void encode(const float* x, uint64_t* out) const {
    std::fill(out, out + words, 0);
    for (size_t d = 0; d < mean.size(); ++d)
      if (x[d] > mean[d]) out[d >> 6] |= uint64_t(1) << (d & 63);
  }
  static BinaryCoder train(const float* base, size_t dim, const std::vector<uint32_t>& slots) {
    BinaryCoder b;
    b.words = (dim + 63) / 64;
    b.mean.assign(dim, 0.0f);
    if (slots.empty()) return b;
    std::vector<double> acc(dim, 0.0);
    for (uint32_t s : slots)
      for (size_t d = 0; d < dim; ++d) acc[d] += base[size_t(s) * dim + d];
    for (size_t d = 0; d < dim; ++d) b.mean[d] = float(acc[d] / double(slots.size()));
    b.trained = true;
    return b;
  }
};

struct BinarySpace {
  const uint64_t* codes;
  size_t words;
  const uint64_t* q;
  uint32_t (*fn)(const uint64_t*, const uint64_t*, size_t) = kernels().hamming;
  float operator()(uint32_t v) const { return float(fn(q, codes + size_t(v) * words, words)); }
  float between(uint32_t a, uint32_t b) const { return float(fn(codes + size_t(a) * words, codes + size_t(b) * words, words)); }
  void prefetch(uint32_t v) const { __builtin_prefetch(codes + size_t(v) * words); }
  void prefetch_all(uint32_t v) const { prefetch(v); }
};

// Prefetches `bytes` bytes from p into the cache, one line at a time.
inline void prefetch_bytes(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

// ADC distances: the graph walk's space over product codes.
struct ProductSpace {
  const uint8_t* codes;
  size_t m;
  const float* table;  // m x 256
  float operator()(uint32_t v) const {
    const uint8_t* c = codes + size_t(v) * m;
    float s0 = 0, s1 = 0;  // two chains so the adds overlap
    size_t j = 0;
    for (; j + 1 < m; j += 2) {
      s0 += table[j * ProductQuantizer::kCentroids + c[j]];
      s1 += table[(j + 1) * ProductQuantizer::kCentroids + c[j + 1]];
    }
    if (j < m) s0 += table[j * ProductQuantizer::kCentroids + c[j]];
    return s0 + s1;
  }
  void prefetch(uint32_t v) const { __builtin_prefetch(codes + size_t(v) * m); }
  void prefetch_all(uint32_t v) const { prefetch_bytes(codes + size_t(v) * m, std::min<size_t>(m, 1024)); }
};

// Float distances between a query (or a stored node) and stored vectors. The kernel is looked
// up once (when the space is made), not per distance.
struct FloatSpace {
  const float* base;
  size_t dim;
  Distance metric;
  const float* q;
  float (*fn)(const float*, const float*, size_t) = nullptr;  // null: the generic distance()
  bool negate = false;

  FloatSpace(const float* base_, size_t dim_, Distance metric_, const float* q_)
      : base(base_), dim(dim_), metric(metric_), q(q_) {
    const Kernels& k = kernels();
    switch (metric) {
      case Distance::Euclid: fn = k.l2sq; break;
      case Distance::Cosine:
      case Distance::Dot: fn = k.dot, negate = true; break;
      case Distance::Manhattan:
      case Distance::Hamming: fn = k.l1; break;
      case Distance::Jaccard: break;
    }
  }
  float dist(const float* a, const float* b) const {
    if (!fn) return distance(metric, a, b, dim);
    float r = fn(a, b, dim);
    return negate ? -r : r;
  }
  float operator()(uint32_t v) const { return dist(q, base + size_t(v) * dim); }
  float between(uint32_t a, uint32_t b) const { return dist(base + size_t(a) * dim, base + size_t(b) * dim); }
  void prefetch(uint32_t v) const { __builtin_prefetch(base + size_t(v) * dim); }
  void prefetch_all(uint32_t v) const { prefetch_bytes(base + size_t(v) * dim, std::min<size_t>(dim * 4, 1024)); }
};

// int8 distances: the same metric computed on codes (Cosine/Dot via the affine expansion of
// the dot product, Euclid and Manhattan scaled by alpha).
struct QuantSpace {
  const uint8_t* codes;
  const float* sums;
  size_t dim;
  Distance metric;
  float lo, alpha;
  const uint8_t* q;
  float q_sum;
  const Kernels* k;
  float dist(const uint8_t* a, float sa, const uint8_t* b, float sb) const {
    switch (metric) {
      case Distance::Euclid: return alpha * alpha * float(k->l2sq_u8(a, b, dim));
      case Distance::Manhattan: return alpha * float(k->l1_u8(a, b, dim));
      default:
        return -(alpha * alpha * float(k->dot_u8(a, b, dim)) + alpha * lo * (sa + sb) + float(dim) * lo * lo);
    }
  }
  // Euclid and Manhattan never read the sums (one cache miss less per distance).
  bool needs_sums() const { return metric != Distance::Euclid && metric != Distance::Manhattan; }
  float operator()(uint32_t v) const {
    return dist(q, q_sum, codes + size_t(v) * dim, needs_sums() ? sums[v] : 0.0f);
  }
  float between(uint32_t a, uint32_t b) const {
    return dist(codes + size_t(a) * dim, needs_sums() ? sums[a] : 0.0f, codes + size_t(b) * dim,
                needs_sums() ? sums[b] : 0.0f);
  }
  void prefetch(uint32_t v) const { __builtin_prefetch(codes + size_t(v) * dim); }
  void prefetch_all(uint32_t v) const { prefetch_bytes(codes + size_t(v) * dim, std::min<size_t>(dim, 1024)); }
};

// Per slot: 32 bytes (PointId is 17 bytes, byte-aligned).
struct Slot {
  uint64_t version = 0;
  PointId id;
  bool live = false;
};

// Live points by id: open addressing with linear probing and backward-shift deletion over slot
// numbers; keys are read from the slots themselves, so a point costs 4-5 bytes here instead of
// a tree node (~64 bytes). Unordered: scroll sorts on demand (see CollectionImpl::id_order()).
class IdMap {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  explicit IdMap(const std::vector<Slot>* slots) : slots_(slots) {}

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The slot holding id, or kNone.
  uint32_t find(const PointId& id) const {
    if (table_.empty()) return kNone;
    for (size_t i = home(id);; i = (i + 1) & mask()) {
      uint32_t s = table_[i];
      if (s == kNone) return kNone;
      if ((*slots_)[s].id == id) return s;
    }
  }
  bool contains(const PointId& id) const { return find(id) != kNone; }
  // Adds slot s under slots[s].id. REQUIRES: that id is not present.
  void insert(uint32_t s) {
    if ((count_ + 1) * 5 > table_.size() * 4) grow();  // load factor <= 0.8
    place(s);
    ++count_;
  }
  // Removes id if present.
  void erase(const PointId& id) {
    if (table_.empty()) return;
    size_t i = home(id);
    for (;; i = (i + 1) & mask()) {
      if (table_[i] == kNone) return;
      if ((*slots_)[table_[i]].id == id) break;
    }
    // Backward shift: pull later entries of the probe run into the hole when that keeps them
    // reachable from their home position.
    size_t j = i;
    while (true) {
      table_[i] = kNone;
      while (true) {
        j = (j + 1) & mask();
        if (table_[j] == kNone) {
          --count_;
          return;
        }
        size_t k = home((*slots_)[table_[j]].id);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) break;
      }
      table_[i] = table_[j];
      i = j;
    }
  }
  template <class F>
  void for_each(const F& fn) const {
    for (uint32_t s : table_)
      if (s != kNone) fn(s);
  }
  void clear() {
    table_.clear();
    count_ = 0;
  }

 private:
  size_t mask() const { return table_.size() - 1; }
  size_t home(const PointId& id) const {
    uint64_t h = PointIdHash{}(id) * 0x9E3779B97F4A7C15ull;
    return size_t(h >> (64 - bits_));
  }
  void place(uint32_t s) {
    size_t i = home((*slots_)[s].id);
    while (table_[i] != kNone) i = (i + 1) & mask();
    table_[i] = s;
  }
  void grow() {
    std::vector<uint32_t> old = std::move(table_);
    bits_ = old.empty() ? 4 : bits_ + 1;
    table_.assign(size_t(1) << bits_, kNone);
    for (uint32_t s : old)
      if (s != kNone) place(s);
  }

  const std::vector<Slot>* slots_;
  std::vector<uint32_t> table_;  // slot numbers, kNone = empty; size 2^bits_
  int bits_ = 0;
  size_t count_ = 0;
};

struct PayloadOp {
  RecordType kind;
  json arg;  // payload object, or key list
};

}  // namespace

// ---------------------------------------------------------------------------------------------

class CollectionImpl {
 public:
  CollectionImpl(std::filesystem::path dir, std::string name, CollectionConfig config, Collection::Options options)
      : dir_(std::move(dir)), name_(std::move(name)), config_(std::move(config)), options_(options) {
    graph_ = std::make_unique<HnswGraph>(config_.hnsw.m, config_.hnsw.ef_construct);
  }
  ~CollectionImpl() { stop_optimizer(); }

  // ---- life cycle ----
  void create_files() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) fail(ErrorKind::io, "cannot create collection directory {}: {}", dir_.string(), ec.message());
    if (floats_in_file()) vectors_.use_file(dir_ / kVectorFile);
    checkpoint_locked_write_only();
    open_wal();
  }

  void load_files() {
    auto path = dir_ / kDataFile;
    if (!std::filesystem::exists(path))
      fail(ErrorKind::corrupt, "collection '{}' has no data file {}", name_, path.string());
    auto bytes = read_file(path);
    load_data(bytes, path.string());
    checkpoint_size_ = bytes.size();
    open_wal();
  }

  void open_wal() {
    wal_ = Wal::open(dir_ / kWalFile, [this](const uint8_t* p, size_t n) { replay(p, n); });
  }

  void mark_dropped() {
    {
      std::unique_lock lock(mu_);
      dropped_ = true;
    }
    stop_optimizer();
  }

  // ---- writes ----
  uint64_t upsert(std::vector<Point> points) {
    for (size_t i = 0; i < points.size(); ++i) validate_point(points[i]);
    std::unique_lock lock(mu_);
    check_alive();
    uint64_t op = last_op_ + 1;
    ByteWriter w;
    w.u8(kUpsert);
    w.u64(op);
    w.u32(static_cast<uint32_t>(points.size()));
    for (const auto& p : points) {
      w.id(p.id);
      w.raw(p.vector.data(), p.vector.size() * sizeof(float));
      w.json(p.payload);
    }
    wal_->append(w.bytes());
    last_op_ = op;
    apply_upsert(op, points);
    return after_write(lock, op);
  }

  uint64_t delete_points(const PointSelector& sel) {
    std::unique_lock lock(mu_);
    check_alive();
    std::vector<PointId> ids = resolve(sel, false);
    uint64_t op = last_op_ + 1;
    ByteWriter w;
    w.u8(kDelete);
    w.u64(op);
    write_ids(w, ids);
    wal_->append(w.bytes());
    last_op_ = op;
    apply_delete(ids);
    return after_write(lock, op);
  }

  uint64_t payload_op(RecordType kind, json arg, const PointSelector& sel) {
    if ((kind == kSetPayload || kind == kOverwritePayload) && !arg.is_object())
      fail(ErrorKind::invalid_argument, "payload must be a JSON object");
    std::unique_lock lock(mu_);
    check_alive();
    std::vector<PointId> ids = resolve(sel, true);
    uint64_t op = last_op_ + 1;
    ByteWriter w;
    w.u8(kind);
    w.u64(op);
    if (kind != kClearPayload) w.json(arg);
    write_ids(w, ids);
    wal_->append(w.bytes());
    last_op_ = op;
    apply_payload(op, kind, arg, ids);
    return after_write(lock, op);
  }

  uint64_t index_op(bool create, const std::string& field, PayloadSchemaType type) {
    KeyPath::parse(field);  // validates
    std::unique_lock lock(mu_);
    check_alive();
    uint64_t op = last_op_ + 1;
    ByteWriter w;
    w.u8(create ? kCreateIndex : kDeleteIndex);
    w.u64(op);
    w.str(field);
    w.u8(static_cast<uint8_t>(type));
    wal_->append(w.bytes());
    last_op_ = op;
    apply_index(create, field, type);
    return after_write(lock, op);
  }

  // ---- reads ----
  std::vector<Record> retrieve(const std::vector<PointId>& ids, const PayloadSelector& sel, bool with_vector) const {
    std::shared_lock lock(mu_);
    check_alive();
    std::vector<Record> out;
    for (const auto& id : ids) {
      uint32_t s = by_id_.find(id);
      if (s != IdMap::kNone) out.push_back(make_record(s, sel, with_vector));
    }
    return out;
  }

  ScrollResult scroll(const ScrollRequest& r) const {
    std::shared_lock lock(mu_);
    check_alive();
    ScrollResult res;
    auto order = id_order();
    auto it = order->begin();
    if (r.offset)
      it = std::lower_bound(order->begin(), order->end(), *r.offset,
                            [&](uint32_t a, const PointId& id) { return slots_[a].id < id; });
    for (; it != order->end(); ++it) {
      uint32_t s = *it;
      if (r.filter && !r.filter->matches(slots_[s].id, payload(s))) continue;
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
    for_each_candidate(*f, [&](uint32_t s) { n += f->matches(slots_[s].id, payload(s)); });
    return n;
  }

  std::vector<ScoredPoint> search(const SearchRequest& r) const {
    std::vector<float> q = prepare_query(r.vector);
    std::shared_lock lock(mu_);
    check_alive();
    return search_locked(r, q);
  }

  std::vector<std::vector<ScoredPoint>> search_batch(const std::vector<SearchRequest>& rs) const {
    std::vector<std::vector<float>> qs;
    for (const auto& r : rs) qs.push_back(prepare_query(r.vector));
    std::shared_lock lock(mu_);
    check_alive();
    std::vector<std::vector<ScoredPoint>> out;
    for (size_t i = 0; i < rs.size(); ++i) out.push_back(search_locked(rs[i], qs[i]));
    return out;
  }

  CollectionInfo info() const {
    std::shared_lock lock(mu_);
    check_alive();
    CollectionInfo ci;
    ci.points_count = by_id_.size();
    ci.indexed_vectors_count = config_.ivf ? ivf_.size() : graph_->node_count() - tombstones_;
    if (ivf_.trained()) ci.ivf_nlist = ivf_.nlist();
    ci.config = config_;
    {
      std::lock_guard<std::mutex> ol(opt_mu_);
      if (opt_requested_ || opt_running_) ci.status = "yellow";
    }
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

  void checkpoint() {
    std::unique_lock lock(mu_);
    check_alive();
    checkpoint_locked();
  }

  void update_config(const json& patch) {
    CollectionConfig next = config_;
    next.apply_patch(patch);
    wait_for_optimizer();
    std::unique_lock lock(mu_);
    check_alive();
    bool graph = next.hnsw.m != config_.hnsw.m || next.hnsw.ef_construct != config_.hnsw.ef_construct;
    bool quant = next.quantization.has_value() != config_.quantization.has_value() ||
                 (next.quantization && next.quantization->quantile != config_.quantization->quantile) ||
                 next.binary.has_value() != config_.binary.has_value() ||
                 next.product.has_value() != config_.product.has_value() ||
                 (next.product && next.product->compression != config_.product->compression);
    bool ivf_changed = next.ivf.has_value() != config_.ivf.has_value() ||
                       (next.ivf && (next.ivf->nlist != config_.ivf->nlist ||
                                     next.ivf->pq_compression != config_.ivf->pq_compression ||
                                     next.ivf->training_threshold != config_.ivf->training_threshold));
    if (next.ivf.has_value() != config_.ivf.has_value()) graph = true;  // the graph comes or goes
    config_ = next;
    ++config_generation_;  // a rebuild() that started before this must not install its graph
    if (graph) {
      // Rebuilt inline over the live points with the new parameters; tombstones go.
      const size_t dim = config_.dim;
      auto g = std::make_unique<HnswGraph>(config_.hnsw.m, config_.hnsw.ef_construct, slots_.size() + 7);
      g->reserve_nodes(slots_.size());
      if (!config_.ivf)
        for (uint32_t s = 0; s < slots_.size(); ++s)
          if (slots_[s].live) g->insert(s, FloatSpace{vectors_.data(), dim, config_.distance, &vectors_[size_t(s) * dim]});
      graph_ = std::move(g);
      tombstones_ = 0;
      free_slots_.clear();
      for (uint32_t s = slots_.size(); s-- > 0;)
        if (!slots_[s].live) free_slots_.push_back(s);
    }
    if (quant) {
      quant_ = Quantizer{};
      codes_.clear();
      code_sums_.clear();
      bin_ = BinaryCoder{};
      bcodes_.clear();
      pq_ = ProductQuantizer{};
      pcodes_.clear();
      maybe_train_quantizer();
    }
    if (ivf_changed) {
      ivf_ = InvertedFile{};
      maybe_train_ivf();
    }
    checkpoint_locked();
  }

  void wait_for_optimizer() const {
    std::unique_lock<std::mutex> lock(opt_mu_);
    opt_cv_.wait(lock, [&] { return !opt_requested_ && !opt_running_; });
  }

  const std::string& name() const { return name_; }
  const CollectionConfig& config() const { return config_; }

 private:
  // ---- validation ----
  void validate_point(Point& p) const {
    if (p.vector.size() != config_.dim)
      fail(ErrorKind::invalid_argument, "point {}: vector has {} dimensions, collection '{}' expects {}",
           p.id.to_string(), p.vector.size(), name_, config_.dim);
    check_values(p.vector, "point " + p.id.to_string());
    if (p.payload.is_null()) p.payload = json::object();
    if (!p.payload.is_object())
      fail(ErrorKind::invalid_argument, "point {}: payload must be a JSON object", p.id.to_string());
    if (config_.distance == Distance::Cosine) normalize(p.vector.data(), p.vector.size());
  }

  void check_values(const std::vector<float>& v, const std::string& what) const {
    bool binary = config_.distance == Distance::Hamming || config_.distance == Distance::Jaccard;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i]))
        fail(ErrorKind::invalid_argument, "{}: vector component {} is {} (NaN and infinity are not allowed)", what, i,
             v[i]);
      if (binary && v[i] != 0.0f && v[i] != 1.0f)
        fail(ErrorKind::invalid_argument, "{}: vector component {} is {}; {} vectors must hold only 0 and 1", what, i,
             v[i], distance_name(config_.distance));
    }
  }

  std::vector<float> prepare_query(const std::vector<float>& v) const {
    if (v.size() != config_.dim)
      fail(ErrorKind::invalid_argument, "query vector has {} dimensions, collection '{}' expects {}", v.size(), name_,
           config_.dim);
    check_values(v, "query");
    std::vector<float> q = v;
    if (config_.distance == Distance::Cosine) normalize(q.data(), q.size());
    return q;
  }

  void check_alive() const {
    if (dropped_) fail(ErrorKind::not_found, "collection '{}' not found (it was deleted)", name_);
  }

  std::vector<PointId> resolve(const PointSelector& sel, bool must_exist) const {
    std::vector<PointId> ids;
    if (sel.filter) {
      for (uint32_t s : *id_order())
        if (sel.filter->matches(slots_[s].id, payload(s))) ids.push_back(slots_[s].id);
      return ids;
    }
    for (const auto& id : sel.ids) {
      if (by_id_.contains(id)) ids.push_back(id);
      else if (must_exist) fail(ErrorKind::not_found, "no point with id {} in collection '{}'", id.to_string(), name_);
    }
    return ids;
  }

  static void write_ids(ByteWriter& w, const std::vector<PointId>& ids) {
    w.u32(static_cast<uint32_t>(ids.size()));
    for (const auto& id : ids) w.id(id);
  }
  static std::vector<PointId> read_ids(ByteReader& r) {
    std::vector<PointId> ids(r.u32());
    for (auto& id : ids) id = r.id();
    return ids;
  }

  // ---- state changes (shared by live writes and log replay). REQUIRES: mu_ held exclusively.
  void apply_upsert(uint64_t op, std::vector<Point>& points) {
    const size_t dim = config_.dim;
    for (auto& p : points) {
      if (uint32_t s = by_id_.find(p.id); s != IdMap::kNone) {
        if (std::memcmp(&vectors_[size_t(s) * dim], p.vector.data(), dim * sizeof(float)) == 0) {
          unindex(s);
          store_payload(s, std::move(p.payload));
          slots_[s].version = op;
          index(s);
          continue;
        }
        kill(s);
      }
      uint32_t s = allocate_slot();
      std::memcpy(&vectors_[size_t(s) * dim], p.vector.data(), dim * sizeof(float));
      slots_[s] = Slot{op, p.id, true};
      store_payload(s, std::move(p.payload));
      by_id_.insert(s);
      order_dirty();
      index(s);
      if (quant_.trained) quant_.encode(&vectors_[size_t(s) * dim], dim, &codes_[size_t(s) * dim], &code_sums_[s]);
      if (bin_.trained) bin_.encode(&vectors_[size_t(s) * dim], &bcodes_[size_t(s) * bin_.words]);
      if (pq_.trained) pq_.encode(&vectors_[size_t(s) * dim], &pcodes_[size_t(s) * pq_.m]);
      if (config_.ivf) {
        if (ivf_.trained()) ivf_.add(s, &vectors_[size_t(s) * dim]);
      } else {
        graph_->insert(s, FloatSpace{vectors_.data(), dim, config_.distance, &vectors_[size_t(s) * dim]});
      }
    }
    maybe_train_quantizer();
    maybe_train_ivf();
  }

  void apply_delete(const std::vector<PointId>& ids) {
    for (const auto& id : ids) {
      if (uint32_t s = by_id_.find(id); s != IdMap::kNone) kill(s);
    }
  }

  void apply_payload(uint64_t op, RecordType kind, const json& arg, const std::vector<PointId>& ids) {
    for (const auto& id : ids) {
      uint32_t s = by_id_.find(id);
      if (s == IdMap::kNone) continue;
      unindex(s);
      json& pl = payloads_[s];
      if (pl.is_null()) pl = json::object();
      if (kind == kSetPayload) {
        for (auto kv = arg.begin(); kv != arg.end(); ++kv) pl[kv.key()] = kv.value();
      } else if (kind == kOverwritePayload) {
        pl = arg;
      } else if (kind == kDeletePayloadKeys) {
        for (const auto& k : arg) erase_path(pl, k.get<std::string>());
      } else {
        pl = json::object();
      }
      if (pl.is_object() && pl.empty()) pl = json();
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
    by_id_.for_each([&](uint32_t s) { idx->add(s, payload(s)); });
    indexes_[field] = std::move(idx);
  }

  void index(uint32_t s) {
    for (auto& [f, idx] : indexes_) idx->add(s, payload(s));
  }
  void unindex(uint32_t s) {
    for (auto& [f, idx] : indexes_) idx->remove(s, payload(s));
  }

  // Marks slot s deleted. It stays in the graph as a tombstone (still walked, never returned)
  // until the optimiser rebuilds the graph.
  void kill(uint32_t s) {
    unindex(s);
    by_id_.erase(slots_[s].id);
    order_dirty();
    slots_[s].live = false;
    payloads_[s] = json();
    ivf_.remove(s);
    if (graph_->contains(s)) ++tombstones_;
    else free_slots_.push_back(s);
  }

  uint32_t allocate_slot() {
    if (!free_slots_.empty()) {
      uint32_t s = free_slots_.back();
      free_slots_.pop_back();
      return s;
    }
    uint32_t s = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
    payloads_.emplace_back();
    vectors_.resize(slots_.size() * config_.dim);
    if (quant_.trained) {
      codes_.resize(slots_.size() * config_.dim);
      code_sums_.resize(slots_.size());
    }
    if (bin_.trained) bcodes_.resize(slots_.size() * bin_.words);
    if (pq_.trained) pcodes_.resize(slots_.size() * pq_.m);
    return s;
  }

  // Codes (or inverted lists) do the walking and floats only rescore: keep them in page cache.
  bool floats_in_file() const {
    return quantizable() || config_.binary || config_.product || (config_.ivf && config_.ivf->pq_compression);
  }

  bool quantizable() const {
    return config_.quantization && config_.distance != Distance::Hamming && config_.distance != Distance::Jaccard;
  }

  void maybe_train_quantizer() {
    if (config_.binary && !bin_.trained && by_id_.size() >= kQuantizeMinPoints) {
      std::vector<uint32_t> live;
      by_id_.for_each([&](uint32_t s) { live.push_back(s); });
      std::sort(live.begin(), live.end());
      set_binary(BinaryCoder::train(vectors_.data(), config_.dim, live));
    }
    if (config_.product && !pq_.trained && by_id_.size() >= kProductMinPoints) {
      std::vector<uint32_t> live;
      by_id_.for_each([&](uint32_t s) { live.push_back(s); });
      std::sort(live.begin(), live.end());
      set_product(ProductQuantizer::train(vectors_.data(), config_.dim, live, config_.product->compression));
    }
    if (!quantizable() || quant_.trained || by_id_.size() < kQuantizeMinPoints) return;
    std::vector<uint32_t> live;
    by_id_.for_each([&](uint32_t s) { live.push_back(s); });
    std::sort(live.begin(), live.end());
    set_quantizer(Quantizer::train(vectors_.data(), config_.dim, live, config_.quantization->quantile));
  }

  // Trains the inverted file once the collection reaches ivf_config.training_threshold and
  // files every live point (in slot order, so a replay gives the same lists).
  void maybe_train_ivf() {
    if (!config_.ivf || ivf_.trained() || by_id_.size() < config_.ivf->training_threshold) return;
    std::vector<uint32_t> live;
    by_id_.for_each([&](uint32_t s) { live.push_back(s); });
    std::sort(live.begin(), live.end());
    size_t nlist = config_.ivf->nlist.value_or(
        std::min(InvertedFile::default_nlist(live.size()), IvfConfig::max_nlist(config_.dim)));  // bounded training
    ivf_ = InvertedFile::train(vectors_.data(), config_.dim, config_.distance, live, nlist, config_.ivf->pq_compression);
    for (uint32_t s : live) ivf_.add(s, &vectors_[size_t(s) * config_.dim]);
    log::debug("collection '{}': inverted file trained: {} lists over {} points", name_, ivf_.nlist(), live.size());
  }

  void set_binary(const BinaryCoder& b) {
    bin_ = b;
    bcodes_.assign(slots_.size() * b.words, 0);
    for (uint32_t s = 0; s < slots_.size(); ++s)
      if (slots_[s].live || graph_->contains(s)) bin_.encode(&vectors_[size_t(s) * config_.dim], &bcodes_[size_t(s) * b.words]);
  }

  // Installs codebooks and encodes every slot the graph can reach.
  void set_product(ProductQuantizer pq) {
    pq_ = std::move(pq);
    pcodes_.assign(slots_.size() * pq_.m, 0);
    for (uint32_t s = 0; s < slots_.size(); ++s)
      if (slots_[s].live || graph_->contains(s)) pq_.encode(&vectors_[size_t(s) * config_.dim], &pcodes_[size_t(s) * pq_.m]);
  }

  void set_quantizer(const Quantizer& q) {
    quant_ = q;
    const size_t dim = config_.dim;
    codes_.assign(slots_.size() * dim, 0);
    code_sums_.assign(slots_.size(), 0.0f);
    for (uint32_t s = 0; s < slots_.size(); ++s)
      if (slots_[s].live || graph_->contains(s)) quant_.encode(&vectors_[size_t(s) * dim], dim, &codes_[size_t(s) * dim], &code_sums_[s]);
  }

  // After a logged write: checkpoint when the log is long, start the optimiser when the graph
  // holds many tombstones. Releases the lock before an inline rebuild.
  uint64_t after_write(std::unique_lock<std::shared_mutex>& lock, uint64_t op) {
    uint64_t limit = options_.checkpoint_bytes
                         ? options_.checkpoint_bytes
                         : std::max<uint64_t>(uint64_t(config_.wal_capacity_mb) << 20, checkpoint_size_);
    if (wal_->size() > limit) {
      try {
        checkpoint_locked();
      } catch (const std::exception& e) {  // the write itself is durable in the log
        log::error("collection '{}': checkpoint failed (will retry): {}", name_, e.what());
      }
    }
    bool rebuild = tombstones_ >= kMinTombstonesForRebuild &&
                   double(tombstones_) >= options_.rebuild_tombstone_fraction * double(graph_->node_count());
    lock.unlock();
    if (rebuild) request_rebuild();
    return op;
  }

  // ---- search ----
  template <class F>
  void for_each_candidate(const Filter& f, const F& fn) const {
    if (auto c = index_candidates(f)) {
      for (uint32_t s : *c)
        if (slots_[s].live) fn(s);
      return;
    }
    by_id_.for_each(fn);
  }

  // Smallest candidate set an index (or has_id) gives for a must-condition, if any.
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
          if (uint32_t s = by_id_.find(id); s != IdMap::kNone) cand->push_back(s);
        std::sort(cand->begin(), cand->end());
        cand->erase(std::unique(cand->begin(), cand->end()), cand->end());
      }
      if (cand && (!best || cand->size() < best->size())) best = std::move(cand);
    }
    return best;
  }

  // Estimated number of live points passing f: index cardinality when an index applies, else
  // the pass rate on an even sample of up to 512 live slots.
  size_t estimate(const Filter& f, const std::optional<std::vector<uint32_t>>& cands) const {
    if (cands) return cands->size();
    size_t live = by_id_.size();
    if (live == 0) return 0;
    size_t step = std::max<size_t>(1, slots_.size() / 512), seen = 0, pass = 0;
    for (size_t s = 0; s < slots_.size(); s += step) {
      if (!slots_[s].live) continue;
      ++seen;
      pass += f.matches(slots_[s].id, payload(s));
    }
    return seen == 0 ? live : (live * pass + seen - 1) / seen;
  }

  std::vector<Candidate> exact_scan(const float* q, size_t need, const Filter* f,
                                    const std::optional<std::vector<uint32_t>>& cands) const {
    std::priority_queue<Candidate> heap;  // furthest on top
    FloatSpace space{vectors_.data(), config_.dim, config_.distance, q};
    auto visit = [&](uint32_t s) {
      if (!slots_[s].live || (f && !f->matches(slots_[s].id, payload(s)))) return;
      float d = space(s);
      if (heap.size() < need) heap.push({d, s});
      else if (d < heap.top().distance) heap.pop(), heap.push({d, s});
    };
    if (cands) {
      for (uint32_t s : *cands) visit(s);
    } else {
      for (uint32_t s = 0; s < slots_.size(); ++s) visit(s);
    }
    std::vector<Candidate> out(heap.size());
    for (size_t i = heap.size(); i-- > 0;) out[i] = heap.top(), heap.pop();
    return out;
  }

  std::vector<Candidate> graph_search(const float* q, size_t need, size_t ef, const Filter* f) const {
    // Without a filter or tombstones every node is a result: no per-node check at all.
    if (!f && tombstones_ == 0) return graph_search_with(q, need, ef, [](uint32_t) { return true; });
    auto accept = [&](uint32_t s) { return slots_[s].live && (!f || f->matches(slots_[s].id, payload(s))); };
    return graph_search_with(q, need, ef, accept);
  }

  template <class Accept>
  std::vector<Candidate> graph_search_with(const float* q, size_t need, size_t ef, const Accept& accept) const {
    if (bin_.trained) {
      std::vector<uint64_t> qc(bin_.words);
      bin_.encode(q, qc.data());
      auto hits = graph_->search(BinarySpace{bcodes_.data(), bin_.words, qc.data()}, ef, accept);
      return rescore(q, std::move(hits), need);
    }
    if (pq_.trained) {
      std::vector<float> table = pq_.table(q, config_.distance);
      auto hits = graph_->search(ProductSpace{pcodes_.data(), pq_.m, table.data()}, ef, accept);
      return rescore(q, std::move(hits), need);
    }
    if (!quant_.trained) {
      auto hits = graph_->search(FloatSpace{vectors_.data(), config_.dim, config_.distance, q}, ef, accept);
      if (hits.size() > need) hits.resize(need);
      return hits;
    }
    std::vector<uint8_t> qc(config_.dim);
    float qs;
    quant_.encode(q, config_.dim, qc.data(), &qs);
    QuantSpace space{codes_.data(), code_sums_.data(), config_.dim, config_.distance, quant_.lo, quant_.alpha(),
                     qc.data(), qs, &kernels()};
    return rescore(q, graph_->search(space, ef, accept), need);
  }

  // The walk's candidates reordered by their float distances, the best `need` of them.
  std::vector<Candidate> rescore(const float* q, std::vector<Candidate> hits, size_t need) const {
    FloatSpace exact{vectors_.data(), config_.dim, config_.distance, q};
    for (size_t i = 0; i < hits.size(); ++i) {
      if (i + 1 < hits.size()) exact.prefetch_all(hits[i + 1].node);
      hits[i].distance = exact(hits[i].node);
    }
    std::sort(hits.begin(), hits.end());
    if (hits.size() > need) hits.resize(need);
    return hits;
  }

  // ---- the planner: which index answers a search ----
  enum class Index { Flat, Hnsw, Ivf };
  struct Plan {
    Index index = Index::Flat;
    std::string reason;
    std::optional<std::vector<uint32_t>> cands;  // index candidates of the filter, when computed
  };

  // Flat for exact requests, small collections, an untrained inverted file or a filter that
  // leaves few points (payload index cardinality where an index applies, else a sample);
  // otherwise the collection's index: the inverted file when ivf_config is set, else the graph.
  Plan choose_plan(const SearchRequest& r, const Filter* f, size_t need) const {
    Plan p;
    auto flat = [&](std::string reason) {
      p.reason = std::move(reason);
      return p;
    };
    const size_t live = by_id_.size();
    if (r.exact) return flat("params.exact is true");
    if (live <= std::max(need, kFlatMaxPoints))
      return flat(fmt::format("small collection: {} points (exact scan up to {})", live, kFlatMaxPoints));
    if (config_.ivf && !ivf_.trained())
      return flat(fmt::format("inverted file not trained yet: {} of {} points (ivf_config.training_threshold)", live,
                              config_.ivf->training_threshold));
    if (!config_.ivf && graph_->empty()) return flat("the HNSW graph is empty");
    if (f) {
      p.cands = index_candidates(*f);
      size_t est = estimate(*f, p.cands);
      double est_kb = double(est) * double(config_.dim * sizeof(float)) / 1024.0;
      const char* how = p.cands ? "payload index cardinality" : "estimated on a sample";
      if (est <= need)
        return flat(fmt::format("selective filter: about {} of {} points match ({}), no more than limit", est, live, how));
      if (est_kb < double(config_.hnsw.full_scan_threshold))
        return flat(fmt::format("selective filter: about {} of {} points match ({}), {:.0f} KB of vectors < "
                                "full_scan_threshold {} KB",
                                est, live, how, est_kb, config_.hnsw.full_scan_threshold));
    }
    if (config_.ivf) {
      p.index = Index::Ivf;
      p.reason = fmt::format("ivf_config: {} lists, scanning {}{}", ivf_.nlist(), nprobe_of(r),
                             f ? ", filter applied during the scan" : "");
    } else {
      p.index = Index::Hnsw;
      p.reason = fmt::format("HNSW graph of {} nodes, ef {}{}", graph_->node_count(), ef_of(r, need),
                             f ? ", filter applied during the walk" : "");
    }
    return p;
  }

  size_t nprobe_of(const SearchRequest& r) const {
    size_t n = r.ivf_nprobe.value_or(config_.ivf->nprobe.value_or(InvertedFile::default_nprobe(ivf_.nlist())));
    return std::clamp<size_t>(n, 1, ivf_.nlist());
  }
  size_t ef_of(const SearchRequest& r, size_t need) const {
    size_t ef = std::max(r.hnsw_ef.value_or(config_.hnsw.ef_construct), need);
    if ((bin_.trained || pq_.trained) && r.oversampling) ef = std::max(ef, size_t(std::ceil(*r.oversampling * double(need))));
    return ef;
  }

  std::vector<Candidate> ivf_search(const SearchRequest& r, const float* q, size_t need, const Filter* f) const {
    auto accept = [&](uint32_t s) { return !f || f->matches(slots_[s].id, payload(s)); };
    if (!ivf_.product()) return ivf_.search(q, vectors_.data(), nprobe_of(r), need, accept);
    size_t keep = std::max(kIvfRescoreFactor * need, size_t(std::ceil(r.oversampling.value_or(1.0) * double(need))));
    return rescore(q, ivf_.search(q, vectors_.data(), nprobe_of(r), keep, accept), need);
  }

  std::vector<ScoredPoint> search_locked(const SearchRequest& r, const std::vector<float>& q) const {
    std::vector<ScoredPoint> out;
    size_t need = r.limit + r.offset;
    if (r.limit == 0 || by_id_.empty()) {
      if (r.plan) *r.plan = {"flat", by_id_.empty() ? "empty collection" : "limit 0"};
      return out;
    }
    const Filter* f = r.filter && !r.filter->empty() ? r.filter.get() : nullptr;
    Plan plan = choose_plan(r, f, need);
    std::vector<Candidate> hits;
    if (plan.index == Index::Flat) {
      if (f && !plan.cands) plan.cands = index_candidates(*f);
      hits = exact_scan(q.data(), need, f, plan.cands);
    } else {
      hits = plan.index == Index::Ivf ? ivf_search(r, q.data(), need, f) : graph_search(q.data(), need, ef_of(r, need), f);
      // A filter that the estimate misjudged can starve the walk, and the probed lists may hold
      // fewer than limit + offset points (small lists, a low nprobe, a large offset): the exact
      // scan is the truth. Without a filter the collection holds more than `need` live points
      // (else the plan is flat), so a short answer is always the index's shortfall.
      if (const size_t found = hits.size(); found < need) {
        hits = exact_scan(q.data(), need, f, plan.cands);
        plan.index = Index::Flat;
        plan.reason += fmt::format("; it found {} of limit + offset = {} {}, so an exact scan answered", found,
                                   need, f ? "matches" : "points");
      }
    }
    if (r.plan) {
      const char* names[] = {"flat", "hnsw", ivf_.product() ? "ivf_pq" : "ivf_flat"};
      *r.plan = {names[int(plan.index)], plan.reason};
    }
    std::optional<float> bound;
    if (r.score_threshold) bound = distance_of(config_.distance, *r.score_threshold);
    for (size_t i = r.offset; i < hits.size(); ++i) {
      if (bound && hits[i].distance > *bound) break;
      uint32_t s = hits[i].node;
      ScoredPoint sp;
      sp.id = slots_[s].id;
      sp.version = slots_[s].version;
      sp.score = score_of(config_.distance, hits[i].distance);
      if (r.with_payload.mode != PayloadSelector::Mode::None) sp.payload = r.with_payload.apply(payload(s));
      if (r.with_vector) sp.vector = stored_vector(s);
      out.push_back(std::move(sp));
    }
    return out;
  }

  std::vector<float> stored_vector(uint32_t s) const {
    const float* v = &vectors_[size_t(s) * config_.dim];
    return std::vector<float>(v, v + config_.dim);
  }

  Record make_record(uint32_t s, const PayloadSelector& sel, bool with_vector) const {
    Record r;
    r.id = slots_[s].id;
    if (sel.mode != PayloadSelector::Mode::None) r.payload = sel.apply(payload(s));
    if (with_vector) r.vector = stored_vector(s);
    return r;
  }

  // ---- persistence ----
  std::vector<uint8_t> serialize() const {
    ByteWriter w;
    w.raw(kDataMagic, sizeof kDataMagic);
    json header = {{"format", 1}, {"name", name_}, {"config", config_to_storage(config_)}, {"last_op", last_op_}};
    header["quantizer"] = quant_.trained ? json{{"lo", quant_.lo}, {"hi", quant_.hi}} : json();
    if (bin_.trained) header["binary_means"] = bin_.mean;
    // Product codebooks and codes follow the graph, as raw floats and bytes (m recorded here);
    // the codes are stored rather than recomputed so opening does no nearest-centroid search.
    if (pq_.trained) header["product"] = {{"m", pq_.m}};
    // The inverted file follows: coarse centroids, IVF-PQ codebooks, every slot's list and the
    // listed slots' codes, so opening refiles nothing (lists are rebuilt in slot order).
    if (ivf_.trained()) header["ivf"] = {{"nlist", ivf_.nlist()}, {"pq_m", ivf_.product() ? ivf_.pq().m : 0}};
    header["indexes"] = json::array();
    for (const auto& [f, idx] : indexes_)
      header["indexes"].push_back({{"field", f}, {"type", payload_schema_type_name(idx->type())}});
    w.str(header.dump());
    const size_t dim = config_.dim;
    w.u64(slots_.size());
    for (uint32_t s = 0; s < slots_.size(); ++s) {
      uint8_t state = slots_[s].live ? 1 : graph_->contains(s) ? 2 : 0;
      w.u8(state);
      if (state == 0) continue;
      w.raw(&vectors_[size_t(s) * dim], dim * sizeof(float));
      if (state == 1) {
        w.id(slots_[s].id);
        w.u64(slots_[s].version);
        w.json(payload(s));
      }
    }
    const HnswGraph& g = *graph_;
    w.u32(static_cast<uint32_t>(g.M()));
    w.u32(g.entry_point());
    w.u32(static_cast<uint32_t>(g.max_level() + 1));
    w.u64(g.node_count());
    w.u64(g.capacity());
    w.raw(g.levels().data(), g.capacity());
    w.raw(g.links0().data(), g.links0().size() * sizeof(uint32_t));
    for (uint32_t v = 0; v < g.capacity(); ++v)
      if (g.levels()[v] > 0) w.raw(g.upper_links(v), g.upper_words(v) * sizeof(uint32_t));
    if (pq_.trained) {
      w.raw(pq_.centroids.data(), pq_.centroids.size() * sizeof(float));
      w.raw(pcodes_.data(), slots_.size() * pq_.m);
    }
    if (ivf_.trained()) {
      w.raw(ivf_.centroids().data(), ivf_.centroids().size() * sizeof(float));
      if (ivf_.product()) w.raw(ivf_.pq().centroids.data(), ivf_.pq().centroids.size() * sizeof(float));
      for (uint32_t s = 0; s < slots_.size(); ++s) w.u32(ivf_.list_of(s));
      if (ivf_.product())
        for (uint32_t s = 0; s < slots_.size(); ++s)
          if (ivf_.contains(s)) w.raw(ivf_.code(s), ivf_.pq().m);
    }
    uint32_t crc = crc32c(w.bytes().data(), w.bytes().size());
    w.u32(crc);
    return std::move(w.bytes());
  }

  // Loads a data file or snapshot into this (empty) collection. Throws corrupt on any damage.
  void load_data(const std::vector<uint8_t>& bytes, const std::string& what) {
    if (bytes.size() < sizeof kDataMagic + 4 || std::memcmp(bytes.data(), kDataMagic, sizeof kDataMagic) != 0)
      fail(ErrorKind::corrupt, "{} is not an Etna vector collection file", what);
    uint32_t stored_crc;
    std::memcpy(&stored_crc, &bytes[bytes.size() - 4], 4);
    if (crc32c(bytes.data(), bytes.size() - 4) != stored_crc)
      fail(ErrorKind::corrupt, "{} is damaged (checksum mismatch)", what);
    ByteReader r(bytes.data() + sizeof kDataMagic, bytes.size() - sizeof kDataMagic - 4, what);
    json header;
    try {
      header = json::parse(r.str());
      config_ = config_from_storage(header.at("config"));
      last_op_ = header.at("last_op").get<uint64_t>();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(ErrorKind::corrupt, "{}: bad header: {}", what, e.what());
    }
    const size_t dim = config_.dim;
    uint64_t n = r.u64();
    if (n > r.remaining()) fail(ErrorKind::corrupt, "{}: slot count {} exceeds file size", what, n);
    slots_.assign(n, Slot{});
    payloads_.assign(n, json());
    if (floats_in_file() && !vectors_.file_backed()) vectors_.use_file(dir_ / kVectorFile);
    vectors_.resize(n * dim);
    std::vector<uint8_t> states(n);
    for (uint64_t s = 0; s < n; ++s) {
      states[s] = r.u8();
      if (states[s] > 2) fail(ErrorKind::corrupt, "{}: bad slot state", what);
      if (states[s] == 0) continue;
      r.raw(&vectors_[s * dim], dim * sizeof(float));
      if (states[s] == 1) {
        slots_[s].id = r.id();
        slots_[s].version = r.u64();
        slots_[s].live = true;
        store_payload(s, r.json());
        if (by_id_.contains(slots_[s].id))
          fail(ErrorKind::corrupt, "{}: point id {} appears twice", what, slots_[s].id.to_string());
        by_id_.insert(uint32_t(s));
      }
    }
    size_t M = r.u32();
    uint32_t entry = r.u32();
    int max_level = int(r.u32()) - 1;
    uint64_t nodes = r.u64(), cap = r.u64();
    if (M != config_.hnsw.m || cap > n || nodes > cap || (nodes > 0 && entry >= cap))
      fail(ErrorKind::corrupt, "{}: bad graph header", what);
    graph_ = std::make_unique<HnswGraph>(config_.hnsw.m, config_.hnsw.ef_construct, last_op_ + 100);
    graph_->reserve_nodes(cap);
    r.raw(graph_->levels().data(), cap);
    r.raw(graph_->links0().data(), graph_->links0().size() * sizeof(uint32_t));
    size_t present = 0;
    for (uint32_t v = 0; v < cap; ++v) {
      int lvl = graph_->levels()[v];
      if (lvl == HnswGraph::kAbsent) continue;
      if (lvl < 0 || lvl > max_level || states[v] == 0) fail(ErrorKind::corrupt, "{}: bad graph node {}", what, v);
      ++present;
      if (lvl > 0) {
        graph_->alloc_upper(v, lvl);
        r.raw(graph_->upper_links(v), graph_->upper_words(v) * sizeof(uint32_t));
      }
      for (int lc = 0; lc <= lvl; ++lc) {
        uint32_t cnt;
        const uint32_t* nb = graph_->links(v, lc, &cnt);
        if (cnt > (lc == 0 ? 2 * M : M)) fail(ErrorKind::corrupt, "{}: bad link count at node {}", what, v);
        for (uint32_t i = 0; i < cnt; ++i)
          if (nb[i] >= cap || graph_->levels()[nb[i]] < lc) fail(ErrorKind::corrupt, "{}: bad link at node {}", what, v);
      }
    }
    if (present != nodes) fail(ErrorKind::corrupt, "{}: graph node count mismatch", what);
    graph_->restore_header(entry, max_level, nodes);
    if (auto p = header.find("product"); p != header.end() && p->is_object()) {
      ProductQuantizer pq;
      size_t m = p->value("m", size_t(0));
      if (m == 0 || m > dim) fail(ErrorKind::corrupt, "{}: bad product quantisation header", what);
      pq.shape(dim, m);
      pq.centroids.resize(ProductQuantizer::kCentroids * dim);
      if (pq.centroids.size() * sizeof(float) + n * m > r.remaining())
        fail(ErrorKind::corrupt, "{}: product quantisation codes exceed the file size", what);
      r.raw(pq.centroids.data(), pq.centroids.size() * sizeof(float));
      pcodes_.resize(n * m);
      r.raw(pcodes_.data(), n * m);
      pq.trained = true;
      if (config_.product) pq_ = std::move(pq);
      else pcodes_.clear();
    }
    if (auto iv = header.find("ivf"); iv != header.end() && iv->is_object()) load_ivf(r, *iv, what);
    for (uint32_t s = 0; s < n; ++s) {
      if (slots_[s].live && !config_.ivf && !graph_->contains(s)) fail(ErrorKind::corrupt, "{}: live point missing from graph", what);
      if (!slots_[s].live) {
        if (graph_->contains(s)) ++tombstones_;
        else free_slots_.push_back(s);
      }
    }
    if (header.contains("indexes"))
      for (const auto& ix : header["indexes"])
        apply_index(true, ix.at("field").get<std::string>(), parse_payload_schema_type(ix.at("type").get<std::string>()));
    if (header.contains("binary_means") && header["binary_means"].is_array() && config_.binary) {
      BinaryCoder b;
      b.mean = header["binary_means"].get<std::vector<float>>();
      if (b.mean.size() != config_.dim) fail(ErrorKind::corrupt, "{}: bad binary quantisation header", what);
      b.words = (config_.dim + 63) / 64;
      b.trained = true;
      set_binary(b);
    }
    if (header.contains("quantizer") && header["quantizer"].is_object() && quantizable()) {
      Quantizer q;
      q.lo = header["quantizer"].at("lo").get<float>();
      q.hi = header["quantizer"].at("hi").get<float>();
      q.trained = true;
      set_quantizer(q);
    }
  }

  // The inverted file section of a data file (see serialize()).
  void load_ivf(ByteReader& r, const json& h, const std::string& what) {
    const size_t dim = config_.dim, n = slots_.size();
    size_t nlist = h.value("nlist", size_t(0)), m = h.value("pq_m", size_t(0));
    if (!config_.ivf || nlist == 0 || nlist > 65536 || m > dim || (m != 0) != (config_.ivf->pq_compression != 0))
      fail(ErrorKind::corrupt, "{}: bad inverted file header", what);
    if (nlist * dim * sizeof(float) + (m ? ProductQuantizer::kCentroids * dim * sizeof(float) : 0) + n * 4 > r.remaining())
      fail(ErrorKind::corrupt, "{}: the inverted file exceeds the file size", what);
    std::vector<float> cents(nlist * dim);
    r.raw(cents.data(), cents.size() * sizeof(float));
    ProductQuantizer pq;
    if (m) {
      pq.shape(dim, m);
      pq.centroids.resize(ProductQuantizer::kCentroids * dim);
      r.raw(pq.centroids.data(), pq.centroids.size() * sizeof(float));
      pq.trained = true;
    }
    ivf_ = InvertedFile::restore(dim, config_.distance, std::move(cents), std::move(pq));
    std::vector<uint32_t> lists(n);
    for (auto& l : lists) {
      l = r.u32();
      if (l != InvertedFile::kNone && l >= nlist) fail(ErrorKind::corrupt, "{}: bad inverted list number", what);
    }
    std::vector<uint8_t> code(m);
    for (uint32_t s = 0; s < n; ++s) {
      if (lists[s] == InvertedFile::kNone) continue;
      if (!slots_[s].live) fail(ErrorKind::corrupt, "{}: a deleted point is in an inverted list", what);
      if (m) r.raw(code.data(), m);
      ivf_.add_to(s, lists[s], m ? code.data() : nullptr);
    }
    for (uint32_t s = 0; s < n; ++s)
      if (slots_[s].live && !ivf_.contains(s)) fail(ErrorKind::corrupt, "{}: live point missing from the inverted file", what);
  }

  void replay(const uint8_t* p, size_t n) {
    ByteReader r(p, n, "log record of collection '" + name_ + "'");
    auto type = static_cast<RecordType>(r.u8());
    uint64_t op = r.u64();
    if (op <= last_op_) return;  // already in the data file (crash between checkpoint and log reset)
    switch (type) {
      case kUpsert: {
        std::vector<Point> pts(r.u32());
        for (auto& pt : pts) {
          pt.id = r.id();
          pt.vector.resize(config_.dim);
          r.raw(pt.vector.data(), config_.dim * sizeof(float));
          pt.payload = r.json();
        }
        apply_upsert(op, pts);
        break;
      }
      case kDelete: apply_delete(read_ids(r)); break;
      case kSetPayload:
      case kOverwritePayload:
      case kDeletePayloadKeys: {
        json arg = r.json();
        apply_payload(op, type, arg, read_ids(r));
        break;
      }
      case kClearPayload: apply_payload(op, type, json(), read_ids(r)); break;
      case kCreateIndex:
      case kDeleteIndex: {
        std::string field = r.str();
        uint8_t t = r.u8();
        if (t > 5) fail(ErrorKind::corrupt, "bad index type in log");
        apply_index(type == kCreateIndex, field, static_cast<PayloadSchemaType>(t));
        break;
      }
      default: fail(ErrorKind::corrupt, "collection '{}': unknown log record type {}", name_, int(type));
    }
    last_op_ = op;
  }

  void checkpoint_locked_write_only() {
    auto bytes = serialize();
    write_file_atomic(dir_ / kDataFile, bytes);
    checkpoint_size_ = bytes.size();
  }

  // REQUIRES: mu_ held exclusively. Data file first, then the log reset: a crash in between
  // replays records the data file already holds, which replay skips by operation id.
  void checkpoint_locked() {
    checkpoint_locked_write_only();
    wal_->reset();
  }

  // ---- optimiser: rebuilds the graph without tombstones ----
  void request_rebuild() {
    if (!options_.background_optimizer) {
      rebuild();
      return;
    }
    std::lock_guard<std::mutex> lock(opt_mu_);
    if (stopping_ || opt_requested_ || opt_running_) return;
    opt_requested_ = true;
    if (!optimizer_.joinable()) optimizer_ = std::thread([this] { optimizer_loop(); });
    opt_cv_.notify_all();
  }

  void optimizer_loop() {
    std::unique_lock<std::mutex> lock(opt_mu_);
    while (true) {
      opt_cv_.wait(lock, [&] { return stopping_ || opt_requested_; });
      if (stopping_) break;
      opt_requested_ = false;
      opt_running_ = true;
      lock.unlock();
      try {
        rebuild();
      } catch (const std::exception& e) {
        log::error("collection '{}': graph rebuild failed: {}", name_, e.what());
      }
      lock.lock();
      opt_running_ = false;
      opt_cv_.notify_all();
    }
    opt_running_ = false;
    opt_requested_ = false;
    opt_cv_.notify_all();
  }

  void stop_optimizer() {
    {
      std::lock_guard<std::mutex> lock(opt_mu_);
      stopping_ = true;
      opt_cv_.notify_all();
    }
    if (optimizer_.joinable()) optimizer_.join();
  }

  // Builds a fresh graph over a copy of the live vectors without holding the lock, then swaps it
  // in, adding points written meanwhile; slots that were tombstones become free for reuse.
  void rebuild() {
    std::vector<float> copy;
    std::vector<uint32_t> live;
    size_t n0, m, ef_construct;
    uint64_t generation;
    std::optional<float> quantile;  // the config's, read under the lock
    {
      std::shared_lock lock(mu_);
      if (dropped_ || config_.ivf) return;  // an inverted file has no graph to rebuild
      n0 = slots_.size();
      m = config_.hnsw.m;
      ef_construct = config_.hnsw.ef_construct;
      generation = config_generation_;
      if (quantizable()) quantile = config_.quantization->quantile;
      copy.assign(vectors_.data(), vectors_.data() + n0 * config_.dim);
      for (uint32_t s = 0; s < n0; ++s)
        if (slots_[s].live) live.push_back(s);
    }
    const size_t dim = config_.dim;
    auto g = std::make_unique<HnswGraph>(m, ef_construct, n0 + 7);
    g->reserve_nodes(n0);
    for (size_t i = 0; i < live.size(); ++i) {
      if (i % 1024 == 0 && stop_requested()) return;
      g->insert(live[i], FloatSpace{copy.data(), dim, config_.distance, &copy[size_t(live[i]) * dim]});
    }
    Quantizer q;
    if (quantile && live.size() >= kQuantizeMinPoints) q = Quantizer::train(copy.data(), dim, live, *quantile);
    std::unique_lock lock(mu_);
    if (dropped_) return;
    // The config changed meanwhile (update_config rebuilt the graph, or switched to an inverted
    // file, whose graph must stay empty): this graph is stale.
    if (config_generation_ != generation || config_.ivf) return;
    for (uint32_t s = 0; s < slots_.size(); ++s)
      if (slots_[s].live && !g->contains(s))
        g->insert(s, FloatSpace{vectors_.data(), dim, config_.distance, &vectors_[size_t(s) * dim]});
    tombstones_ = 0;
    free_slots_.clear();
    for (uint32_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].live) continue;
      if (g->contains(s)) ++tombstones_;
      else free_slots_.push_back(s);
    }
    std::reverse(free_slots_.begin(), free_slots_.end());  // reuse low slots first
    graph_ = std::move(g);
    if (q.trained) set_quantizer(q);
    log::debug("collection '{}': graph rebuilt over {} points", name_, by_id_.size());
  }

  bool stop_requested() const {
    std::lock_guard<std::mutex> lock(opt_mu_);
    return stopping_;
  }


  // Live slots sorted by id. REQUIRES: mu_ held (shared is enough).
  std::shared_ptr<const std::vector<uint32_t>> id_order() const {
    std::lock_guard<std::mutex> lock(order_mu_);
    if (!order_) {
      auto v = std::make_shared<std::vector<uint32_t>>();
      v->reserve(by_id_.size());
      by_id_.for_each([&](uint32_t s) { v->push_back(s); });
      std::sort(v->begin(), v->end(), [&](uint32_t a, uint32_t b) { return slots_[a].id < slots_[b].id; });
      order_ = std::move(v);
    }
    return order_;
  }
  // REQUIRES: mu_ held exclusively.
  void order_dirty() {
    std::lock_guard<std::mutex> lock(order_mu_);
    order_.reset();
  }

  // Payloads are stored only when non-empty: {} is kept as null (no allocation) and read back
  // as an empty object.
  const json& payload(uint32_t s) const {
    static const json empty = json::object();
    return payloads_[s].is_null() ? empty : payloads_[s];
  }
  void store_payload(uint32_t s, json&& p) {
    if (p.is_object() && p.empty()) payloads_[s] = json();
    else payloads_[s] = std::move(p);
  }

  const std::filesystem::path dir_;
  const std::string name_;
  CollectionConfig config_;
  const Collection::Options options_;

  mutable std::shared_mutex mu_;  // readers shared, writers exclusive; guards everything below
  bool dropped_ = false;
  uint64_t config_generation_ = 0;  // bumped by update_config; rebuild() checks it before its swap
  uint64_t last_op_ = 0;
  std::vector<Slot> slots_;
  std::vector<json> payloads_;              // per slot; null = {} (see payload())
  // slot * dim, stored form (Cosine normalised). With int8 quantisation the walk reads only the
  // codes, so the floats (rescoring) live in a file mapping: page cache, not anonymous memory.
  FloatArena vectors_;
  std::vector<uint8_t> codes_;              // slot * dim int8 codes when quantised
  std::vector<float> code_sums_;            // per slot sum of codes
  Quantizer quant_;
  BinaryCoder bin_;                         // binary quantisation (trained: codes in bcodes_)
  std::vector<uint64_t> bcodes_;            // slot * bin_.words
  ProductQuantizer pq_;                     // product quantisation (trained: codes in pcodes_)
  InvertedFile ivf_;                        // ivf_config set: the index instead of graph_ (trained at the threshold)
  std::vector<uint8_t> pcodes_;             // slot * pq_.m
  IdMap by_id_{&slots_};                    // live points by id (unordered)
  // Live slots in id order, built on demand for scroll and filter selection; dropped by every
  // insert or delete (which hold mu_ exclusively).
  mutable std::mutex order_mu_;
  mutable std::shared_ptr<const std::vector<uint32_t>> order_;
  std::vector<uint32_t> free_slots_;        // not live and not in the graph
  std::unique_ptr<HnswGraph> graph_;
  size_t tombstones_ = 0;                   // dead slots still in the graph
  std::map<std::string, std::unique_ptr<PayloadIndex>> indexes_;
  std::unique_ptr<Wal> wal_;
  uint64_t checkpoint_size_ = 0;

  mutable std::mutex opt_mu_;
  mutable std::condition_variable opt_cv_;
  bool opt_requested_ = false, opt_running_ = false, stopping_ = false;
  std::thread optimizer_;
};

// ---------------------------------------------------------------------------------------------

Collection::Collection(std::unique_ptr<CollectionImpl> impl) : impl_(std::move(impl)) {}
Collection::Collection(std::unique_ptr<detail::MultiCollection> multi) : multi_(std::move(multi)) {}
Collection::~Collection() = default;

std::unique_ptr<Collection> Collection::create(const std::filesystem::path& dir, std::string name,
                                               const CollectionConfig& config, Options options) {
  config.validate();
  if (config.multi())
    return std::unique_ptr<Collection>(new Collection(detail::MultiCollection::create(dir, std::move(name), config, options)));
  if (std::filesystem::exists(dir))
    fail(ErrorKind::conflict, "collection directory {} already exists", dir.string());
  auto impl = std::make_unique<CollectionImpl>(dir, std::move(name), config, options);
  impl->create_files();
  return std::unique_ptr<Collection>(new Collection(std::move(impl)));
}

std::unique_ptr<Collection> Collection::open(const std::filesystem::path& dir, std::string name, Options options) {
  if (detail::is_multi_data_file(dir / kDataFile))
    return std::unique_ptr<Collection>(new Collection(detail::MultiCollection::open(dir, std::move(name), options)));
  CollectionConfig placeholder;
  placeholder.dim = 1;
  auto impl = std::make_unique<CollectionImpl>(dir, std::move(name), placeholder, options);
  impl->load_files();
  return std::unique_ptr<Collection>(new Collection(std::move(impl)));
}

namespace {
// A single-vector collection takes its vector as `vector` or as the one named "".
std::vector<Point>& single_vector_points(std::vector<Point>& points, const std::string& name) {
  for (auto& p : points) {
    if (p.named.empty()) continue;
    auto it = p.named.dense.find("");
    if (p.named.sparse.empty() && p.named.dense.size() == 1 && it != p.named.dense.end() && p.vector.empty()) {
      p.vector = std::move(it->second);
      p.named = {};
      continue;
    }
    std::string bad = !p.named.sparse.empty() ? p.named.sparse.begin()->first : p.named.dense.begin()->first;
    if (bad.empty()) bad = p.named.dense.size() > 1 ? std::next(p.named.dense.begin())->first : bad;
    fail(ErrorKind::invalid_argument,
         "Not existing vector name error: point {}: vector '{}'; collection '{}' has one unnamed vector", p.id.to_string(),
         bad, name);
  }
  return points;
}

void check_single_request(const SearchRequest& r, const std::string& name) {
  if (!r.using_name.empty() || r.sparse)
    fail(ErrorKind::invalid_argument, "Not existing vector name error: '{}'; collection '{}' has one unnamed vector",
         r.sparse && r.using_name.empty() ? std::string("(sparse)") : r.using_name, name);
}
}  // namespace

namespace {
// Filters as the collection evaluates them: text matches on keys with a text index become word
// matches (Qdrant's full-text semantics); elsewhere they stay substring matches.
std::shared_ptr<const Filter> bound(const Collection& c, const std::shared_ptr<const Filter>& f) {
  if (!f) return f;
  std::vector<std::string> keys;
  for (const auto& [field, fi] : c.info().payload_schema)
    if (fi.type == PayloadSchemaType::Text) keys.push_back(field);
  return keys.empty() ? f : bind_text_indexes(f, keys);
}
PointSelector bound(const Collection& c, const PointSelector& s) {
  PointSelector out = s;
  out.filter = bound(c, s.filter);
  return out;
}
}  // namespace

#define ETNA_DISPATCH(call) return multi_ ? multi_->call : impl_->call
const std::string& Collection::name() const { ETNA_DISPATCH(name()); }
const CollectionConfig& Collection::config() const { ETNA_DISPATCH(config()); }
uint64_t Collection::upsert(std::vector<Point> points) {
  if (multi_) return multi_->upsert(std::move(points));
  return impl_->upsert(std::move(single_vector_points(points, impl_->name())));
}
uint64_t Collection::delete_points(const PointSelector& sel) {
  auto s = bound(*this, sel);
  ETNA_DISPATCH(delete_points(s));
}
std::vector<Record> Collection::retrieve(const std::vector<PointId>& ids, const PayloadSelector& p, bool v) const {
  ETNA_DISPATCH(retrieve(ids, p, v));
}
ScrollResult Collection::scroll(const ScrollRequest& req) const {
  ScrollRequest r = req;
  r.filter = bound(*this, req.filter);
  ETNA_DISPATCH(scroll(r));
}
uint64_t Collection::count(const Filter* filter) const {
  std::shared_ptr<const Filter> f;
  if (filter) f = bound(*this, std::shared_ptr<const Filter>(std::shared_ptr<const Filter>(), filter));
  ETNA_DISPATCH(count(f.get()));
}
uint64_t Collection::set_payload(const nlohmann::json& p, const PointSelector& sel) {
  auto s = bound(*this, sel);
  ETNA_DISPATCH(payload_op(kSetPayload, p, s));
}
uint64_t Collection::overwrite_payload(const nlohmann::json& p, const PointSelector& sel) {
  auto s = bound(*this, sel);
  ETNA_DISPATCH(payload_op(kOverwritePayload, p, s));
}
uint64_t Collection::delete_payload(const std::vector<std::string>& keys, const PointSelector& sel) {
  auto s = bound(*this, sel);
  ETNA_DISPATCH(payload_op(kDeletePayloadKeys, nlohmann::json(keys), s));
}
uint64_t Collection::clear_payload(const PointSelector& sel) {
  auto s = bound(*this, sel);
  ETNA_DISPATCH(payload_op(kClearPayload, nlohmann::json(), s));
}
std::vector<ScoredPoint> Collection::search(const SearchRequest& req) const {
  SearchRequest r = req;
  r.filter = bound(*this, req.filter);
  if (multi_) return multi_->search(r);
  check_single_request(r, impl_->name());
  return impl_->search(r);
}
std::vector<std::vector<ScoredPoint>> Collection::search_batch(const std::vector<SearchRequest>& reqs) const {
  std::vector<SearchRequest> r = reqs;
  for (auto& q : r) q.filter = bound(*this, q.filter);
  if (multi_) {
    std::vector<std::vector<ScoredPoint>> out;
    for (const auto& q : r) out.push_back(multi_->search(q));
    return out;
  }
  for (const auto& q : r) check_single_request(q, impl_->name());
  return impl_->search_batch(r);
}
uint64_t Collection::create_payload_index(const std::string& f, PayloadSchemaType t) { ETNA_DISPATCH(index_op(true, f, t)); }
uint64_t Collection::delete_payload_index(const std::string& f) {
  ETNA_DISPATCH(index_op(false, f, PayloadSchemaType::Keyword));
}
CollectionInfo Collection::info() const { ETNA_DISPATCH(info()); }
void Collection::update_config(const nlohmann::json& p) { ETNA_DISPATCH(update_config(p)); }
void Collection::write_snapshot(const std::filesystem::path& p) const { ETNA_DISPATCH(write_snapshot(p)); }
void Collection::checkpoint() { ETNA_DISPATCH(checkpoint()); }
void Collection::wait_for_optimizer() const {
  if (impl_) impl_->wait_for_optimizer();
}
void Collection::mark_dropped() { ETNA_DISPATCH(mark_dropped()); }
#undef ETNA_DISPATCH

}  // namespace etna::store
