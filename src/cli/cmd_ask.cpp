// `etna ask --collection NAME "question" -m MODEL.gguf`: retrieves the best chunks of an ingested
// collection, asks the model to answer from them citing [n], streams the answer, then lists each
// cited source (file, page, lines and the quoted span) and warns about citations of no source.
// --json prints {answer, citations, retrieved, unmatched} instead.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "cli/data_dir.h"
#include "cli/rag_answerer.h"
#include "cli/sampling_options.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/engine/generator.h"
#include "etna/rag/answer.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"
#include "etna/rag/loader.h"
#include "etna/rag/rerank.h"
#include "etna/rag/retriever.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;

struct AskArgs {
  std::string collection;
  std::string question;
  std::string model;
  std::string embedding_model;
  std::string reranker;
  std::string data;
  int k = 5;
  int n_predict = 256;
  int ctx = 0;
  bool json = false;
  engine::SamplingParams sampling;
  rag::VectorStoreOptions vector_store;
};

void write_out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  std::string out;
  for (char c : s)
    if (!(c == ' ' && !out.empty() && out.back() == ' ')) out += c;
  return out;
}

void ask(const AskArgs& a) {
  if (a.model.empty())
    fail(ErrorKind::invalid_argument,
         "etna ask needs a chat model to write the answer: pass -m MODEL.gguf (use `etna search` for retrieval alone)");
  if (a.question.find_first_not_of(" \t\r\n") == std::string::npos)
    fail(ErrorKind::invalid_argument, "the question is empty");
  if (a.k < 1 || a.k > 100) fail(ErrorKind::invalid_argument, "-k must be in 1..100 (got {})", a.k);
  if (a.ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", a.ctx);
  engine::SamplingParams params = a.sampling;
  params.max_tokens = a.n_predict;
  params.validate();

  // On a terminal, stderr says what happens before the first token: retrieval, loading, the prompt.
  const bool progress = ::isatty(STDERR_FILENO) == 1;
  bool line_open = false;
  auto status = [&](const std::string& s) {
    if (!progress) return;
    std::fprintf(stderr, "\r\033[K%s", s.c_str());
    std::fflush(stderr);
    line_open = true;
  };
  auto clear_status = [&] {
    if (line_open) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    line_open = false;
  };
  // Retrieval first: a missing collection is reported before the (slower) model load.
  status(fmt::format("etna: searching collection '{}' ...", a.collection));
  const fs::path dir = rag::collection_dir(data_dir(a.data), a.collection);
  std::string emb_path = a.embedding_model;
  if (emb_path.empty() && fs::exists(dir / "catalog.db")) {
    auto cat = rag::Catalog::open(dir / "catalog.db");
    if (auto m = cat->meta("embedding_model"); m && fs::exists(*m)) emb_path = *m;
  }
  std::unique_ptr<engine::Embedder> embedder;
  if (!emb_path.empty()) embedder = engine::Embedder::load(emb_path);
  rag::RetrieverOptions ropt;
  ropt.vector_store = a.vector_store;
  auto retriever = rag::Retriever::open(dir, embedder.get(), ropt);
  std::unique_ptr<engine::Reranker> reranker = a.reranker.empty() ? nullptr : engine::Reranker::load(a.reranker);
  const size_t k = static_cast<size_t>(a.k);
  std::vector<rag::SearchHit> hits = retriever->search(a.question, reranker ? rag::rerank_candidates(k) : k);
  if (reranker) rag::rerank(hits, *reranker, a.question, k);
  status(fmt::format("etna: {} passage(s) retrieved ({}); loading {} ...", hits.size(),
                     retriever->hybrid() ? "BM25 + vectors" : "BM25", fs::path(a.model).filename().string()));
  if (hits.empty() && !a.json) {
    clear_status();
    std::fprintf(stderr, "etna: warning: no passage of collection '%s' matches the question\n", a.collection.c_str());
  }

  RagAnswerer answerer(a.model, a.ctx);  // the model, its tokenizer and chat template
  const int n_ctx = answerer.n_ctx();
  const int reserve = params.max_tokens > 0 ? std::min(params.max_tokens, n_ctx / 2) : n_ctx / 4;
  const rag::AnswerPrompt prompt = answerer.answer_prompt(a.question, std::move(hits), reserve);
  if (prompt.dropped > 0 && !a.json) {
    clear_status();
    std::fprintf(stderr, "etna: note: %zu retrieved passage(s) left out to fit the %d-token context\n", prompt.dropped, n_ctx);
  }

  status("etna: reading the prompt ...");
  if (progress)
    answerer.set_prompt_progress([&](int done, int total) {
      status(fmt::format("etna: reading the prompt: {}/{} tokens", done, total));
    });
  bool first = true;
  engine::PieceCallback stream = [&](std::string_view piece) {
    if (first) {
      clear_status();
      first = false;
    }
    if (!a.json) write_out(piece);
    return true;
  };
  const engine::GenerationResult r = answerer.generate(prompt.text, params, stream);
  clear_status();
  const rag::ResolvedCitations cites = rag::resolve_citations(r.text, prompt.sources);

  if (a.json) {
    nlohmann::json retrieved = nlohmann::json::array(), citations = nlohmann::json::array();
    for (size_t i = 0; i < prompt.sources.size(); ++i)
      retrieved.push_back(rag::source_json(prompt.sources[i], static_cast<int>(i + 1)));
    for (const auto& c : cites.citations) citations.push_back(rag::citation_json(c));
    nlohmann::json j = {{"answer", rag::sanitize_utf8(r.text)},
                        {"citations", citations},
                        {"retrieved", retrieved},
                        {"unmatched", cites.unmatched},
                        {"mode", retriever->hybrid() ? "hybrid" : "bm25"},
                        {"dropped", prompt.dropped},
                        {"finish_reason", engine::finish_reason_name(r.finish)},
                        {"prompt_tokens", answerer.last_prompt_tokens()},
                        {"seed", r.seed}};
    write_out(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return;
  }
  write_out("\n");
  if (!cites.citations.empty()) {
    write_out("\nSources:\n");
    for (const auto& c : cites.citations) {
      write_out(fmt::format("[{}] {}\n    \"{}\"\n", c.n,
                            rag::source_location(rag::sanitize_utf8(c.chunk.file), c.chunk.page, c.line_start, c.line_end),
                            one_line(rag::sanitize_utf8(c.text))));
    }
  } else if (!prompt.sources.empty()) {
    write_out("\nThe answer cites no source. Retrieved:\n");
    for (size_t i = 0; i < prompt.sources.size(); ++i) {
      const auto& c = prompt.sources[i].chunk;
      write_out(fmt::format("[{}] {}\n", i + 1,
                            rag::source_location(rag::sanitize_utf8(c.file), c.page, c.line_start, c.line_end)));
    }
  }
  for (int n : cites.unmatched)
    std::fprintf(stderr, "etna: warning: the answer cites [%d], which is not one of the %zu sources\n", n,
                 prompt.sources.size());
}

CommandRegistrar reg(52, [](CLI::App& root) {
  auto a = std::make_shared<AskArgs>();
  a->sampling.temperature = 0.0f;  // answers from documents: greedy unless asked otherwise
  auto* c = root.add_subcommand("ask", "Answer a question from an ingested collection, citing its sources");
  c->add_option("question", a->question, "the question")->required();
  c->add_option("--collection", a->collection, "collection name")->required();
  add_model_option(c, a->model, "the chat model (.gguf) that writes the answer");
  c->add_option("-k", a->k, "passages retrieved as sources")->capture_default_str();
  c->add_flag("--json", a->json, "print {answer, citations, retrieved, unmatched} as JSON instead of streaming");
  c->add_option("--embedding-model", a->embedding_model, "embedding model (default: the collection's)");
  c->add_option("--reranker", a->reranker, "rerank the best 50 passages with this cross-encoder GGUF, then keep -k");
  c->add_option("--data", a->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_option("-n,--n-predict", a->n_predict, "maximum tokens of the answer; -1 = until the context is full")
      ->capture_default_str();
  c->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)");
  add_sampling_options(c, a->sampling);
  add_threads_option(c);
  add_vector_store_options(c, a->vector_store);
  c->callback([a] {
    finish_vector_store_options(a->vector_store);
    ask(*a);
  });
});

}  // namespace
}  // namespace etna::cli
