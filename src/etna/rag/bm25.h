// Okapi BM25 (Robertson & Sparck Jones; Robertson & Zaragoza 2009) over an in-memory inverted
// index: score(q, d) = sum over query terms t of IDF(t) * tf(t,d) * (k1 + 1) /
// (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)), with IDF(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))
// (the non-negative form). Terms: lower-cased ASCII letters/digits and any non-ASCII UTF-8
// bytes, a small English stop-word list removed, a plural "s" stripped. A document made largely
// of dot leaders (a table of contents or an index page: "Pressure . . . . 12") has its score
// multiplied by max(0.2, 1 - 2 f), f = leader_fraction(text), so the pages it points to rank first.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace etna::rag {

struct Bm25Params {
  double k1 = 1.2;
  double b = 0.75;
};

// The analysed terms of a text, in order (duplicates kept).
std::vector<std::string> bm25_terms(std::string_view text);

// Share of the visible characters of `text` that are dot leaders (runs of 4 or more dots,
// spaced or not).
double leader_fraction(std::string_view text);

class Bm25Index {
 public:
  explicit Bm25Index(Bm25Params params = {}) : params_(params) {}

  // Adds (or replaces) document `id`.
  void add(int64_t id, std::string_view text);
  // Removes document `id`; a no-op when absent.
  void remove(int64_t id);
  size_t size() const { return doc_len_.size(); }

  struct Hit {
    int64_t id;
    double score;
  };
  // The `limit` best-scoring documents containing at least one query term, best first (ties by
  // ascending id).
  std::vector<Hit> search(std::string_view query, size_t limit) const;

  // Every document's score for the query: the non-zero ones by id, and the mean and standard
  // deviation over all size() documents (zeros included), for score normalisation.
  struct Scores {
    std::unordered_map<int64_t, double> by_id;
    double mean = 0, stddev = 0;
  };
  Scores score_all(std::string_view query) const;
  // The `limit` best of `scores`, best first (ties by ascending id).
  static std::vector<Hit> top(const Scores& scores, size_t limit);

 private:
  Bm25Params params_;
  std::unordered_map<std::string, std::unordered_map<int64_t, uint32_t>> postings_;  // term -> doc -> tf
  std::unordered_map<int64_t, uint32_t> doc_len_;
  std::unordered_map<int64_t, std::vector<std::string>> doc_terms_;  // distinct terms, for remove
  std::unordered_map<int64_t, double> doc_prior_;                   // < 1 for leader-filled documents
  uint64_t total_len_ = 0;
};

}  // namespace etna::rag
