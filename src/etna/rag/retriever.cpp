#include "etna/rag/retriever.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/ingest.h"
#include "etna/store/database.h"

namespace etna::rag {

namespace fs = std::filesystem;

Retriever::~Retriever() = default;

std::unique_ptr<Retriever> Retriever::open(const fs::path& dir, const engine::Embedder* embedder,
                                           RetrieverOptions options) {
  if (!fs::exists(dir / "catalog.db"))
    fail(ErrorKind::not_found, "collection '{}' not found in {}: run `etna ingest PATH --collection {}` first",
         dir.filename().string(), dir.parent_path().string(), dir.filename().string());
  if (!(options.rrf_k > 0) || options.bm25_weight < 0 || options.vector_weight < 0 || options.candidates == 0 ||
      !std::isfinite(options.rrf_k + options.bm25_weight + options.vector_weight))
    fail(ErrorKind::invalid_argument, "retrieval options: k must be > 0, weights >= 0, candidates >= 1");
  std::unique_ptr<Retriever> r(new Retriever());
  r->opt_ = options;
  r->bm25_ = Bm25Index(options.bm25);
  r->catalog_ = Catalog::open(dir / "catalog.db");
  r->catalog_->for_each_chunk([&](int64_t id, const std::string& text) { r->bm25_.add(id, text); });
  if (embedder) {
    const std::string want = fmt::format("{}|{}", embedder->model_name(), embedder->dim());
    const std::optional<std::string> have = r->catalog_->meta("embedding_id");
    if (have && *have != want)
      fail(ErrorKind::invalid_argument,
           "collection '{}' was embedded with {} ({}), not with {}: pass that model or re-ingest",
           dir.filename().string(), r->catalog_->meta("embedding_model").value_or("another model"), *have, want);
    if (have && fs::exists(dir / "vectors")) {
      auto db = store::Database::open(dir / "vectors");
      if (db->has_collection(kVectorCollection)) {
        r->store_ = std::move(db);
        r->embedder_ = embedder;
      }
    }
  }
  return r;
}

std::vector<SearchHit> Retriever::search(const std::string& query, size_t k) const {
  if (k == 0) return {};
  const size_t depth = std::max(opt_.candidates, k);
  const std::vector<Bm25Index::Hit> lexical = bm25_.search(query, depth);
  std::unordered_map<int64_t, SearchHit> fused;
  if (!store_) {
    std::vector<int64_t> ids;
    for (size_t i = 0; i < lexical.size() && i < k; ++i) ids.push_back(lexical[i].id);
    std::vector<ChunkRow> rows = catalog_->chunks(ids);
    std::vector<SearchHit> out;
    for (size_t i = 0, j = 0; i < ids.size() && j < rows.size(); ++i) {
      if (rows[j].id != ids[i]) continue;  // deleted since the index was built
      SearchHit h;
      h.chunk = std::move(rows[j++]);
      h.score = h.bm25_score = lexical[i].score;
      h.bm25_rank = static_cast<int>(i + 1);
      out.push_back(std::move(h));
    }
    return out;
  }
  for (size_t i = 0; i < lexical.size(); ++i) {
    SearchHit& h = fused[lexical[i].id];
    h.bm25_rank = static_cast<int>(i + 1);
    h.bm25_score = lexical[i].score;
    h.score += opt_.bm25_weight / (opt_.rrf_k + static_cast<double>(i + 1));
  }
  store::SearchRequest req;
  req.vector = embedder_->embed({query}, /*truncate=*/true).at(0);
  req.limit = depth;
  const std::vector<store::ScoredPoint> semantic = store_->get(kVectorCollection).search(req);
  for (size_t i = 0; i < semantic.size(); ++i) {
    SearchHit& h = fused[static_cast<int64_t>(semantic[i].id.num())];
    h.vector_rank = static_cast<int>(i + 1);
    h.vector_score = semantic[i].score;
    h.score += opt_.vector_weight / (opt_.rrf_k + static_cast<double>(i + 1));
  }
  std::vector<std::pair<int64_t, SearchHit>> ranked(fused.begin(), fused.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second.score != b.second.score ? a.second.score > b.second.score : a.first < b.first;
  });
  std::vector<SearchHit> out;
  for (auto& [id, h] : ranked) {
    if (out.size() == k) break;
    std::vector<ChunkRow> row = catalog_->chunks({id});
    if (row.empty()) continue;
    h.chunk = std::move(row[0]);
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace etna::rag
