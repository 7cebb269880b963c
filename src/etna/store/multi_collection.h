// The multi-vector engine behind Collection (internal): a collection whose points carry several
// named dense vectors (each with its own size, distance and HNSW graph) and/or sparse vectors
// (an inverted index per name, dot-product scores, optional idf weighting). Points may lack any
// of the vectors. Same guarantees as the single-vector engine: writes are logged and fsync'ed
// before they return, a checkpoint bounds the log, kill -9 loses no acknowledged write.
//
// Storage: data.etna starts with the magic "ETNAMVC1" followed by one MessagePack document
// (config, last operation id, payload indexes, live points) and a CRC-32C; wal.log records are
// [u8 type][u64 op][MessagePack arguments]. The HNSW graphs are rebuilt on open (not stored).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "etna/store/collection.h"

namespace etna::store::detail {

// True when the data file at `path` was written by the multi-vector engine.
bool is_multi_data_file(const std::filesystem::path& path);

class MultiImpl;

// Same contracts as the Collection methods of the same names.
class MultiCollection {
 public:
  static std::unique_ptr<MultiCollection> create(const std::filesystem::path& dir, std::string name,
                                                 const CollectionConfig& config, Collection::Options options);
  static std::unique_ptr<MultiCollection> open(const std::filesystem::path& dir, std::string name,
                                               Collection::Options options);
  ~MultiCollection();

  const std::string& name() const;
  const CollectionConfig& config() const;
  uint64_t upsert(std::vector<Point> points);
  uint64_t delete_points(const PointSelector& selector);
  std::vector<Record> retrieve(const std::vector<PointId>& ids, const PayloadSelector& with_payload,
                               bool with_vector) const;
  ScrollResult scroll(const ScrollRequest& request) const;
  uint64_t count(const Filter* filter) const;
  // kind: 3 set, 4 overwrite, 5 delete keys (arg = key list), 6 clear.
  uint64_t payload_op(int kind, const nlohmann::json& arg, const PointSelector& selector);
  std::vector<ScoredPoint> search(const SearchRequest& request) const;
  uint64_t index_op(bool create, const std::string& field, PayloadSchemaType type);
  CollectionInfo info() const;
  void update_config(const nlohmann::json& patch);
  void write_snapshot(const std::filesystem::path& path) const;
  void checkpoint();
  void mark_dropped();

 private:
  explicit MultiCollection(std::unique_ptr<MultiImpl> impl);
  std::unique_ptr<MultiImpl> impl_;
};

}  // namespace etna::store::detail
