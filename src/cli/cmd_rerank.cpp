// `etna rerank -m MODEL --query Q DOC...`: documents ordered by a cross-encoder's relevance score.
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "etna/base/error.h"
#include "etna/engine/reranker.h"

namespace etna::cli {
namespace {

struct RerankArgs {
  std::string model, query, file;
  std::vector<std::string> documents;
  int top = 0;
  bool json = false;
};

void run(const RerankArgs& a) {
  std::vector<std::string> docs = a.documents;
  if (!a.file.empty()) {
    std::ifstream in(a.file);
    if (!in) fail(ErrorKind::not_found, "cannot open {}", a.file);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) docs.push_back(line);
  }
  if (docs.empty()) fail(ErrorKind::invalid_argument, "no documents: give them as arguments or with --file (one per line)");
  if (a.top < 0) fail(ErrorKind::invalid_argument, "--top cannot be negative");
  auto r = engine::Reranker::load(a.model);
  const std::vector<float> s = r->score(a.query, docs);
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return s[x] > s[y]; });
  const size_t n = a.top > 0 ? std::min(order.size(), static_cast<size_t>(a.top)) : order.size();
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < n; ++i) out.push_back({{"index", order[i]}, {"relevance_score", s[order[i]]}, {"document", docs[order[i]]}});
    std::cout << out.dump() << "\n";
    return;
  }
  for (size_t i = 0; i < n; ++i) std::cout << fmt::format("{}. [{}] {:+.4f}  {}\n", i + 1, order[i], s[order[i]], docs[order[i]]);
}

CommandRegistrar reg(53, [](CLI::App& root) {
  auto args = std::make_shared<RerankArgs>();
  auto* c = root.add_subcommand("rerank", "Order documents by a cross-encoder's relevance to a query");
  c->add_option("-m,--model", args->model, "reranker GGUF (a bert cross-encoder, pooling_type rank)")->required();
  c->add_option("-q,--query", args->query, "the query")->required();
  c->add_option("documents", args->documents, "documents to score");
  c->add_option("-f,--file", args->file, "read documents from this file, one per line");
  c->add_option("--top", args->top, "show only the best N (0 = all)");
  c->add_flag("--json", args->json, "JSON output: [{index, relevance_score, document}] best first");
  c->callback([args] { run(*args); });
});

}  // namespace
}  // namespace etna::cli
