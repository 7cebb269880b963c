#include "etna/rag/vector_backend.h"

#include <cstdlib>

#include "etna/base/error.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"
#include "etna/rag/qdrant_backend.h"
#include "etna/store/database.h"

namespace etna::rag {

namespace fs = std::filesystem;

namespace {

// The built-in store: collection kVectorCollection (one unnamed cosine vector per chunk) in
// <collection>/vectors. The model and catalogue are the catalogue's business here (it lives
// beside the vectors), so check() only compares the dimension.
class BuiltinBackend final : public VectorBackend {
 public:
  explicit BuiltinBackend(fs::path dir) : dir_(std::move(dir)) {}

  std::string where() const override { return "the built-in store in " + dir_.string(); }

  bool exists() override { return fs::exists(dir_) && db().has_collection(kVectorCollection); }

  void check(const VectorMeta& meta) override {
    if (!exists()) return;
    const size_t have = db().get(kVectorCollection).config().dim;
    if (have != meta.dim)
      fail(ErrorKind::invalid_argument, "{} holds vectors of dimension {}, not {}: re-ingest the collection", where(),
           have, meta.dim);
  }

  void ensure(const VectorMeta& meta) override {
    check(meta);
    if (db().has_collection(kVectorCollection)) return;
    store::CollectionConfig cfg;
    cfg.dim = meta.dim;
    cfg.distance = store::Distance::Cosine;
    db().create_collection(kVectorCollection, cfg);
  }

  void drop(const std::string&) override {
    if (exists()) db().drop_collection(kVectorCollection);
  }

  void upsert(const std::vector<ChunkVector>& chunks) override {
    std::vector<store::Point> points;
    points.reserve(chunks.size());
    for (const auto& c : chunks) points.push_back({store::PointId(static_cast<uint64_t>(c.id)), c.vector, c.payload});
    db().get(kVectorCollection).upsert(std::move(points));
  }

  void remove(const std::vector<int64_t>& ids) override {
    if (ids.empty() || !exists()) return;
    std::vector<store::PointId> pids(ids.begin(), ids.end());
    db().get(kVectorCollection).delete_points(store::PointSelector::by_ids(std::move(pids)));
  }

  std::vector<VectorHit> nearest(const std::vector<float>& query, size_t k) override {
    store::SearchRequest req;
    req.vector = query;
    req.limit = k;
    std::vector<VectorHit> out;
    for (const auto& p : db().get(kVectorCollection).search(req))
      out.push_back({static_cast<int64_t>(p.id.num()), p.score});
    return out;
  }

  std::vector<std::pair<int64_t, std::vector<float>>> fetch(const std::vector<int64_t>& ids) override {
    std::vector<store::PointId> pids(ids.begin(), ids.end());
    std::vector<std::pair<int64_t, std::vector<float>>> out;
    for (auto& rec : db().get(kVectorCollection).retrieve(pids, store::PayloadSelector::none(), true))
      if (rec.vector) out.emplace_back(static_cast<int64_t>(rec.id.num()), std::move(*rec.vector));
    return out;
  }

  uint64_t count() override { return exists() ? db().get(kVectorCollection).count(nullptr) : 0; }
  uint64_t generation(const std::string&) override { return 0; }
  void set_generation(uint64_t, const std::string&) override {}

 private:
  store::Database& db() {
    if (!db_) db_ = store::Database::open(dir_);
    return *db_;
  }
  fs::path dir_;
  std::unique_ptr<store::Database> db_;
};

}  // namespace

std::unique_ptr<VectorBackend> open_builtin_backend(const fs::path& collection_dir) {
  return std::make_unique<BuiltinBackend>(collection_dir / "vectors");
}

std::string normalise_store_url(const std::string& url) {
  if (url == kBuiltinVectorStore) return url;
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    fail(ErrorKind::invalid_argument, "--vector-store '{}': give an http:// or https:// URL (or '{}')", url,
         kBuiltinVectorStore);
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  if (u.find_first_of(" \t\r\n?#") != std::string::npos)
    fail(ErrorKind::invalid_argument, "--vector-store '{}': a base URL without spaces, query or fragment", url);
  // Credentials in the URL would end up in the catalogue and in every message naming the store.
  const size_t host = u.find("://") + 3;
  if (u.find('@', host) < u.find('/', host))
    fail(ErrorKind::invalid_argument,
         "--vector-store: give the URL without user:password@ (it is recorded and shown in messages); pass the key "
         "with $ETNA_VECTOR_STORE_KEY or --vector-store-key");
  return u;
}

uint64_t claim_vector_store(VectorBackend& store, Catalog& catalog) {
  const std::string recorded = catalog.meta("store_generation").value_or("0");
  const uint64_t mine = std::strtoull(recorded.c_str(), nullptr, 10);
  const std::string id = catalog.meta("catalog_id").value_or("");
  const uint64_t theirs = store.generation(id);
  if (theirs > mine)
    fail(ErrorKind::conflict,
         "{} was written by a newer copy of this catalogue (generation {} > {}): ingest or delete on the writer, "
         "then copy its catalog.db here",
         store.where(), theirs, mine);
  // The catalogue first: if the store's write then fails (or times out after the server applied
  // it), the catalogue is ahead of the store, which the check above lets pass; the other order
  // would leave the store ahead and lock this writer out for good.
  catalog.set_meta("store_generation", std::to_string(mine + 1));
  store.set_generation(mine + 1, id);
  return mine + 1;
}

std::string remote_collection_name(const std::string& local_name) { return "etna_docs_" + local_name; }

std::unique_ptr<VectorBackend> open_vector_backend(const fs::path& collection_dir, const Catalog& catalog,
                                                   const VectorStoreOptions& options) {
  const std::string url = normalise_store_url(
      !options.url.empty() ? options.url : catalog.meta("vector_store").value_or(kBuiltinVectorStore));
  if (url == kBuiltinVectorStore) return open_builtin_backend(collection_dir);
  VectorStoreOptions o = options;
  o.url = url;
  return open_qdrant_backend(o, remote_collection_name(collection_dir.filename().string()));
}

std::unique_ptr<VectorBackend> open_recorded_vector_backend(const fs::path& collection_dir, const Catalog& catalog,
                                                            const VectorStoreOptions& options) {
  const std::string recorded = normalise_store_url(catalog.meta("vector_store").value_or(kBuiltinVectorStore));
  if (!options.url.empty() && catalog.meta("embedding_id")) {
    const std::string given = normalise_store_url(options.url);
    if (given != recorded)
      fail(ErrorKind::invalid_argument,
           "collection '{}' keeps its vectors in {}, not {}: pass --vector-store {} (or none) to change it",
           collection_dir.filename().string(), recorded == kBuiltinVectorStore ? "the built-in store" : recorded, given,
           recorded);
  }
  VectorStoreOptions o = options;
  o.url = recorded;
  return open_vector_backend(collection_dir, catalog, o);
}

}  // namespace etna::rag
