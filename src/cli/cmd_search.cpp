// `etna search --collection NAME "query"`: the best chunks of an ingested collection, hybrid
// (BM25 + vectors, z-score fusion) when the collection has an embedding model, else BM25.
// --json prints what POST /api/collections/NAME/search answers: {"hybrid", "reranked", "hits": [source...]}.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/answer.h"
#include "etna/rag/ingest.h"
#include "etna/rag/loader.h"
#include "etna/rag/rerank.h"
#include "etna/rag/retriever.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;

struct SearchArgs {
  std::string collection;
  std::string query;
  std::string embedding_model;
  std::string reranker;
  std::string data;
  int k = 5;
  bool json = false;
  bool bm25_only = false;
  double rrf_k = 60, bm25_weight = 1, vector_weight = 1;
  std::string fusion = "zscore";
  rag::VectorStoreOptions vector_store;
};

std::string lines_of(const rag::ChunkRow& c) {
  std::string s = c.page > 0 ? fmt::format("page {}, ", c.page) : "";
  return s + (c.line_start == c.line_end ? fmt::format("line {}", c.line_start)
                                         : fmt::format("lines {}-{}", c.line_start, c.line_end));
}

void run(const SearchArgs& a) {
  if (a.k < 1) fail(ErrorKind::invalid_argument, "-k must be at least 1");
  const fs::path dir = rag::collection_dir(data_dir(a.data), a.collection);
  std::string model = a.embedding_model;
  std::unique_ptr<engine::Embedder> embedder;
  if (!a.bm25_only) {
    if (model.empty() && fs::exists(dir / "catalog.db")) {
      auto cat = rag::Catalog::open(dir / "catalog.db");
      if (auto m = cat->meta("embedding_model"); m && fs::exists(*m)) model = *m;
    }
    if (!model.empty()) embedder = engine::Embedder::load(model);
  }
  rag::RetrieverOptions opt;
  opt.fusion = a.fusion == "rrf" ? rag::Fusion::rrf : rag::Fusion::zscore;
  opt.rrf_k = a.rrf_k;
  opt.bm25_weight = a.bm25_weight;
  opt.vector_weight = a.vector_weight;
  opt.vector_store = a.vector_store;
  auto retriever = rag::Retriever::open(dir, embedder.get(), opt);
  std::unique_ptr<engine::Reranker> reranker = a.reranker.empty() ? nullptr : engine::Reranker::load(a.reranker);
  const size_t k = static_cast<size_t>(a.k);
  auto hits = retriever->search(a.query, reranker ? rag::rerank_candidates(k) : k);
  if (reranker) rag::rerank(hits, *reranker, a.query, k);
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& h : hits) out.push_back(rag::source_json(h, 0));
    std::cout << nlohmann::json{{"hybrid", retriever->hybrid()}, {"reranked", reranker != nullptr}, {"hits", out}}.dump(2) << "\n";
    return;
  }
  if (hits.empty()) {
    std::cout << "no matches (" << retriever->chunk_count() << " chunks searched)\n";
    return;
  }
  for (size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    std::string text = rag::sanitize_utf8(h.chunk.text);
    for (char& ch : text)
      if (ch == '\n' || ch == '\t') ch = ' ';
    if (text.size() > 300) {
      size_t cut = 300;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      text = text.substr(0, cut) + "...";
    }
    std::cout << fmt::format("{}. {} ({}) score {:.4f}{}\n   {}\n", i + 1, rag::sanitize_utf8(h.chunk.file),
                             lines_of(h.chunk), h.score, retriever->hybrid() ? fmt::format(" [bm25 #{}, vector #{}]", h.bm25_rank, h.vector_rank) : "",
                             text);
  }
}

CommandRegistrar reg(51, [](CLI::App& root) {
  auto args = std::make_shared<SearchArgs>();
  auto* c = root.add_subcommand("search", "Search an ingested collection (BM25, plus vectors when it has a model)");
  c->add_option("query", args->query, "what to look for")->required();
  c->add_option("--collection", args->collection, "collection name")->required();
  c->add_option("-k", args->k, "number of results")->capture_default_str();
  c->add_flag("--json", args->json, "print JSON");
  c->add_option("--embedding-model", args->embedding_model, "embedding model (default: the collection's)");
  c->add_option("--reranker", args->reranker, "rerank the best 50 with this cross-encoder GGUF, then keep -k");
  c->add_flag("--bm25-only", args->bm25_only, "ignore vectors even when the collection has them");
  c->add_option("--fusion", args->fusion,
                "zscore: sum of each side's z-score normalised score (score-aware); rrf: reciprocal rank fusion")
      ->check(CLI::IsMember({"zscore", "rrf"}))
      ->capture_default_str();
  c->add_option("--rrf-k", args->rrf_k, "reciprocal rank fusion constant k (--fusion rrf)")->capture_default_str();
  c->add_option("--bm25-weight", args->bm25_weight, "weight of the BM25 side in the fusion")->capture_default_str();
  c->add_option("--vector-weight", args->vector_weight, "weight of the vector side")->capture_default_str();
  c->add_option("--data", args->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  add_vector_store_options(c, args->vector_store);
  c->callback([args] {
    finish_vector_store_options(args->vector_store);
    run(*args);
  });
});

}  // namespace
}  // namespace etna::cli
