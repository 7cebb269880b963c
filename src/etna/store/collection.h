// One collection of points: vectors (one dense vector per point, fixed dimension; or, when the
// config has named or sparse vectors, several per point kept by multi_collection.h), JSON payloads,
// an HNSW graph or, with ivf_config, an inverted file (ivf.h), plus exact scan, chosen per search
// by a planner (SearchRequest::plan reports the choice); optional int8 / binary / product
// quantisation, payload indexes and a write-ahead log. Thread-safe: any number of concurrent readers, writers are serialised; every write is
// logged and fsync'ed before it returns (an acknowledged write survives kill -9).
// Errors: etna::Error with kind invalid_argument (bad input; nothing was written), not_found
// (the collection was dropped), io / corrupt (storage failure).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "etna/store/filter.h"
#include "etna/store/types.h"

namespace etna::store {

class CollectionImpl;
namespace detail {
class MultiCollection;
}

class Collection {
 public:
  // Tuning knobs that are not part of the Qdrant config (tests use them).
  struct Options {
    // 0: checkpoint when the log passes config.wal_capacity_mb; else at this many bytes.
    uint64_t checkpoint_bytes = 0;
    // Rebuild the graph in a background thread once this fraction of its nodes are tombstones.
    double rebuild_tombstone_fraction = 0.2;
    bool background_optimizer = true;  // false: the rebuild runs inline in the deleting call
  };

  // Creates a new collection in `dir` (which must not exist yet). Throws invalid_argument on a
  // bad config, io when the directory cannot be written.
  static std::unique_ptr<Collection> create(const std::filesystem::path& dir, std::string name,
                                            const CollectionConfig& config, Options options);
  // Opens an existing collection: loads the last checkpoint, replays the log; a torn or corrupt
  // log tail is truncated with a warning. Throws corrupt when the checkpoint itself is bad.
  static std::unique_ptr<Collection> open(const std::filesystem::path& dir, std::string name,
                                          Options options);
  ~Collection();
  Collection(const Collection&) = delete;
  Collection& operator=(const Collection&) = delete;

  const std::string& name() const;
  const CollectionConfig& config() const;

  // Inserts or replaces points (vector and payload). All points are validated first (dimension,
  // NaN/Inf, 0/1 for binary distances, payload is an object); if any is bad nothing is written.
  // A repeated id within one batch: the last one wins. Returns the operation id.
  uint64_t upsert(std::vector<Point> points);
  // Deletes the selected points (missing ids are ignored). Returns the operation id.
  uint64_t delete_points(const PointSelector& selector);

  // Points with these ids, in the order asked, skipping missing ones.
  std::vector<Record> retrieve(const std::vector<PointId>& ids, const PayloadSelector& with_payload,
                               bool with_vector) const;
  // Points in id order starting at request.offset, at most request.limit of them.
  ScrollResult scroll(const ScrollRequest& request) const;
  // Exact number of points matching the filter (all points when null).
  uint64_t count(const Filter* filter) const;

  // Merges `payload` (an object) into the selected points' payloads.
  uint64_t set_payload(const nlohmann::json& payload, const PointSelector& selector);
  // Replaces the selected points' payloads with `payload`.
  uint64_t overwrite_payload(const nlohmann::json& payload, const PointSelector& selector);
  // Removes these keys (top-level names or dotted paths) from the selected points' payloads.
  uint64_t delete_payload(const std::vector<std::string>& keys, const PointSelector& selector);
  // Sets the selected points' payloads to {}.
  uint64_t clear_payload(const PointSelector& selector);

  // Top-k nearest points, best first. Throws invalid_argument on a wrong dimension or NaN/Inf.
  std::vector<ScoredPoint> search(const SearchRequest& request) const;
  std::vector<std::vector<ScoredPoint>> search_batch(const std::vector<SearchRequest>& requests) const;

  // Indexes a payload field so filters on it are planned with exact cardinalities. Creating an
  // index that exists with the same type is a no-op; with another type it is replaced.
  uint64_t create_payload_index(const std::string& field, PayloadSchemaType type);
  uint64_t delete_payload_index(const std::string& field);

  CollectionInfo info() const;
  // PATCH /collections/{name} (CollectionConfig::apply_patch). A changed HNSW setting rebuilds
  // the graph(s) before returning, a changed quantisation retrains or drops the codes, a changed
  // ivf_config (nlist, pq, training_threshold; or on/off) retrains the lists or swaps index; the new
  // config is checkpointed, so it survives a crash. Throws as apply_patch, nothing changed then.
  void update_config(const nlohmann::json& patch);

  // Writes a self-contained snapshot (config + points + payload indexes) to `path`.
  void write_snapshot(const std::filesystem::path& path) const;
  // Checkpoints now: writes the data file and resets the log.
  void checkpoint();
  // Waits until a running background rebuild has finished (tests, shutdown).
  void wait_for_optimizer() const;

 private:
  explicit Collection(std::unique_ptr<CollectionImpl> impl);
  explicit Collection(std::unique_ptr<detail::MultiCollection> multi);
  friend class Database;
  void mark_dropped();  // later calls fail with not_found; stops the optimiser
  std::unique_ptr<CollectionImpl> impl_;            // single-vector engine, or
  std::unique_ptr<detail::MultiCollection> multi_;  // multi-vector engine
};

}  // namespace etna::store
