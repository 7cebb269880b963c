// Value types of the vector store, shaped after Qdrant's data model so the server layer can map
// its JSON one to one. Every parse_* / from_json function throws etna::Error(invalid_argument)
// with a message naming the offending field.
#pragma once
#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace etna::store {

// A point id: an unsigned 64-bit integer or a UUID (Qdrant semantics). UUIDs are accepted in
// any form Qdrant accepts (hyphenated, simple 32 hex, braced, urn:uuid:) and kept canonical
// (lower-case hyphenated). Order: all integers (ascending) before all UUIDs (by bytes).
class PointId {
 public:
  PointId() = default;
  PointId(uint64_t num) { std::memcpy(uuid_.data(), &num, sizeof num); }  // NOLINT: implicit on purpose
  // Parses a UUID string; throws invalid_argument when it is not one.
  static PointId uuid(const std::string& text);
  // From JSON: non-negative integer or UUID string; anything else throws invalid_argument.
  static PointId from_json(const nlohmann::json& j);

  bool is_uuid() const { return is_uuid_; }
  uint64_t num() const {  // REQUIRES: !is_uuid()
    uint64_t v;
    std::memcpy(&v, uuid_.data(), sizeof v);
    return v;
  }
  const std::array<uint8_t, 16>& uuid_bytes() const { return uuid_; }  // REQUIRES: is_uuid()
  std::string to_string() const;  // "42" or "550e8400-e29b-41d4-a716-446655440000"
  nlohmann::json to_json() const;  // number or string

  friend bool operator==(const PointId& a, const PointId& b) = default;
  friend std::strong_ordering operator<=>(const PointId& a, const PointId& b);

 private:
  // 17 bytes, byte-aligned (one per point in the store): a number lives in the first 8 bytes of
  // uuid_ (native order; the other 8 stay zero, so the defaulted == holds for both kinds).
  std::array<uint8_t, 16> uuid_{};
  bool is_uuid_ = false;
};

struct PointIdHash {
  size_t operator()(const PointId& id) const;
};

// Distance functions. Cosine and Dot: higher score is better; the others are distances where a
// lower score is better (Qdrant orders Euclid and Manhattan ascending, we do the same for all).
// Cosine vectors are normalised on insert, so Cosine scores are dot products of unit vectors.
// Hamming and Jaccard are for binary vectors given as 0/1 floats (any other value is rejected):
// Hamming = number of differing positions, Jaccard = 1 - |a AND b| / |a OR b| (0 when both empty).
enum class Distance { Cosine, Dot, Euclid, Manhattan, Hamming, Jaccard };

// "Cosine", "Dot", "Euclid", "Manhattan", "Hamming", "Jaccard" (case-insensitive).
Distance parse_distance(const std::string& name);
std::string distance_name(Distance d);
// True when a higher score means more similar (Cosine, Dot).
bool higher_is_better(Distance d);

// HNSW graph parameters (Malkov & Yashunin). M: links per node on upper layers (M_max0 = 2*M on
// layer 0); ef_construct: candidate list size while building; full_scan_threshold: in kilobytes
// of vectors, like Qdrant: a filtered search whose estimated matching set is smaller than this
// is answered by an exact scan over the matching points instead of a graph walk.
struct HnswParams {
  size_t m = 16;
  size_t ef_construct = 100;
  size_t full_scan_threshold = 10000;
};

// Optional int8 scalar quantisation: each component is clipped to the [q, 1-q] quantile range
// of the collection's values (quantile default 0.99) and mapped to 256 levels. The graph walk
// uses the codes; the best candidates are rescored with the original floats. always_ram is
// accepted for compatibility (everything is in RAM).
struct ScalarQuantization {
  float quantile = 0.99f;
  bool always_ram = true;
};

// One named dense vector of a collection with named vectors (Qdrant's `vectors: {"name": {...}}`).
struct VectorParams {
  size_t dim = 0;  // 1 .. 65536
  Distance distance = Distance::Cosine;
  HnswParams hnsw;
  bool on_disk = false;  // accepted and ignored
};

// A sparse vector (Qdrant's {indices, values}): indices unique, values finite.
struct SparseVector {
  std::vector<uint32_t> indices;
  std::vector<float> values;
  // Parses {"indices": [...], "values": [...]}; sorts by index. Throws invalid_argument naming
  // `where` on unequal lengths, repeated indices, negative or too large indices, non-finite values.
  static SparseVector from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

// A sparse vector space: inverted index, dot-product scores. modifier idf weights each query
// term by Qdrant's inverse document frequency ln((N - n + 0.5) / (n + 0.5) + 1).
enum class SparseModifier { None, Idf };
struct SparseParams {
  SparseModifier modifier = SparseModifier::None;
};

// Optional binary quantisation (Qdrant's `binary`): one bit per dimension, set when the
// component is above that dimension's mean over the collection (trained once 256 points exist;
// for centred embeddings this is the sign bit). The graph walk compares codes by Hamming
// distance (popcount); the walk's candidates, ef = max(hnsw_ef, oversampling * limit) of them,
// are rescored with the original floats.
struct BinaryQuantization {
  bool always_ram = true;
};

// Optional product quantisation (Qdrant's `product`; Jegou, Douze & Schmid 2011, "Product
// quantization for nearest neighbor search"). The dimension is split into m sub-spaces, m =
// 4*dim / compression code bytes (at most dim; the first dim % m sub-spaces get one extra
// component), each with a k-means codebook of 256 centroids trained once 2048 points exist. A
// vector is stored as m one-byte centroid numbers; the graph walk scores them against per-query
// tables of m x 256 sub-distances (asymmetric distance computation), and the walk's candidates,
// ef = max(hnsw_ef, oversampling * limit) of them, are rescored with the original floats.
// Euclid, Manhattan, Dot and Cosine; not Hamming or Jaccard.
struct ProductQuantization {
  uint32_t compression = 16;  // 4, 8, 16, 32 or 64 (Qdrant's "x4" ... "x64")
  bool always_ram = true;
};

// Etna extension (`ivf_config`, not in Qdrant): an inverted file index instead of the HNSW graph,
// for collections whose graph would not fit in memory (ivf.h; Sivic & Zisserman 2003, IVFADC of
// Jegou et al. 2011). Until the collection holds training_threshold points it is searched
// exactly; then nlist coarse centroids are trained by k-means and every point goes to the list
// of its nearest one. A search scans the nprobe lists nearest the query. With pq_compression the
// lists hold product codes (x4..x64, as quantization_config.product) and the best
// max(oversampling * limit, 8 * limit) candidates are rescored with the floats.
//
// Training runs inside the write (upsert or PATCH) that reaches the threshold, under the
// collection's write lock: k-means over min(32 * nlist, 131072) sampled points for 8 rounds,
// then every point is filed. So nlist is bounded per dimension (training_work <=
// kMaxTrainingWork, about 1.1e12 multiply-adds: nlist <= 8192 at 128 dims, 2048 at 1024), and
// training_threshold must be at least nlist; 32 * nlist points give the k-means a full sample.
struct IvfConfig {
  std::optional<size_t> nlist;   // unset: 4 * sqrt(points) at training, at most max_nlist(dim); 1 .. 65536
  std::optional<size_t> nprobe;  // unset: max(8, nlist / 16); a per-search params.ivf_nprobe wins
  uint32_t pq_compression = 0;   // 0: IVF-FLAT
  size_t training_threshold = 4096;  // at least nlist
  bool operator==(const IvfConfig&) const = default;

  static constexpr size_t kSamplePerList = 32;  // k-means sample: 32 points per centroid,
  static constexpr size_t kMaxSample = 131072;  // at most this many
  static constexpr int kIterations = 8;
  static constexpr uint64_t kMaxTrainingWork = uint64_t(1) << 40;
  // Multiply-adds of the k-means: sample * nlist * dim * iterations.
  static uint64_t training_work(size_t nlist, size_t dim);
  // The largest nlist in [1, 65536] whose training_work stays within kMaxTrainingWork.
  static size_t max_nlist(size_t dim);
};

// Which index a search used and why (params.debug in the REST API).
struct SearchPlan {
  std::string index;   // "flat", "hnsw", "ivf_flat" or "ivf_pq"
  std::string reason;  // one sentence
};

struct CollectionConfig {
  size_t dim = 0;  // 1 .. 65536
  Distance distance = Distance::Cosine;
  HnswParams hnsw;
  std::optional<ScalarQuantization> quantization;
  std::optional<BinaryQuantization> binary;  // exclusive with quantization
  std::optional<ProductQuantization> product;  // exclusive with quantization and binary
  std::optional<IvfConfig> ivf;  // set: no HNSW graph, an inverted file (exclusive with quantization_config)
  bool on_disk = false;  // accepted and ignored (vectors live in RAM)
  // The log is checkpointed into the data file once it grows past this many MiB (Qdrant's
  // wal_capacity_mb), so replay on open stays bounded.
  size_t wal_capacity_mb = 32;
  // Named and sparse vectors. When `named` is set the default vector (dim/distance above) is
  // unused and `vectors` holds every dense vector by name; `sparse` may be set either way (the
  // default dense vector is then the vector named ""). A collection with named or sparse vectors
  // is kept by the multi-vector engine (multi_collection.h).
  bool named = false;
  std::map<std::string, VectorParams> vectors;
  std::map<std::string, SparseParams> sparse;
  bool multi() const { return named || !sparse.empty(); }
  // Dense vector spaces by name (the default one as "" unless named).
  std::map<std::string, VectorParams> dense_spaces() const;

  // Throws invalid_argument when a field is out of range (dim 0, m < 2, quantile outside (0.5,1]).
  // stored: a config read back from a data file, which skips the limits that bound new work
  // (IVF training cost) so a collection created before them still opens.
  void validate(bool stored = false) const;
  // Qdrant-shaped JSON ({"params":{"vectors":{"size","distance"}},"hnsw_config":{...},
  // "quantization_config":{"scalar":{...}}, ...}) and back. from_json takes the body of
  // PUT /collections/{name} (vectors/hnsw_config/quantization_config/optimizers_config/...).
  nlohmann::json to_json() const;
  static CollectionConfig from_create_json(const nlohmann::json& body);
  // Applies the body of PATCH /collections/{name}: hnsw_config (all dense vectors), vectors
  // ({name: {hnsw_config, on_disk, quantization_config}}), quantization_config (an object or
  // "Disabled"), sparse_vectors ({name: {modifier}}); optimizers_config and params are accepted
  // and ignored (one segment, one node). Anything else throws unsupported naming it.
  void apply_patch(const nlohmann::json& body);
};

// A point to upsert. payload must be a JSON object (null is treated as {}).
// Named dense and sparse vectors of one point (multi-vector collections).
struct NamedVectors {
  std::map<std::string, std::vector<float>> dense;
  std::map<std::string, SparseVector> sparse;
  bool empty() const { return dense.empty() && sparse.empty(); }
};

// A point to upsert. payload must be a JSON object (null is treated as {}). A single-vector
// collection takes `vector` (or named.dense[""]); a multi-vector one takes `named` (a plain
// `vector` counts as the vector named "").
struct Point {
  PointId id;
  std::vector<float> vector;
  nlohmann::json payload = nlohmann::json::object();
  NamedVectors named = {};
};

// Which parts of the payload to return: all, none, only `keys` (include) or all but `keys`
// (exclude). Keys are top-level field names or dotted paths.
struct PayloadSelector {
  enum class Mode { All, None, Include, Exclude };
  Mode mode = Mode::All;
  std::vector<std::string> keys;

  static PayloadSelector all() { return {}; }
  static PayloadSelector none() { return {Mode::None, {}}; }
  // Qdrant's with_payload: true | false | ["a","b"] | {"include":[..]} | {"exclude":[..]}.
  static PayloadSelector from_json(const nlohmann::json& j);
  // Applies the selection to a stored payload object.
  nlohmann::json apply(const nlohmann::json& payload) const;
};

// A point as returned by retrieve and scroll. payload / vector are set only when asked for.
struct Record {
  PointId id;
  std::optional<nlohmann::json> payload;
  std::optional<std::vector<float>> vector;
  std::optional<NamedVectors> vectors = {};  // multi-vector collections (instead of vector)
};

// A search hit. version is the operation id that last wrote the point.
struct ScoredPoint {
  PointId id;
  uint64_t version = 0;
  float score = 0;
  std::optional<nlohmann::json> payload;
  std::optional<std::vector<float>> vector;
  std::optional<NamedVectors> vectors = {};  // multi-vector collections (instead of vector)
};

struct Filter;

struct SearchRequest {
  std::vector<float> vector;
  size_t limit = 10;
  size_t offset = 0;
  std::shared_ptr<const Filter> filter;  // null: no filter
  // Cosine/Dot: only points with score >= threshold; distances: only score <= threshold.
  std::optional<float> score_threshold;
  PayloadSelector with_payload = PayloadSelector::none();
  bool with_vector = false;
  bool exact = false;                   // true: brute force, no index
  std::optional<size_t> hnsw_ef;        // search beam width; default max(ef_construct, limit+offset)
  std::optional<double> oversampling;   // binary/product quantisation: walk ef >= oversampling * (limit+offset)
  std::optional<size_t> ivf_nprobe;     // IVF collections: lists to scan (clamped to nlist)
  SearchPlan* plan = nullptr;           // when set, the search writes the plan it followed here
  // Multi-vector collections: which vector to search ("" = the default one) and a sparse query
  // instead of `vector`. with_vector returns every vector of the point.
  std::string using_name;
  std::optional<SparseVector> sparse;
};

struct ScrollRequest {
  std::optional<PointId> offset;  // first id to return (inclusive); none = from the start
  size_t limit = 10;
  std::shared_ptr<const Filter> filter;
  PayloadSelector with_payload = PayloadSelector::all();
  bool with_vector = false;
};

struct ScrollResult {
  std::vector<Record> points;
  std::optional<PointId> next_page_offset;  // id to pass as offset for the next page
};

// Selects points for delete / payload operations: a list of ids, or every point matching a filter.
struct PointSelector {
  std::vector<PointId> ids;
  std::shared_ptr<const Filter> filter;  // used when set (ids ignored)

  static PointSelector by_ids(std::vector<PointId> ids) { return {std::move(ids), nullptr}; }
  static PointSelector by_filter(std::shared_ptr<const Filter> f) { return {{}, std::move(f)}; }
};

// Payload index types (Qdrant's field_schema names: "keyword", "integer", "float", "bool",
// "text" (full-text: word match, see MatchText), "datetime" (RFC 3339 strings, range filters)).
enum class PayloadSchemaType { Keyword, Integer, Float, Bool, Text, Datetime };
PayloadSchemaType parse_payload_schema_type(const std::string& name);
std::string payload_schema_type_name(PayloadSchemaType t);

struct CollectionInfo {
  std::string status = "green";  // "green", or "yellow" while the optimiser rebuilds the graph
  uint64_t points_count = 0;
  uint64_t indexed_vectors_count = 0;  // live points reachable in the HNSW graph or the inverted lists
  std::optional<uint64_t> ivf_nlist;   // IVF collections once trained: the number of lists
  uint64_t segments_count = 1;
  CollectionConfig config;
  struct FieldInfo {
    PayloadSchemaType type;
    uint64_t points = 0;  // points that have at least one indexed value in this field
  };
  std::map<std::string, FieldInfo> payload_schema;
};

}  // namespace etna::store
