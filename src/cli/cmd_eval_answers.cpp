// `etna eval answers`: answer quality on a collection: the chat model answers each question from
// the retrieved passages as `etna ask` does, and each answer is judged for faithfulness (its
// sentences supported by the sources they cite), citation rate, citations of a relevant file,
// citations of no source and, where the question has a reference answer, token F1.
// `etna eval generate`: a question set written from the collection itself by the chat model, for
// users with no questions of their own: each question comes with the file and passage it was
// written from, so `eval rag` and `eval answers` can score it.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "cli/model_ref.h"
#include "cli/rag_answerer.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/engine/reranker.h"
#include "etna/eval/faithfulness.h"
#include "etna/eval/results.h"
#include "etna/eval/retrieval.h"
#include "etna/rag/answer.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"
#include "etna/rag/rerank.h"
#include "etna/rag/retriever.h"

namespace etna::cli {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

struct AnswersArgs {
  std::string collection, questions, model, embedding_model, reranker, data;
  int k = 5, n_predict = 128, ctx = 0, limit = 0;
  double min_support = 0.5;
  bool json = false, no_save = false;
};

// Progress on stderr: a line rewritten in place on a terminal, plain lines at each tenth otherwise.
void progress(const char* what, size_t done, size_t total) {
  static const bool tty = isatty(2) != 0;
  if (tty) {
    std::fprintf(stderr, "\retna: %s %zu/%zu%s", what, done, total, done == total ? "\n" : "");
  } else if (done == total || (total >= 10 && done % (total / 10) == 0)) {
    std::fprintf(stderr, "etna: %s %zu/%zu\n", what, done, total);
  }
}

std::unique_ptr<engine::Embedder> collection_embedder(const fs::path& dir, const std::string& given) {
  std::string path = given;
  if (path.empty() && fs::exists(dir / "catalog.db")) {
    auto cat = rag::Catalog::open(dir / "catalog.db");
    if (auto m = cat->meta("embedding_model"); m && fs::exists(*m)) path = *m;
  }
  return path.empty() ? nullptr : engine::Embedder::load(path);
}

void answers(const AnswersArgs& a) {
  if (a.k < 1 || a.k > 100) fail(ErrorKind::invalid_argument, "-k must be in 1..100 (got {})", a.k);
  if (a.limit < 0) fail(ErrorKind::invalid_argument, "--limit must be >= 0 (got {})", a.limit);
  if (a.min_support <= 0 || a.min_support > 1)
    fail(ErrorKind::invalid_argument, "--min-support must be in (0, 1] (got {})", a.min_support);
  std::vector<eval::RagQuestion> questions = eval::read_rag_questions(a.questions);
  if (a.limit > 0 && questions.size() > static_cast<size_t>(a.limit)) questions.resize(static_cast<size_t>(a.limit));
  const fs::path data = data_dir(a.data), dir = rag::collection_dir(data, a.collection);
  if (!fs::exists(dir / "catalog.db"))
    fail(ErrorKind::not_found, "collection '{}' does not exist (ingest it first: etna ingest --collection {} PATH)",
         a.collection, a.collection);
  std::unique_ptr<engine::Embedder> embedder = collection_embedder(dir, a.embedding_model);
  auto retriever = rag::Retriever::open(dir, embedder.get());
  std::unique_ptr<engine::Reranker> reranker = a.reranker.empty() ? nullptr : engine::Reranker::load(a.reranker);
  RagAnswerer answerer(a.model, a.ctx);

  engine::SamplingParams params;
  params.temperature = 0.0f;  // as `etna ask`: greedy answers
  params.max_tokens = a.n_predict;
  params.validate();
  const int reserve = std::min(a.n_predict > 0 ? a.n_predict : answerer.n_ctx() / 4, answerer.n_ctx() / 2);

  eval::AnswerMetricsBuilder metrics;
  ordered_json details = ordered_json::array();
  const size_t k = static_cast<size_t>(a.k);
  for (size_t i = 0; i < questions.size(); ++i) {
    const eval::RagQuestion& q = questions[i];
    progress("answering", i + 1, questions.size());
    std::vector<rag::SearchHit> hits = retriever->search(q.question, reranker ? rag::rerank_candidates(k) : k);
    if (reranker) rag::rerank(hits, *reranker, q.question, k);
    const rag::AnswerPrompt prompt = answerer.answer_prompt(q.question, std::move(hits), reserve);
    const engine::GenerationResult r = answerer.generate(prompt.text, params);
    const eval::AnswerJudgement j = eval::judge_answer(r.text, prompt.sources, &q, a.min_support);
    metrics.add(q, r.text, j);
    ordered_json sentences = ordered_json::array();
    for (const auto& s : j.sentences)
      sentences.push_back({{"text", rag::sanitize_utf8(s.text)}, {"cited", s.cited}, {"support", s.support},
                           {"supported", s.supported}});
    ordered_json d = {{"id", q.id}, {"question", q.question}, {"answer", rag::sanitize_utf8(r.text)},
                      {"faithfulness", j.faithfulness()}, {"cites_relevant", j.cites_relevant},
                      {"unmatched", j.unmatched}, {"sentences", sentences}};
    if (!q.answer.empty()) d["answer_f1"] = eval::token_f1(r.text, q.answer);
    details.push_back(std::move(d));
  }
  const eval::AnswerMetrics m = metrics.result();
  ordered_json result = {{"collection", a.collection},  {"dataset", fs::path(a.questions).filename().string()},
                         {"model", fs::path(a.model).stem().string()},
                         {"mode", retriever->hybrid() ? (reranker ? "hybrid+rerank" : "hybrid") : (reranker ? "bm25+rerank" : "bm25")},
                         {"questions", m.questions},     {"faithfulness", m.faithfulness},
                         {"citation_rate", m.citation_rate}, {"cites_relevant", m.cites_relevant},
                         {"uncited", m.uncited},         {"unmatched_citations", m.unmatched},
                         {"with_reference", m.with_reference}};
  if (m.with_reference > 0) result["answer_f1"] = m.answer_f1;
  if (!a.no_save && m.questions > 0) {
    std::vector<eval::ResultRow> rows;
    eval::ResultRow row;
    row.model = result["model"];
    row.task = "rag-answers";
    row.dataset = result["dataset"];
    row.settings = ordered_json{{"collection", a.collection}, {"mode", result["mode"]}, {"k", a.k},
                                {"min_support", a.min_support}}.dump();
    for (const char* key : {"faithfulness", "citation_rate", "cites_relevant", "uncited", "answer_f1"}) {
      if (!result.contains(key)) continue;
      row.metric = key;
      row.value = result[key].get<double>();
      rows.push_back(row);
    }
    eval::ResultStore::open(eval::results_path(data))->add_run(std::move(rows));
  }
  if (a.json) {
    result["answers"] = std::move(details);
    std::cout << result.dump() << "\n";
    return;
  }
  std::cout << fmt::format("{} answers by {} on collection '{}' ({} retrieval, top {})\n", m.questions,
                           result["model"].get<std::string>(), a.collection, result["mode"].get<std::string>(), a.k);
  std::cout << fmt::format("faithfulness      {:.3f}  (answer sentences supported by a source they cite)\n", m.faithfulness);
  std::cout << fmt::format("citation rate     {:.3f}  (answer sentences citing a source)\n", m.citation_rate);
  std::cout << fmt::format("cites relevant    {:.3f}  (answers citing a file the question names)\n", m.cites_relevant);
  std::cout << fmt::format("uncited answers   {:.3f}\n", m.uncited);
  std::cout << fmt::format("unmatched cites   {}      (markers naming no source)\n", m.unmatched);
  if (m.with_reference > 0)
    std::cout << fmt::format("answer F1         {:.3f}  ({} reference answers)\n", m.answer_f1, m.with_reference);
}

struct GenerateArgs {
  std::string collection, model, out, data;
  int count = 20, n_predict = 48, ctx = 0;
  uint64_t seed = 1;
};

// The first line of a generated reply that reads as a question: "Question:" prefixes and list
// marks removed; empty when the reply holds no words.
std::string question_of(const std::string& reply) {
  size_t start = 0;
  while (start < reply.size()) {
    size_t end = reply.find('\n', start);
    if (end == std::string::npos) end = reply.size();
    std::string line = reply.substr(start, end - start);
    start = end + 1;
    for (const char* prefix : {"Question:", "question:", "Q:", "-", "*", "1."}) {
      size_t b = line.find_first_not_of(" \t");
      if (b != std::string::npos && line.compare(b, std::char_traits<char>::length(prefix), prefix) == 0)
        line = line.substr(b + std::char_traits<char>::length(prefix));
    }
    const size_t b = line.find_first_not_of(" \t\r\""), e = line.find_last_not_of(" \t\r\"");
    if (b == std::string::npos) continue;
    line = line.substr(b, e - b + 1);
    if (!rag::content_words(line).empty()) return rag::sanitize_utf8(line);
  }
  return "";
}

void generate(const GenerateArgs& a) {
  if (a.count < 1 || a.count > 10000) fail(ErrorKind::invalid_argument, "-n must be in 1..10000 (got {})", a.count);
  if (a.out.empty()) fail(ErrorKind::invalid_argument, "give the question file to write with -o FILE");
  const fs::path dir = rag::collection_dir(data_dir(a.data), a.collection);
  if (!fs::exists(dir / "catalog.db"))
    fail(ErrorKind::not_found, "collection '{}' does not exist (ingest it first: etna ingest --collection {} PATH)",
         a.collection, a.collection);
  auto catalog = rag::Catalog::open(dir / "catalog.db");
  // Passages with something to ask about: at least 8 content words.
  std::vector<int64_t> ids;
  catalog->for_each_chunk([&](int64_t id, const std::string& text) {
    if (rag::content_words(text).size() >= 8) ids.push_back(id);
  });
  if (ids.empty()) fail(ErrorKind::invalid_argument, "collection '{}' has no passage long enough to ask about", a.collection);
  std::mt19937_64 rng(a.seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  if (ids.size() > static_cast<size_t>(a.count)) ids.resize(static_cast<size_t>(a.count));
  const std::vector<rag::ChunkRow> chunks = catalog->chunks(ids);

  RagAnswerer writer(a.model, a.ctx);
  engine::SamplingParams params;
  params.temperature = 0.7f;
  params.seed = a.seed;
  params.max_tokens = a.n_predict;
  params.validate();
  const std::string tmp = a.out + ".part";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) fail(ErrorKind::io, "cannot write {}", tmp);
  int written = 0, skipped = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const rag::ChunkRow& c = chunks[i];
    progress("writing question", i + 1, chunks.size());
    std::string passage = c.text.substr(0, 1500);
    const std::string prompt = writer.render_user(
        "Here is a passage from a document.\n\n" + passage +
        "\n\nWrite one question that this passage answers. Reply with the question only.");
    const std::string q = question_of(writer.generate(prompt, params).text);
    if (q.empty()) {
      ++skipped;
      continue;
    }
    // The passage sentence that shares the most words with the question: what a hit must contain.
    size_t b = 0, e = 0;
    std::string span = rag::select_span(c.text, {q}, 200, &b, &e);
    if (e > b && e <= c.text.size()) span = c.text.substr(b, e - b);
    if (span.empty() || c.text.find(span) == std::string::npos) span.clear();
    ordered_json line = {{"id", fmt::format("gen-{}", written + 1)}, {"question", q}, {"file", c.file}};
    if (!span.empty()) line["span"] = span.substr(0, 300);
    out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    ++written;
  }
  out.close();
  if (!out) fail(ErrorKind::io, "cannot write {}", tmp);
  fs::rename(tmp, a.out);
  std::cout << fmt::format("wrote {} question(s) from collection '{}' to {}{}\n", written, a.collection, a.out,
                           skipped > 0 ? fmt::format(" ({} passage(s) skipped: the model wrote no question)", skipped) : "");
}

CommandRegistrar reg(77, [](CLI::App& root) {
  CLI::App* eval = root.get_subcommand("eval");
  auto a = std::make_shared<AnswersArgs>();
  auto* c = eval->add_subcommand(
      "answers", "Answer quality on a collection: faithfulness to the cited sources, citation rate, answer F1");
  c->add_option("--collection", a->collection, "the ingested collection")->required();
  c->add_option("--questions", a->questions,
                "JSON Lines: {\"question\", \"file\" | \"files\", \"span\"?, \"answer\"?} per line (etna eval generate "
                "writes one)")->required();
  add_model_option(c, a->model, "the chat model (.gguf) that writes the answers");
  c->add_option("-k", a->k, "passages retrieved as sources")->capture_default_str();
  c->add_option("-n,--n-predict", a->n_predict, "maximum tokens per answer")->capture_default_str();
  c->add_option("--limit", a->limit, "answer at most this many questions (0 = all)")->capture_default_str();
  c->add_option("--min-support", a->min_support,
                "share of a sentence's content words its cited source must contain to support it")
      ->capture_default_str();
  c->add_option("--ctx", a->ctx, "context size in tokens (default: the model's, at most 4096)");
  c->add_option("--embedding-model", a->embedding_model, "embedding model (default: the collection's)");
  c->add_option("--reranker", a->reranker, "rerank the best 50 passages with this cross-encoder GGUF, then keep -k");
  c->add_option("--data", a->data, "data folder (default: $ETNA_DATA or ~/.local/share/etna)");
  c->add_flag("--json", a->json, "JSON output, with every answer and its judged sentences");
  c->add_flag("--no-save", a->no_save, "do not store the result in the leaderboard");
  c->callback([a] { answers(*a); });

  auto g = std::make_shared<GenerateArgs>();
  auto* gc = eval->add_subcommand("generate", "Write a question set from a collection with the chat model (for eval rag "
                                              "and eval answers)");
  gc->add_option("--collection", g->collection, "the ingested collection")->required();
  add_model_option(gc, g->model, "the chat model (.gguf) that writes the questions");
  gc->add_option("-n,--count", g->count, "questions to write (one per sampled passage)")->capture_default_str();
  gc->add_option("-o,--out", g->out, "the JSON Lines file to write")->required();
  gc->add_option("--seed", g->seed, "passage sampling and generation seed")->capture_default_str();
  gc->add_option("--n-predict", g->n_predict, "maximum tokens per question")->capture_default_str();
  gc->add_option("--ctx", g->ctx, "context size in tokens (default: the model's, at most 4096)");
  gc->add_option("--data", g->data, "data folder (default: $ETNA_DATA or ~/.local/share/etna)");
  gc->callback([g] { generate(*g); });
});

}  // namespace
}  // namespace etna::cli
