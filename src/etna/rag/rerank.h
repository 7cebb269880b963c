// The optional rerank stage of retrieval: the fused (BM25 + vector) candidates are read again by
// a cross-encoder together with the query and reordered by its score. Retrieve wide (e.g. 50),
// rerank, keep the best k.
#pragma once
#include <string>
#include <vector>

#include "etna/engine/reranker.h"
#include "etna/rag/retriever.h"

namespace etna::rag {

// Orders `hits` by the reranker's score of (query, chunk text), best first (ties keep their
// earlier order), keeps the first k, and sets each kept hit's `score` to its reranker score.
void rerank(std::vector<SearchHit>& hits, const engine::Reranker& reranker, const std::string& query, size_t k);

// How many fused candidates the rerank stage reads for a final top k.
inline size_t rerank_candidates(size_t k) { return k < 50 ? 50 : k; }

}  // namespace etna::rag
