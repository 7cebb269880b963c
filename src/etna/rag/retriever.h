// Hybrid retrieval over an ingested collection: BM25 over chunk text fused with vector
// similarity. The default fusion is score-aware: CombSUM over z-score normalised scores (Fox &
// Shaw 1994; "ZMUV" normalisation, Montague & Aslam 2001):
//   score(d) = w_bm25 * (bm25(d) - mean_bm25) / sd_bm25 + w_vec * (cos(d) - mean_cos) / sd_cos,
// where each mean and standard deviation is taken over the query's scores against the whole
// collection (BM25: every chunk, exactly; cosine: a fixed sample of up to 1024 chunk vectors).
// Each side thus counts in units of its own spread: a vector model that tells chunks apart no
// better than chance (a random-weight test model, whose cosines all sit near 0.9) adds noise of
// about one unit, while a keyword match that stands far above the collection keeps its lead.
// Candidates are the union of both lists' top `candidates`, and every candidate is scored on
// both sides (its cosine is computed from its stored vector, its BM25 score is exact).
// Fusion::rrf keeps weighted reciprocal rank fusion (Cormack et al. 2009):
// score(d) = sum over lists i of w_i / (k + rank_i(d)), which ignores how far apart the scores
// are and lets a weak vector list push strong BM25 hits out of the top k.
// Without an embedding model (or when the collection has no vectors) it is BM25 alone.
// The BM25 index is rebuilt from the catalog when the retriever opens; the vectors come from the
// collection's VectorBackend (the built-in store, or an external Qdrant cluster).
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "etna/rag/bm25.h"
#include "etna/rag/catalog.h"
#include "etna/rag/vector_backend.h"

namespace etna::engine {
class Embedder;
}
namespace etna::rag {

enum class Fusion { zscore, rrf };

struct RetrieverOptions {
  Bm25Params bm25;
  Fusion fusion = Fusion::zscore;
  double bm25_weight = 1.0;
  double vector_weight = 1.0;
  double rrf_k = 60.0;  // Fusion::rrf only
  size_t candidates = 50;  // depth of each ranked list before fusion
  // Where the vectors are (default: the store the catalogue records, built-in or external).
  VectorStoreOptions vector_store;
};

struct SearchHit {
  ChunkRow chunk;
  double score = 0;       // fused score (z-score sum or RRF); the BM25 score when BM25 is used alone
  int bm25_rank = 0;      // 1-based; 0 when absent from the BM25 list
  int vector_rank = 0;    // 1-based; 0 when absent (or no vectors)
  double bm25_score = 0;
  double vector_score = 0;  // cosine similarity
};

class Retriever {
 public:
  // Opens the collection at `dir`. Throws not_found when nothing was ingested there. With an
  // embedder, the collection's vectors are used when they were made by a model of the same
  // name and dimension; otherwise it throws invalid_argument saying which model to use. An
  // external store must be the one the collection was ingested into (invalid_argument naming
  // it) and answer (unavailable otherwise).
  static std::unique_ptr<Retriever> open(const std::filesystem::path& dir, const engine::Embedder* embedder,
                                         RetrieverOptions options = {});
  ~Retriever();

  // Whether vector similarity takes part (an embedder was given and vectors exist).
  bool hybrid() const { return vectors_ != nullptr; }
  size_t chunk_count() const { return bm25_.size(); }

  // The best `k` chunks for the query, best first. Throws invalid_argument on bad options.
  std::vector<SearchHit> search(const std::string& query, size_t k) const;

 private:
  Retriever() = default;
  void load_sample(const std::vector<int64_t>& ids);
  RetrieverOptions opt_;
  std::unique_ptr<Catalog> catalog_;
  Bm25Index bm25_;
  const engine::Embedder* embedder_ = nullptr;
  std::unique_ptr<VectorBackend> vectors_;
  // Unit-length chunk vectors sampled at open, row after row, for the cosine mean and spread.
  std::vector<float> sample_;
  size_t dim_ = 0;
};

}  // namespace etna::rag
