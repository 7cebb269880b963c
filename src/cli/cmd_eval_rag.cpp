// `etna eval rag`: retrieval quality of a collection (hit@k, MRR@10, nDCG@10) for BM25, vectors
// and hybrid side by side, from the user's own questions or a BEIR-layout benchmark.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/eval/results.h"
#include "etna/eval/retrieval.h"
#include "etna/engine/reranker.h"
#include "etna/rag/ingest.h"
#include "etna/rag/rerank.h"
#include "etna/rag/retriever.h"

namespace etna::cli {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

struct RagArgs {
  std::string collection;
  std::string questions;
  std::string beir;
  std::string split = "test";
  std::string embedding_model;
  std::string reranker;
  std::string data;
  bool json = false;
  bool no_save = false;
};

struct Mode {
  const char* name;
  bool vectors;
  double bm25_weight, vector_weight;
  bool rerank;
  rag::Fusion fusion = rag::Fusion::zscore;
};

void run(const RagArgs& a) {
  if (a.questions.empty() == a.beir.empty())
    fail(ErrorKind::invalid_argument, "give either --questions FILE (with --collection) or --beir DIR");
  const fs::path data = data_dir(a.data);
  std::unique_ptr<engine::Embedder> embedder;
  std::string model = a.embedding_model;

  std::vector<eval::RagQuestion> questions;
  std::string collection = a.collection, dataset;
  if (!a.beir.empty()) {
    const std::string name = fs::path(a.beir).lexically_normal().filename().string();
    if (collection.empty()) collection = "beir-" + name;
    const fs::path docs = data / "eval" / "beir" / name / "docs";
    eval::BeirSet set = eval::read_beir(a.beir, a.split, docs);
    questions = std::move(set.questions);
    dataset = name + "/" + a.split;
    if (!model.empty()) embedder = engine::Embedder::load(model);
    rag::IngestOptions io;
    io.embedder = embedder.get();
    io.embedder_path = model;
    std::fprintf(stderr, "etna: indexing %zu BEIR documents into collection '%s'\n", set.documents, collection.c_str());
    rag::ingest(rag::collection_dir(data, collection), {docs}, io);
  } else {
    if (collection.empty()) fail(ErrorKind::invalid_argument, "--questions needs --collection NAME");
    questions = eval::read_rag_questions(a.questions);
    dataset = fs::path(a.questions).filename().string();
  }
  const fs::path dir = rag::collection_dir(data, collection);
  if (!embedder) {
    if (model.empty() && fs::exists(dir / "catalog.db")) {
      auto cat = rag::Catalog::open(dir / "catalog.db");
      if (auto m = cat->meta("embedding_model"); m && fs::exists(*m)) model = *m;
    }
    if (!model.empty()) embedder = engine::Embedder::load(model);
  }

  std::unique_ptr<engine::Reranker> reranker = a.reranker.empty() ? nullptr : engine::Reranker::load(a.reranker);
  // "hybrid-rrf" is reciprocal rank fusion, kept to show what score-aware fusion changes.
  const Mode modes[] = {{"bm25", false, 1, 0, false},
                        {"vectors", true, 0, 1, false},
                        {"hybrid", true, 1, 1, false},
                        {"hybrid-rrf", true, 1, 1, false, rag::Fusion::rrf},
                        {"hybrid+rerank", true, 1, 1, true}};
  ordered_json out = {{"collection", collection}, {"dataset", dataset}, {"questions", questions.size()},
                      {"modes", ordered_json::array()}};
  std::vector<eval::ResultRow> rows;
  for (const Mode& m : modes) {
    rag::RetrieverOptions opt;
    opt.bm25_weight = m.bm25_weight;
    opt.vector_weight = m.vector_weight;
    opt.fusion = m.fusion;
    auto retriever = rag::Retriever::open(dir, m.vectors ? embedder.get() : nullptr, opt);
    if (m.rerank && !reranker) continue;
    // Without vectors, "hybrid" is BM25 again; the rerank stage then reranks BM25's candidates.
    if (m.vectors && !retriever->hybrid() && !m.rerank) continue;
    auto search = [&](const std::string& q, size_t k) {
      auto hits = retriever->search(q, m.rerank ? rag::rerank_candidates(k) : k);
      if (m.rerank) rag::rerank(hits, *reranker, q, k);
      std::vector<eval::RankedPassage> ranked;
      for (const auto& h : hits) ranked.push_back({h.chunk.file, h.chunk.text});
      return ranked;
    };
    const eval::RetrievalMetrics r = eval::evaluate_retrieval(questions, search);
    ordered_json j = {{"mode", m.name}, {"mrr@10", r.mrr10}, {"ndcg@10", r.ndcg10}};
    for (const auto& [k, v] : r.hit_at) j["hit@" + std::to_string(k)] = v;
    out["modes"].push_back(j);
    eval::ResultRow row;
    row.model = model.empty() ? "bm25" : fs::path(model).stem().string();
    row.task = "rag";
    row.dataset = dataset;
    row.settings = ordered_json{{"collection", collection}, {"mode", m.name}}.dump();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "mode") continue;
      row.metric = std::string(m.name) + " " + it.key();
      row.value = it.value().get<double>();
      rows.push_back(row);
    }
  }
  if (!a.no_save) eval::ResultStore::open(eval::results_path(data))->add_run(std::move(rows));
  if (a.json) {
    std::cout << out.dump() << "\n";
    return;
  }
  std::cout << fmt::format("{} questions on collection '{}'{}\n", questions.size(), collection,
                           embedder ? "" : " (no embedding model: BM25 only)");
  std::cout << fmt::format("{:<14} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}\n", "mode", "hit@1", "hit@3", "hit@5", "hit@10",
                           "MRR@10", "nDCG@10");
  for (const auto& j : out["modes"])
    std::cout << fmt::format("{:<14} {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>8.3f} {:>8.3f}\n", j["mode"].get<std::string>(),
                             j["hit@1"].get<double>(), j["hit@3"].get<double>(), j["hit@5"].get<double>(),
                             j["hit@10"].get<double>(), j["mrr@10"].get<double>(), j["ndcg@10"].get<double>());
}

CommandRegistrar reg(76, [](CLI::App& root) {
  CLI::App* eval = root.get_subcommand("eval");
  auto args = std::make_shared<RagArgs>();
  auto* c = eval->add_subcommand("rag", "Retrieval quality of a collection: hit@k, MRR@10, nDCG@10 per retrieval mode");
  c->add_option("--collection", args->collection, "the ingested collection (default for --beir: beir-<folder>)");
  c->add_option("--questions", args->questions,
                "JSON Lines: {\"question\", \"file\" | \"files\", \"span\"?, \"answer\"?} per line");
  c->add_option("--beir", args->beir, "a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)");
  c->add_option("--split", args->split, "the BEIR qrels split")->capture_default_str();
  c->add_option("--embedding-model", args->embedding_model, "embedding model (default: the collection's)");
  c->add_option("--reranker", args->reranker, "also measure hybrid + rerank with this cross-encoder GGUF");
  c->add_option("--data", args->data, "data folder (default: $ETNA_DATA or ~/.local/share/etna)");
  c->add_flag("--json", args->json, "JSON output");
  c->add_flag("--no-save", args->no_save, "do not store the result in the leaderboard");
  c->callback([args] { run(*args); });
});

}  // namespace
}  // namespace etna::cli
