#include "etna/rag/rerank.h"

#include <algorithm>
#include <numeric>

namespace etna::rag {

void rerank(std::vector<SearchHit>& hits, const engine::Reranker& reranker, const std::string& query, size_t k) {
  std::vector<std::string> texts;
  texts.reserve(hits.size());
  for (const SearchHit& h : hits) texts.push_back(h.chunk.text);
  const std::vector<float> scores = reranker.score(query, texts);
  std::vector<size_t> order(hits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<SearchHit> out;
  for (size_t i = 0; i < order.size() && i < k; ++i) {
    out.push_back(std::move(hits[order[i]]));
    out.back().score = scores[order[i]];
  }
  hits = std::move(out);
}

}  // namespace etna::rag
