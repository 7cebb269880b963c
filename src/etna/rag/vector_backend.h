// Where a document collection keeps its chunk vectors: the built-in store in
// <collection>/vectors (etna::store), or an external Qdrant cluster reached over its REST API
// (rag/qdrant_backend.h). The catalogue (chunk text, files, BM25) always stays local; a backend
// holds one vector per chunk id, plus what made them (VectorMeta).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace etna::rag {

class Catalog;

// Chosen by `--vector-store URL` / `--vector-store-key KEY` (or $ETNA_VECTOR_STORE_KEY).
struct VectorStoreOptions {
  std::string url;      // http(s)://host:port of a Qdrant API; "" = the one the catalogue records
  std::string api_key;  // sent as the `api-key` header; never written to messages or logs
  long timeout_ms = 30000;        // per request
  long connect_timeout_ms = 5000;
  int retries = 3;  // extra attempts after a connection error or a 5xx, with doubling back-off
  size_t max_response_bytes = size_t{256} << 20;  // a longer answer fails (unavailable) instead of filling memory
};

// The value of --vector-store that names the built-in store.
inline constexpr const char* kBuiltinVectorStore = "builtin";

// What a collection's vectors are: the embedding model's id ("name|dim"), the dimension, and the
// catalogue they belong to (catalog meta "catalog_id"), so two data folders never share one
// remote collection by accident.
struct VectorMeta {
  std::string model_id;
  size_t dim = 0;
  std::string catalog_id;
};

struct ChunkVector {
  int64_t id = 0;
  std::vector<float> vector;
  nlohmann::json payload;
};

struct VectorHit {
  int64_t id = 0;
  float score = 0;  // cosine similarity
};

class VectorBackend {
 public:
  virtual ~VectorBackend() = default;

  // Where the vectors live, for messages ("the built-in store in PATH", "Qdrant at URL ...").
  virtual std::string where() const = 0;
  // Whether the chunk-vector collection exists.
  virtual bool exists() = 0;
  // Does nothing when the collection is missing. Throws invalid_argument when it holds another
  // dimension or model, conflict when it belongs to another catalogue (or to no Etna catalogue).
  virtual void check(const VectorMeta& meta) = 0;
  // check(), then creates the collection when it is missing.
  virtual void ensure(const VectorMeta& meta) = 0;
  // Deletes the collection when it exists and belongs to `catalog_id` (the built-in store's always does).
  virtual void drop(const std::string& catalog_id) = 0;
  // REQUIRES: ensure() called. Inserts or replaces the chunks' vectors.
  virtual void upsert(const std::vector<ChunkVector>& chunks) = 0;
  // Removes the ids' vectors; ids without one are ignored, as is a missing collection.
  virtual void remove(const std::vector<int64_t>& ids) = 0;
  // The k chunks nearest to `query` by cosine, best first.
  virtual std::vector<VectorHit> nearest(const std::vector<float>& query, size_t k) = 0;
  // The stored vectors of those ids that have one (in no particular order).
  virtual std::vector<std::pair<int64_t, std::vector<float>>> fetch(const std::vector<int64_t>& ids) = 0;
  // Number of chunk vectors stored.
  virtual uint64_t count() = 0;
  // Write generation recorded with the vectors of catalogue `catalog_id` (0 when none, missing or
  // another catalogue's; the built-in store keeps none: it lives beside its one catalogue).
  virtual uint64_t generation(const std::string& catalog_id) = 0;
  // Records `g` when the collection exists and is catalogue `catalog_id`'s (else does nothing).
  virtual void set_generation(uint64_t g, const std::string& catalog_id) = 0;
};

// Before a catalogue changes what the store holds: refuses (conflict) when the store was written
// since this catalogue was copied from the writer (its generation is ahead of the catalogue's
// "store_generation" meta), else advances both to the same new generation (the catalogue first, so
// a failed store write leaves the catalogue ahead, which passes) and returns it. Keeps
// replicas holding copies of the writer's catalogue from overwriting its chunk ids (see
// docs/architecture.md); two writers racing from the same generation are not caught.
uint64_t claim_vector_store(VectorBackend& store, Catalog& catalog);

// The built-in store of the collection at `collection_dir` (opened lazily).
std::unique_ptr<VectorBackend> open_builtin_backend(const std::filesystem::path& collection_dir);

// The store a collection's vectors are in: options.url when set, else the one its catalogue
// records ("vector_store" meta; none or "builtin" = the built-in store). A remote collection is
// named after the local one (see remote_collection_name). Throws invalid_argument on a bad URL.
std::unique_ptr<VectorBackend> open_vector_backend(const std::filesystem::path& collection_dir, const Catalog& catalog,
                                                   const VectorStoreOptions& options);

// For a change to a collection's vectors (deleting files or the collection): the store its
// catalogue records. Throws invalid_argument when the collection has vectors and options.url names
// another store (the change would go to the wrong one), as Retriever::open refuses a search.
std::unique_ptr<VectorBackend> open_recorded_vector_backend(const std::filesystem::path& collection_dir,
                                                            const Catalog& catalog, const VectorStoreOptions& options);

// The URL recorded for a store ("builtin" for the built-in one), trailing slashes removed.
// Throws invalid_argument unless it is "builtin" or starts with http:// or https://.
std::string normalise_store_url(const std::string& url);

// "etna_docs_<name>": the Qdrant collection holding the vectors of local collection <name>.
std::string remote_collection_name(const std::string& local_name);

}  // namespace etna::rag
