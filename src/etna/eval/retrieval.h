// Retrieval quality on a collection: given questions whose relevant files (or passages) are
// known, how high the retriever ranks them. Metrics as the IR literature defines them (and BEIR
// reports them): hit@k, MRR@10 (mean reciprocal rank of the first relevant result) and nDCG@10
// (Järvelin & Kekäläinen 2002, linear gains, each relevant document counted once).
#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace etna::eval {

struct RagQuestion {
  std::string id;
  std::string question;
  std::map<std::string, double> relevant;  // file (name, path or path suffix) -> graded relevance > 0
  std::string span;                        // optional: the passage must contain this text
  std::string answer;                      // optional reference answer (not used for retrieval)
};

// A retrieved passage: which file it came from and its text.
struct RankedPassage {
  std::string file;
  std::string text;
};

// Questions as JSON Lines: {"question", "file" | "files": [...], "span"?, "answer"?, "id"?}.
// Throws etna::Error (not_found, invalid_argument naming the line).
std::vector<RagQuestion> read_rag_questions(const std::string& path);

// BEIR's layout, read as-is: corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}) and
// qrels/<split>.tsv (query-id, corpus-id, score, with a header line). The corpus documents are
// written to `docs_dir` as one text file each (<_id>.txt: title, blank line, text) so the normal
// ingestion pipeline can index them; relevance then names those files. Only queries with at
// least one positive judgement are kept.
struct BeirSet {
  std::vector<RagQuestion> questions;
  size_t documents = 0;
};
BeirSet read_beir(const std::filesystem::path& dir, const std::string& split, const std::filesystem::path& docs_dir);

struct RetrievalMetrics {
  int questions = 0;
  std::map<int, double> hit_at;  // k -> share of questions with a relevant passage in the top k
  double mrr10 = 0;
  double ndcg10 = 0;
};

// The ks reported by hit_at.
inline const std::vector<int> kHitKs = {1, 3, 5, 10};

using SearchFn = std::function<std::vector<RankedPassage>(const std::string& query, size_t k)>;

// Whether a passage answers a question: its file matches one of the relevant names (equal path,
// equal file name, or a path ending in "/" + name) and, when the question has a span, its text
// contains the span (case and runs of white space ignored). Returns the grade, 0 when not.
double relevance(const RagQuestion& q, const RankedPassage& p);

// Runs every question through `search` (top 10) and averages the metrics.
RetrievalMetrics evaluate_retrieval(const std::vector<RagQuestion>& questions, const SearchFn& search,
                                    const std::function<void(int done, int total)>& on_question = {});

}  // namespace etna::eval
