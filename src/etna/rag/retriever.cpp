#include "etna/rag/retriever.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/ingest.h"

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
  std::vector<int64_t> ids;
  r->catalog_->for_each_chunk([&](int64_t id, const std::string& text) {
    r->bm25_.add(id, text);
    ids.push_back(id);
  });
  if (embedder) {
    const std::string want = fmt::format("{}|{}", embedder->model_name(), embedder->dim());
    const std::optional<std::string> have = r->catalog_->meta("embedding_id");
    if (have && *have != want)
      fail(ErrorKind::invalid_argument,
           "collection '{}' was embedded with {} ({}), not with {}: pass that model or re-ingest",
           dir.filename().string(), r->catalog_->meta("embedding_model").value_or("another model"), *have, want);
    if (have) {
      const std::string recorded = normalise_store_url(r->catalog_->meta("vector_store").value_or(kBuiltinVectorStore));
      const std::string& given = options.vector_store.url;
      if (!given.empty() && normalise_store_url(given) != recorded)
        fail(ErrorKind::invalid_argument,
             "collection '{}' keeps its vectors in {}, not {}: pass --vector-store {} or ingest again with "
             "--vector-store {}",
             dir.filename().string(), recorded == kBuiltinVectorStore ? "the built-in store" : recorded,
             normalise_store_url(given), recorded, normalise_store_url(given));
      auto backend = open_vector_backend(dir, *r->catalog_, options.vector_store);
      backend->check({*have, static_cast<size_t>(embedder->dim()), r->catalog_->meta("catalog_id").value_or("")});
      if (backend->exists()) {
        r->vectors_ = std::move(backend);
        r->embedder_ = embedder;
        r->dim_ = static_cast<size_t>(embedder->dim());
        r->load_sample(ids);
      }
    }
  }
  return r;
}

namespace {

constexpr size_t kSampleSize = 1024;

double dot_unit(const float* a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < b.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

void normalise(std::vector<float>& v) {
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  if (n > 0) {
    const float inv = static_cast<float>(1.0 / std::sqrt(n));
    for (float& x : v) x *= inv;
  }
}

}  // namespace

void Retriever::load_sample(const std::vector<int64_t>& ids) {
  // Evenly spaced over the collection, so every file has its share.
  std::vector<int64_t> pick;
  const size_t n = std::min(ids.size(), kSampleSize);
  for (size_t i = 0; i < n; ++i) pick.push_back(ids[i * ids.size() / n]);
  auto got = vectors_->fetch(pick);
  // In id order whatever order the store answers in, so the sample's sums are the same everywhere.
  std::sort(got.begin(), got.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, v] : got) {
    if (v.size() != dim_) continue;
    normalise(v);
    sample_.insert(sample_.end(), v.begin(), v.end());
  }
}

std::vector<SearchHit> Retriever::search(const std::string& query, size_t k) const {
  if (k == 0) return {};
  const size_t depth = std::max(opt_.candidates, k);
  const Bm25Index::Scores bm25 = bm25_.score_all(query);
  const std::vector<Bm25Index::Hit> lexical = Bm25Index::top(bm25, depth);
  std::unordered_map<int64_t, SearchHit> fused;
  if (!vectors_) {
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
  }
  std::vector<float> qvec = embedder_->embed({query}, /*truncate=*/true).at(0);
  normalise(qvec);
  const std::vector<VectorHit> semantic = vectors_->nearest(qvec, depth);
  for (size_t i = 0; i < semantic.size(); ++i) {
    SearchHit& h = fused[semantic[i].id];
    h.vector_rank = static_cast<int>(i + 1);
    h.vector_score = semantic[i].score;
  }
  if (opt_.fusion == Fusion::rrf) {
    for (auto& [id, h] : fused) {
      if (h.bm25_rank) h.score += opt_.bm25_weight / (opt_.rrf_k + h.bm25_rank);
      if (h.vector_rank) h.score += opt_.vector_weight / (opt_.rrf_k + h.vector_rank);
    }
  } else {
    // Score both sides of every candidate: BM25 exactly (0 when no query term occurs), the
    // cosine from the stored vector when the vector list did not reach it.
    std::vector<int64_t> missing;
    for (auto& [id, h] : fused) {
      if (!h.bm25_rank) {
        auto it = bm25.by_id.find(id);
        h.bm25_score = it == bm25.by_id.end() ? 0.0 : it->second;
      }
      if (!h.vector_rank) missing.push_back(id);
    }
    std::sort(missing.begin(), missing.end());
    for (auto& [id, v] : vectors_->fetch(missing)) {
      if (v.size() != qvec.size()) continue;
      normalise(v);
      fused[id].vector_score = dot_unit(v.data(), qvec);
    }
    double sum = 0, sum_sq = 0;
    const size_t rows = dim_ ? sample_.size() / dim_ : 0;
    for (size_t r = 0; r < rows; ++r) {
      const double c = dot_unit(sample_.data() + r * dim_, qvec);
      sum += c;
      sum_sq += c * c;
    }
    const double cos_mean = rows ? sum / rows : 0;
    const double cos_sd = rows ? std::sqrt(std::max(0.0, sum_sq / rows - cos_mean * cos_mean)) : 0;
    auto z = [](double x, double mean, double sd) { return sd > 1e-12 ? (x - mean) / sd : 0.0; };
    for (auto& [id, h] : fused)
      h.score = opt_.bm25_weight * z(h.bm25_score, bm25.mean, bm25.stddev) +
                opt_.vector_weight * z(h.vector_score, cos_mean, cos_sd);
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
