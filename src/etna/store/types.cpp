#include "etna/store/types.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "etna/base/error.h"

namespace etna::store {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads a field that must be an unsigned integer when present.
size_t get_size(const nlohmann::json& obj, const char* key, size_t fallback, const char* where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
    fail(ErrorKind::invalid_argument, "{}.{}: expected a non-negative integer", where, key);
  return it->get<size_t>();
}

}  // namespace

PointId PointId::uuid(const std::string& text) {
  std::string s = text;
  if (s.size() == 38 && s.front() == '{' && s.back() == '}') s = s.substr(1, 36);
  if (s.size() == 45 && lower(s.substr(0, 9)) == "urn:uuid:") s = s.substr(9);
  std::string hex;
  if (s.size() == 36) {
    bool ok = true;
    for (size_t i = 0; i < s.size() && ok; ++i) {
      bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
      ok = dash_pos == (s[i] == '-');
      if (!dash_pos) hex.push_back(s[i]);
    }
    if (!ok) hex.clear();
  } else if (s.size() == 32) {
    hex = s;
  }
  PointId id;
  if (hex.size() != 32)
    fail(ErrorKind::invalid_argument, "point id '{}' is neither an unsigned integer nor a UUID", text);
  for (size_t i = 0; i < 16; ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      fail(ErrorKind::invalid_argument, "point id '{}' is neither an unsigned integer nor a UUID", text);
    id.uuid_[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  id.is_uuid_ = true;
  return id;
}

PointId PointId::from_json(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return PointId(j.get<uint64_t>());
  if (j.is_number_integer()) {
    if (j.get<int64_t>() >= 0) return PointId(static_cast<uint64_t>(j.get<int64_t>()));
    fail(ErrorKind::invalid_argument, "point id {} is negative; ids are unsigned integers or UUIDs", j.dump());
  }
  if (j.is_string()) return uuid(j.get<std::string>());
  fail(ErrorKind::invalid_argument, "point id {} must be an unsigned integer or a UUID string", j.dump());
}

std::string PointId::to_string() const {
  if (!is_uuid_) return std::to_string(num());
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(digits[uuid_[i] >> 4]);
    s.push_back(digits[uuid_[i] & 15]);
  }
  return s;
}

nlohmann::json PointId::to_json() const {
  if (!is_uuid_) return num();
  return to_string();
}

std::strong_ordering operator<=>(const PointId& a, const PointId& b) {
  if (a.is_uuid_ != b.is_uuid_) return a.is_uuid_ ? std::strong_ordering::greater : std::strong_ordering::less;
  if (!a.is_uuid_) return a.num() <=> b.num();
  return a.uuid_ <=> b.uuid_;
}

size_t PointIdHash::operator()(const PointId& id) const {
  uint64_t h;
  if (!id.is_uuid()) {
    h = id.num();
  } else {
    uint64_t lo = 0, hi = 0;
    for (int i = 0; i < 8; ++i) lo = lo << 8 | id.uuid_bytes()[i];
    for (int i = 8; i < 16; ++i) hi = hi << 8 | id.uuid_bytes()[i];
    h = lo ^ (hi * 0x9E3779B97F4A7C15ull) ^ 0x5555;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return static_cast<size_t>(h);
}

Distance parse_distance(const std::string& name) {
  std::string n = lower(name);
  if (n == "cosine") return Distance::Cosine;
  if (n == "dot") return Distance::Dot;
  if (n == "euclid") return Distance::Euclid;
  if (n == "manhattan") return Distance::Manhattan;
  if (n == "hamming") return Distance::Hamming;
  if (n == "jaccard") return Distance::Jaccard;
  fail(ErrorKind::invalid_argument,
       "unknown distance '{}'; expected Cosine, Dot, Euclid, Manhattan, Hamming or Jaccard", name);
}

std::string distance_name(Distance d) {
  switch (d) {
    case Distance::Cosine: return "Cosine";
    case Distance::Dot: return "Dot";
    case Distance::Euclid: return "Euclid";
    case Distance::Manhattan: return "Manhattan";
    case Distance::Hamming: return "Hamming";
    case Distance::Jaccard: return "Jaccard";
  }
  return "?";
}

bool higher_is_better(Distance d) { return d == Distance::Cosine || d == Distance::Dot; }

std::map<std::string, VectorParams> CollectionConfig::dense_spaces() const {
  if (named) return vectors;
  return {{"", VectorParams{dim, distance, hnsw, on_disk}}};
}

SparseVector SparseVector::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("indices") || !j.contains("values") || !j["indices"].is_array() ||
      !j["values"].is_array())
    fail(ErrorKind::invalid_argument, "{}: a sparse vector is {{\"indices\": [...], \"values\": [...]}}", where);
  const auto& ji = j["indices"];
  const auto& jv = j["values"];
  if (ji.size() != jv.size())
    fail(ErrorKind::invalid_argument, "{}: sparse vector has {} indices but {} values", where, ji.size(), jv.size());
  std::vector<std::pair<uint32_t, float>> pairs;
  pairs.reserve(ji.size());
  for (size_t i = 0; i < ji.size(); ++i) {
    if (!ji[i].is_number_unsigned() || ji[i].get<uint64_t>() > UINT32_MAX)
      fail(ErrorKind::invalid_argument, "{}.indices[{}]: expected an integer in 0..4294967295", where, i);
    if (!jv[i].is_number() || !std::isfinite(jv[i].get<double>()) || std::fabs(jv[i].get<double>()) > 3.4e38)
      fail(ErrorKind::invalid_argument, "{}.values[{}]: expected a finite number", where, i);
    pairs.emplace_back(ji[i].get<uint32_t>(), jv[i].get<float>());
  }
  std::sort(pairs.begin(), pairs.end());
  SparseVector v;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i > 0 && pairs[i].first == pairs[i - 1].first)
      fail(ErrorKind::invalid_argument, "{}: sparse vector index {} appears twice (indices must be unique)", where,
           pairs[i].first);
    v.indices.push_back(pairs[i].first);
    v.values.push_back(pairs[i].second);
  }
  return v;
}

nlohmann::json SparseVector::to_json() const { return {{"indices", indices}, {"values", values}}; }

uint64_t IvfConfig::training_work(size_t nlist, size_t dim) {
  const uint64_t sample = std::min<uint64_t>(kMaxSample, uint64_t(nlist) * kSamplePerList);
  return sample * nlist * dim * kIterations;
}

size_t IvfConfig::max_nlist(size_t dim) {
  size_t lo = 1, hi = 65536;  // training_work grows with nlist
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;
    if (training_work(mid, dim) <= kMaxTrainingWork) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

void CollectionConfig::validate(bool stored) const {
  if (named || !sparse.empty()) {
    for (const auto& [name, p] : dense_spaces()) {
      std::string n = name.empty() ? "vectors" : "vectors." + name;
      if (p.dim == 0 || p.dim > 65536)
        fail(ErrorKind::invalid_argument, "{}.size must be between 1 and 65536, got {}", n, p.dim);
      if (p.hnsw.m < 2 || p.hnsw.m > 256)
        fail(ErrorKind::invalid_argument, "{}.hnsw_config.m must be between 2 and 256, got {}", n, p.hnsw.m);
      if (p.hnsw.ef_construct < 4 || p.hnsw.ef_construct > 10000)
        fail(ErrorKind::invalid_argument, "{}.hnsw_config.ef_construct must be between 4 and 10000", n);
    }
    for (const auto& [name, p] : sparse) {
      if (dense_spaces().count(name))
        fail(ErrorKind::invalid_argument, "vector name '{}' is used by both a dense and a sparse vector", name);
      if (name.empty()) fail(ErrorKind::invalid_argument, "sparse_vectors: a sparse vector needs a non-empty name");
    }
    if (quantization || binary || product)
      fail(ErrorKind::unsupported, "quantization_config on a collection with named or sparse vectors is not supported");
    if (ivf) fail(ErrorKind::unsupported, "ivf_config on a collection with named or sparse vectors is not supported");
    if (wal_capacity_mb == 0) fail(ErrorKind::invalid_argument, "wal_capacity_mb must be at least 1");
    return;
  }
  if (dim == 0 || dim > 65536)
    fail(ErrorKind::invalid_argument, "vector size must be between 1 and 65536, got {}", dim);
  if (hnsw.m < 2 || hnsw.m > 256)
    fail(ErrorKind::invalid_argument, "hnsw_config.m must be between 2 and 256, got {}", hnsw.m);
  if (hnsw.ef_construct < 4 || hnsw.ef_construct > 10000)
    fail(ErrorKind::invalid_argument, "hnsw_config.ef_construct must be between 4 and 10000, got {}",
         hnsw.ef_construct);
  if (quantization && !(quantization->quantile > 0.5f && quantization->quantile <= 1.0f))
    fail(ErrorKind::invalid_argument, "quantization quantile must be in (0.5, 1], got {}",
         quantization->quantile);
  if (product && (distance == Distance::Hamming || distance == Distance::Jaccard))
    fail(ErrorKind::unsupported, "quantization_config.product is not supported with distance {} (use Euclid, Dot, Cosine or Manhattan)",
         distance_name(distance));
  if (product && product->compression != 4 && product->compression != 8 && product->compression != 16 &&
      product->compression != 32 && product->compression != 64)
    fail(ErrorKind::invalid_argument, "quantization_config.product.compression must be one of x4, x8, x16, x32, x64");
  if (wal_capacity_mb == 0) fail(ErrorKind::invalid_argument, "wal_capacity_mb must be at least 1");
  if (ivf) {
    if (distance == Distance::Hamming || distance == Distance::Jaccard)
      fail(ErrorKind::unsupported, "ivf_config is not supported with distance {} (use Euclid, Dot, Cosine or Manhattan)",
           distance_name(distance));
    if (quantization || binary || product)
      fail(ErrorKind::unsupported,
           "ivf_config and quantization_config cannot be combined: use ivf_config.pq for product-quantised lists");
    if (ivf->nlist && (*ivf->nlist == 0 || *ivf->nlist > 65536))
      fail(ErrorKind::invalid_argument, "ivf_config.nlist must be between 1 and 65536, got {} (omit it for 4*sqrt(points))",
           *ivf->nlist);
    if (ivf->nprobe && *ivf->nprobe == 0) fail(ErrorKind::invalid_argument, "ivf_config.nprobe must be at least 1, got 0");
    if (ivf->nlist && ivf->nprobe && *ivf->nprobe > *ivf->nlist)
      fail(ErrorKind::invalid_argument, "ivf_config.nprobe ({}) cannot exceed ivf_config.nlist ({}): a search scans at most every list",
           *ivf->nprobe, *ivf->nlist);
    if (ivf->training_threshold == 0) fail(ErrorKind::invalid_argument, "ivf_config.training_threshold must be at least 1");
    if (!stored && ivf->nlist && *ivf->nlist > IvfConfig::max_nlist(dim))
      fail(ErrorKind::invalid_argument,
           "ivf_config.nlist {} is too large for {} dimensions: training (k-means over {} sampled points, run "
           "under the collection's write lock) would take about {:.1e} multiply-adds; at most {} lists at this "
           "dimension (omit nlist for 4*sqrt(points) within that bound)",
           *ivf->nlist, dim, std::min<size_t>(IvfConfig::kMaxSample, *ivf->nlist * IvfConfig::kSamplePerList),
           double(IvfConfig::training_work(*ivf->nlist, dim)), IvfConfig::max_nlist(dim));
    if (!stored && ivf->nlist && ivf->training_threshold < *ivf->nlist)
      fail(ErrorKind::invalid_argument,
           "ivf_config.training_threshold ({}) must be at least ivf_config.nlist ({}): k-means needs a point per list, "
           "and 32 * nlist = {} points train it well",
           ivf->training_threshold, *ivf->nlist, *ivf->nlist * IvfConfig::kSamplePerList);
    if (ivf->pq_compression != 0 && ivf->pq_compression != 4 && ivf->pq_compression != 8 && ivf->pq_compression != 16 &&
        ivf->pq_compression != 32 && ivf->pq_compression != 64)
      fail(ErrorKind::invalid_argument, "ivf_config.pq.compression must be one of x4, x8, x16, x32, x64");
  }
}

namespace {
// The ratio a CompressionRatio name ("x4" ... "x64") stands for; 0 for anything else.
uint32_t compression_ratio(const nlohmann::json& name) {
  static const std::pair<const char*, uint32_t> kRatios[] = {{"x4", 4}, {"x8", 8}, {"x16", 16}, {"x32", 32}, {"x64", 64}};
  for (const auto& [n, ratio] : kRatios)
    if (name == n) return ratio;
  return 0;
}

// Qdrant's CompressionRatio names: "x4" ... "x64".
std::string compression_name(uint32_t ratio) {
  std::string s(1, 'x');
  s += std::to_string(ratio);
  return s;
}
}  // namespace

nlohmann::json CollectionConfig::to_json() const {
  nlohmann::json j;
  nlohmann::json vj = {{"size", dim}, {"distance", distance_name(distance)}, {"on_disk", on_disk}};
  if (named) {
    vj = nlohmann::json::object();
    for (const auto& [name, p] : vectors) {
      vj[name] = {{"size", p.dim}, {"distance", distance_name(p.distance)}, {"on_disk", p.on_disk}};
      vj[name]["hnsw_config"] = {{"m", p.hnsw.m}, {"ef_construct", p.hnsw.ef_construct},
                                 {"full_scan_threshold", p.hnsw.full_scan_threshold}};
    }
  }
  j["params"] = {{"vectors", vj},
                 {"shard_number", 1},
                 {"replication_factor", 1},
                 {"write_consistency_factor", 1},
                 {"on_disk_payload", false}};
  j["hnsw_config"] = {{"m", hnsw.m},
                      {"ef_construct", hnsw.ef_construct},
                      {"full_scan_threshold", hnsw.full_scan_threshold},
                      {"max_indexing_threads", 0},
                      {"on_disk", false}};
  j["optimizer_config"] = {{"deleted_threshold", 0.2},
                           {"vacuum_min_vector_number", 1000},
                           {"default_segment_number", 1},
                           {"max_segment_size", nullptr},
                           {"memmap_threshold", nullptr},
                           {"indexing_threshold", 0},
                           {"flush_interval_sec", 5},
                           {"max_optimization_threads", 1}};
  j["wal_config"] = {{"wal_capacity_mb", wal_capacity_mb}, {"wal_segments_ahead", 0}};
  if (quantization)
    j["quantization_config"] = {
        {"scalar", {{"type", "int8"}, {"quantile", quantization->quantile}, {"always_ram", quantization->always_ram}}}};
  else if (binary)
    j["quantization_config"] = {{"binary", {{"always_ram", binary->always_ram}}}};
  else if (product)
    j["quantization_config"] = {
        {"product", {{"compression", compression_name(product->compression)}, {"always_ram", product->always_ram}}}};
  else
    j["quantization_config"] = nullptr;
  if (ivf) {
    nlohmann::json i = {{"nlist", ivf->nlist ? nlohmann::json(*ivf->nlist) : nlohmann::json()},
                        {"nprobe", ivf->nprobe ? nlohmann::json(*ivf->nprobe) : nlohmann::json()},
                        {"training_threshold", ivf->training_threshold},
                        {"pq", nullptr}};
    if (ivf->pq_compression) i["pq"] = {{"compression", compression_name(ivf->pq_compression)}};
    j["ivf_config"] = i;
  }
  if (!sparse.empty()) {
    nlohmann::json sj = nlohmann::json::object();
    for (const auto& [name, p] : sparse)
      sj[name] = p.modifier == SparseModifier::Idf ? nlohmann::json{{"modifier", "idf"}} : nlohmann::json::object();
    j["params"]["sparse_vectors"] = sj;
  }
  return j;
}

namespace {

void apply_hnsw(const nlohmann::json& h, HnswParams& p, const char* where) {
  if (h.is_null()) return;
  if (!h.is_object()) fail(ErrorKind::invalid_argument, "{}: expected an object", where);
  p.m = get_size(h, "m", p.m, where);
  p.ef_construct = get_size(h, "ef_construct", p.ef_construct, where);
  p.full_scan_threshold = get_size(h, "full_scan_threshold", p.full_scan_threshold, where);
}

void apply_quantization(const nlohmann::json& q, CollectionConfig& c) {
  if (q.is_null()) return;
  if (q == "Disabled") {
    c.quantization.reset();
    c.binary.reset();
    c.product.reset();
    return;
  }
  if (!q.is_object()) fail(ErrorKind::invalid_argument, "quantization_config: expected an object");
  if (q.size() != 1)
    fail(ErrorKind::invalid_argument,
         "quantization_config: expected exactly one of \"scalar\", \"binary\" or \"product\", got {}", q.dump());
  if (auto p = q.find("product"); p != q.end()) {
    if (!p->is_object()) fail(ErrorKind::invalid_argument, "quantization_config.product: expected an object");
    ProductQuantization pq;
    bool has_compression = false;
    for (auto it = p->begin(); it != p->end(); ++it) {
      if (it.key() == "compression") {
        pq.compression = compression_ratio(it.value());
        if (pq.compression == 0)
          fail(ErrorKind::invalid_argument,
               "quantization_config.product.compression: expected one of \"x4\", \"x8\", \"x16\", \"x32\", \"x64\", got {}",
               it.value().dump());
        has_compression = true;
      } else if (it.key() == "always_ram") {
        if (it.value().is_null()) continue;
        if (!it.value().is_boolean())
          fail(ErrorKind::invalid_argument, "quantization_config.product.always_ram: expected a boolean, got {}",
               it.value().dump());
        pq.always_ram = it.value().get<bool>();
      } else {
        fail(ErrorKind::invalid_argument,
             "quantization_config.product.{}: unknown field (expected \"compression\" and \"always_ram\")", it.key());
      }
    }
    if (!has_compression)
      fail(ErrorKind::invalid_argument,
           "quantization_config.product.compression is required: one of \"x4\", \"x8\", \"x16\", \"x32\", \"x64\"");
    c.product = pq;
    c.quantization.reset();
    c.binary.reset();
    return;
  }
  if (auto b = q.find("binary"); b != q.end()) {
    if (!b->is_object()) fail(ErrorKind::invalid_argument, "quantization_config.binary: expected an object");
    BinaryQuantization bq;
    for (auto it = b->begin(); it != b->end(); ++it) {
      if (it.value().is_null()) continue;
      if (it.key() == "always_ram" && it.value().is_boolean()) bq.always_ram = it.value().get<bool>();
      else if (it.key() == "encoding" && it.value() == "one_bit") continue;
      else if (it.key() == "query_encoding" && it.value() == "default") continue;
      else fail(ErrorKind::unsupported, "quantization_config.binary.{} = {} is not supported (one bit per dimension)",
                it.key(), it.value().dump());
    }
    c.binary = bq;
    c.quantization.reset();
    c.product.reset();
    return;
  }
  std::optional<ScalarQuantization>& out = c.quantization;
  c.binary.reset();
  c.product.reset();
  auto it = q.find("scalar");
  if (it == q.end() || !it->is_object())
    fail(ErrorKind::invalid_argument, "quantization_config: expected {{\"scalar\": {{\"type\": \"int8\", ...}}}}");
  ScalarQuantization sq;
  if (it->contains("type") && (*it)["type"] != "int8")
    fail(ErrorKind::invalid_argument, "quantization_config.scalar.type: only \"int8\" is supported");
  if (auto qi = it->find("quantile"); qi != it->end() && !qi->is_null()) {
    if (!qi->is_number()) fail(ErrorKind::invalid_argument, "quantization_config.scalar.quantile: expected a number");
    sq.quantile = qi->get<float>();
  }
  if (auto ar = it->find("always_ram"); ar != it->end() && !ar->is_null()) {
    if (!ar->is_boolean()) fail(ErrorKind::invalid_argument, "quantization_config.scalar.always_ram: expected a boolean");
    sq.always_ram = ar->get<bool>();
  }
  out = sq;
}

// ivf_config: {"nlist", "nprobe", "training_threshold", "pq": {"compression": "x16"} | null}
// merged into `out` (a PATCH changes only the fields it names; null keeps a field, except pq).
void apply_ivf(const nlohmann::json& j, std::optional<IvfConfig>& out) {
  if (j == "Disabled") {
    out.reset();
    return;
  }
  if (!j.is_object()) fail(ErrorKind::invalid_argument, "ivf_config: expected an object (or \"Disabled\")");
  IvfConfig c = out.value_or(IvfConfig{});
  auto count = [&](const nlohmann::json& v, const char* key) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      fail(ErrorKind::invalid_argument, "ivf_config.{}: expected a non-negative integer, got {}", key, v.dump());
    return v.get<size_t>();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (it.key() == "pq") {
      if (v.is_null() || v == "Disabled") {
        c.pq_compression = 0;
        continue;
      }
      if (!v.is_object() || !v.contains("compression"))
        fail(ErrorKind::invalid_argument, "ivf_config.pq: expected {{\"compression\": \"x4\" | \"x8\" | \"x16\" | \"x32\" | \"x64\"}}");
      c.pq_compression = compression_ratio(v["compression"]);
      if (c.pq_compression == 0)
        fail(ErrorKind::invalid_argument, "ivf_config.pq.compression: expected one of \"x4\", \"x8\", \"x16\", \"x32\", \"x64\", got {}",
             v["compression"].dump());
      for (auto f = v.begin(); f != v.end(); ++f)
        if (f.key() != "compression") fail(ErrorKind::invalid_argument, "ivf_config.pq.{}: unknown field", f.key());
    } else if (v.is_null()) {
      continue;
    } else if (it.key() == "nlist") {
      c.nlist = count(v, "nlist");
    } else if (it.key() == "nprobe") {
      c.nprobe = count(v, "nprobe");
    } else if (it.key() == "training_threshold") {
      c.training_threshold = count(v, "training_threshold");
    } else {
      fail(ErrorKind::invalid_argument,
           "ivf_config.{}: unknown field (expected \"nlist\", \"nprobe\", \"training_threshold\", \"pq\")", it.key());
    }
  }
  out = c;
}

}  // namespace

CollectionConfig CollectionConfig::from_create_json(const nlohmann::json& body) {
  if (!body.is_object()) fail(ErrorKind::invalid_argument, "collection config: expected a JSON object");
  CollectionConfig c;
  auto v = body.find("vectors");
  if (auto sp = body.find("sparse_vectors"); sp != body.end() && !sp->is_null()) {
    if (!sp->is_object()) fail(ErrorKind::invalid_argument, "sparse_vectors: expected an object of named sparse vectors");
    for (auto it = sp->begin(); it != sp->end(); ++it) {
      SparseParams p;
      const auto& o = it.value();
      if (!o.is_object() && !o.is_null())
        fail(ErrorKind::invalid_argument, "sparse_vectors.{}: expected an object", it.key());
      if (o.is_object()) {
        for (auto k = o.begin(); k != o.end(); ++k) {
          if (k.key() == "modifier") {
            if (k.value().is_null() || k.value() == "none") continue;
            if (k.value() != "idf")
              fail(ErrorKind::invalid_argument, "sparse_vectors.{}.modifier: expected \"idf\" or \"none\"", it.key());
            p.modifier = SparseModifier::Idf;
          } else if (k.key() != "index") {
            fail(ErrorKind::unsupported, "sparse_vectors.{}.{} is not supported", it.key(), k.key());
          }
        }
      }
      c.sparse[it.key()] = p;
    }
  }
  if ((v == body.end() || v->is_null()) && !c.sparse.empty()) {
    c.named = true;  // sparse vectors only
  } else if (v == body.end() || !v->is_object()) {
    fail(ErrorKind::invalid_argument, "collection config: \"vectors\" must be an object with \"size\" and \"distance\"");
  }
  if (c.named || !v->contains("size")) {
    c.named = true;
    HnswParams top;
    if (auto h = body.find("hnsw_config"); h != body.end()) apply_hnsw(*h, top, "hnsw_config");
    if (v != body.end() && !v->is_null()) {
      for (auto it = v->begin(); it != v->end(); ++it) {
        std::string where = "vectors." + it.key();
        if (!it.value().is_object()) fail(ErrorKind::invalid_argument, "{}: expected {{\"size\", \"distance\"}}", where);
        const auto& o = it.value();
        for (const char* k : {"multivector_config", "datatype"})
          if (o.contains(k) && !o[k].is_null()) fail(ErrorKind::unsupported, "{}.{} is not supported", where, k);
        if (o.contains("ivf_config") && !o["ivf_config"].is_null())
          fail(ErrorKind::unsupported, "{}.ivf_config: IVF indices of named vectors are not supported", where);
        if (o.contains("quantization_config") && !o["quantization_config"].is_null())
          fail(ErrorKind::unsupported, "{}.quantization_config: quantisation of named vectors is not supported", where);
        VectorParams p;
        p.hnsw = top;
        p.dim = get_size(o, "size", 0, where.c_str());
        auto d = o.find("distance");
        if (d == o.end() || !d->is_string())
          fail(ErrorKind::invalid_argument, "{}.distance: expected one of Cosine, Dot, Euclid, Manhattan", where);
        p.distance = parse_distance(d->get<std::string>());
        if (auto od = o.find("on_disk"); od != o.end() && od->is_boolean()) p.on_disk = od->get<bool>();
        if (auto h = o.find("hnsw_config"); h != o.end()) apply_hnsw(*h, p.hnsw, (where + ".hnsw_config").c_str());
        c.vectors[it.key()] = p;
      }
    }
    if (auto q = body.find("quantization_config"); q != body.end()) apply_quantization(*q, c);
    if (auto w = body.find("wal_config"); w != body.end() && w->is_object())
      c.wal_capacity_mb = get_size(*w, "wal_capacity_mb", c.wal_capacity_mb, "wal_config");
    c.validate();
    return c;
  }
  c.dim = get_size(*v, "size", 0, "vectors");
  auto d = v->find("distance");
  if (d == v->end() || !d->is_string())
    fail(ErrorKind::invalid_argument, "vectors.distance: expected one of Cosine, Dot, Euclid, Manhattan");
  c.distance = parse_distance(d->get<std::string>());
  if (auto od = v->find("on_disk"); od != v->end() && od->is_boolean()) c.on_disk = od->get<bool>();
  if (auto h = body.find("hnsw_config"); h != body.end()) apply_hnsw(*h, c.hnsw, "hnsw_config");
  if (auto h = v->find("hnsw_config"); h != v->end()) apply_hnsw(*h, c.hnsw, "vectors.hnsw_config");
  if (auto q = body.find("quantization_config"); q != body.end()) apply_quantization(*q, c);
  if (auto q = v->find("quantization_config"); q != v->end()) apply_quantization(*q, c);
  if (auto w = body.find("wal_config"); w != body.end() && w->is_object())
    c.wal_capacity_mb = get_size(*w, "wal_capacity_mb", c.wal_capacity_mb, "wal_config");
  // Top level, or inside `vectors`: the official JS client's createCollection drops top-level
  // fields it does not know but sends `vectors` as given.
  if (auto i = body.find("ivf_config"); i != body.end() && !i->is_null()) apply_ivf(*i, c.ivf);
  if (auto i = v->find("ivf_config"); i != v->end() && !i->is_null()) apply_ivf(*i, c.ivf);
  c.validate();
  return c;
}

void CollectionConfig::apply_patch(const nlohmann::json& body) {
  if (!body.is_object()) fail(ErrorKind::invalid_argument, "collection update: expected a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    if (v.is_null()) continue;
    if (k == "hnsw_config") {
      apply_hnsw(v, hnsw, "hnsw_config");
      for (auto& [n, p] : vectors) apply_hnsw(v, p.hnsw, "hnsw_config");
    } else if (k == "vectors") {
      if (!v.is_object()) fail(ErrorKind::invalid_argument, "vectors: expected an object of vector names");
      for (auto vi = v.begin(); vi != v.end(); ++vi) {
        std::string where = "vectors." + vi.key();
        const auto& o = vi.value();
        if (!o.is_object()) fail(ErrorKind::invalid_argument, "{}: expected an object", where);
        HnswParams* h = nullptr;
        bool* od = nullptr;
        if (named) {
          auto f = vectors.find(vi.key());
          if (f == vectors.end()) fail(ErrorKind::not_found, "Not existing vector name error: {}", vi.key());
          h = &f->second.hnsw, od = &f->second.on_disk;
        } else {
          if (!vi.key().empty()) fail(ErrorKind::not_found, "Not existing vector name error: {}", vi.key());
          h = &hnsw, od = &on_disk;
        }
        for (auto f = o.begin(); f != o.end(); ++f) {
          if (f.value().is_null()) continue;
          if (f.key() == "hnsw_config") apply_hnsw(f.value(), *h, (where + ".hnsw_config").c_str());
          else if (f.key() == "on_disk" && f.value().is_boolean()) *od = f.value().get<bool>();
          else if (f.key() == "quantization_config" && !named) {
            apply_quantization(f.value(), *this);
          } else fail(ErrorKind::unsupported, "{}.{} cannot be changed by Etna", where, f.key());
        }
      }
    } else if (k == "quantization_config") {
      apply_quantization(v, *this);
    } else if (k == "ivf_config") {
      if (multi()) fail(ErrorKind::unsupported, "ivf_config on a collection with named or sparse vectors is not supported");
      apply_ivf(v, ivf);
    } else if (k == "sparse_vectors") {
      if (!v.is_object()) fail(ErrorKind::invalid_argument, "sparse_vectors: expected an object");
      for (auto si = v.begin(); si != v.end(); ++si) {
        auto f = sparse.find(si.key());
        if (f == sparse.end()) fail(ErrorKind::not_found, "Not existing vector name error: {}", si.key());
        if (!si.value().is_object()) fail(ErrorKind::invalid_argument, "sparse_vectors.{}: expected an object", si.key());
        for (auto m = si.value().begin(); m != si.value().end(); ++m) {
          if (m.key() == "modifier") {
            if (m.value().is_null() || m.value() == "none") f->second.modifier = SparseModifier::None;
            else if (m.value() == "idf") f->second.modifier = SparseModifier::Idf;
            else fail(ErrorKind::invalid_argument, "sparse_vectors.{}.modifier: expected \"idf\" or \"none\"", si.key());
          } else if (m.key() != "index") {
            fail(ErrorKind::unsupported, "sparse_vectors.{}.{} cannot be changed by Etna", si.key(), m.key());
          }
        }
      }
    } else if (k == "optimizers_config" || k == "params") {
      if (!v.is_object()) fail(ErrorKind::invalid_argument, "{}: expected an object", k);
    } else {
      fail(ErrorKind::unsupported, "collection update: \"{}\" is not supported by Etna", k);
    }
  }
  validate();
}

// ---- payload selection ----

namespace {

std::vector<std::string> string_list(const nlohmann::json& j, const char* where) {
  if (!j.is_array()) fail(ErrorKind::invalid_argument, "{}: expected an array of field names", where);
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string()) fail(ErrorKind::invalid_argument, "{}: expected an array of field names", where);
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<std::string> split_dots(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Copies the value at a dotted path from src into dst (creating parent objects).
void copy_path(const nlohmann::json& src, nlohmann::json& dst, const std::vector<std::string>& parts) {
  const nlohmann::json* s = &src;
  for (const auto& p : parts) {
    if (!s->is_object()) return;
    auto it = s->find(p);
    if (it == s->end()) return;
    s = &*it;
  }
  nlohmann::json* d = &dst;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    d = &(*d)[parts[i]];
    if (!d->is_object()) *d = nlohmann::json::object();
  }
  (*d)[parts.back()] = *s;
}

void erase_path(nlohmann::json& dst, const std::vector<std::string>& parts) {
  nlohmann::json* d = &dst;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!d->is_object()) return;
    auto it = d->find(parts[i]);
    if (it == d->end()) return;
    d = &*it;
  }
  if (d->is_object()) d->erase(parts.back());
}

}  // namespace

PayloadSelector PayloadSelector::from_json(const nlohmann::json& j) {
  if (j.is_null()) return none();
  if (j.is_boolean()) return j.get<bool>() ? all() : none();
  if (j.is_array()) return {Mode::Include, string_list(j, "with_payload")};
  if (j.is_object()) {
    if (j.contains("include")) return {Mode::Include, string_list(j["include"], "with_payload.include")};
    if (j.contains("exclude")) return {Mode::Exclude, string_list(j["exclude"], "with_payload.exclude")};
  }
  fail(ErrorKind::invalid_argument,
       "with_payload: expected true, false, a list of fields, {{\"include\": [...]}} or {{\"exclude\": [...]}}");
}

nlohmann::json PayloadSelector::apply(const nlohmann::json& payload) const {
  switch (mode) {
    case Mode::All: return payload;
    case Mode::None: return nlohmann::json::object();
    case Mode::Include: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& k : keys) copy_path(payload, out, split_dots(k));
      return out;
    }
    case Mode::Exclude: {
      nlohmann::json out = payload;
      for (const auto& k : keys) erase_path(out, split_dots(k));
      return out;
    }
  }
  return payload;
}

PayloadSchemaType parse_payload_schema_type(const std::string& name) {
  std::string n = lower(name);
  if (n == "keyword") return PayloadSchemaType::Keyword;
  if (n == "integer") return PayloadSchemaType::Integer;
  if (n == "float") return PayloadSchemaType::Float;
  if (n == "bool") return PayloadSchemaType::Bool;
  if (n == "text") return PayloadSchemaType::Text;
  if (n == "datetime") return PayloadSchemaType::Datetime;
  if (n == "geo" || n == "uuid")
    fail(ErrorKind::unsupported, "payload index type '{}' is not supported (keyword, integer, float, bool, text, datetime are)", name);
  fail(ErrorKind::invalid_argument, "unknown payload index type '{}'; expected keyword, integer, float, bool, text or datetime", name);
}

std::string payload_schema_type_name(PayloadSchemaType t) {
  switch (t) {
    case PayloadSchemaType::Keyword: return "keyword";
    case PayloadSchemaType::Integer: return "integer";
    case PayloadSchemaType::Float: return "float";
    case PayloadSchemaType::Bool: return "bool";
    case PayloadSchemaType::Text: return "text";
    case PayloadSchemaType::Datetime: return "datetime";
  }
  return "?";
}

}  // namespace etna::store
