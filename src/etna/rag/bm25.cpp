#include "etna/rag/bm25.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <unordered_set>

namespace etna::rag {
namespace {

const std::unordered_set<std::string_view>& stop_words() {
  static const std::unordered_set<std::string_view> words = {
      "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "has", "have", "how",
      "i", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "what",
      "when", "where", "which", "who", "why", "with", "you", "your", "can", "did", "there", "their", "these",
      "those", "them", "they", "we", "our", "into", "about", "than", "then", "so", "if", "not", "no"};
  return words;
}

}  // namespace

std::vector<std::string> bm25_terms(std::string_view text) {
  std::vector<std::string> terms;
  std::string cur;
  auto emit = [&] {
    if (cur.empty()) return;
    if (!stop_words().count(cur)) {
      if (cur.size() > 3 && cur.back() == 's' && cur[cur.size() - 2] != 's') cur.pop_back();
      terms.push_back(cur);
    }
    cur.clear();
  };
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
      cur += ch;
    } else if (c >= 'A' && c <= 'Z') {
      cur += static_cast<char>(c - 'A' + 'a');
    } else {
      emit();
    }
    if (cur.size() > 64) emit();  // pathological "words" (base64 blobs) are cut
  }
  emit();
  return terms;
}

double leader_fraction(std::string_view text) {
  size_t in_runs = 0, visible = 0;
  for (size_t i = 0; i < text.size();) {
    // A run of at least four dots, each optionally followed by one space (". . . ." or "....").
    size_t j = i, dots = 0;
    while (j < text.size() && text[j] == '.') {
      ++dots, ++j;
      if (j < text.size() && text[j] == ' ' && j + 1 < text.size() && text[j + 1] == '.') ++j;
    }
    if (dots >= 4) {
      in_runs += dots;
      visible += dots;
      i = j;
      continue;
    }
    if (dots == 0) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (!std::isspace(c)) ++visible;
      ++i;
    } else {
      visible += dots;
      i = j;
    }
  }
  return visible ? static_cast<double>(in_runs) / static_cast<double>(visible) : 0.0;
}

void Bm25Index::add(int64_t id, std::string_view text) {
  remove(id);
  // Table-of-contents and index pages (entry, dot leaders, page number) hold every heading's
  // words in little space and would outrank the passages they point to.
  const double prior = std::max(0.2, 1.0 - 2.0 * leader_fraction(text));
  if (prior < 1.0) doc_prior_[id] = prior;
  const std::vector<std::string> terms = bm25_terms(text);
  std::unordered_map<std::string, uint32_t> tf;
  for (const auto& t : terms) ++tf[t];
  std::vector<std::string> distinct;
  distinct.reserve(tf.size());
  for (auto& [t, n] : tf) {
    postings_[t][id] = n;
    distinct.push_back(t);
  }
  doc_terms_[id] = std::move(distinct);
  doc_len_[id] = static_cast<uint32_t>(terms.size());
  total_len_ += terms.size();
}

void Bm25Index::remove(int64_t id) {
  auto it = doc_len_.find(id);
  if (it == doc_len_.end()) return;
  total_len_ -= it->second;
  doc_len_.erase(it);
  for (const auto& t : doc_terms_[id]) {
    auto p = postings_.find(t);
    if (p == postings_.end()) continue;
    p->second.erase(id);
    if (p->second.empty()) postings_.erase(p);
  }
  doc_terms_.erase(id);
  doc_prior_.erase(id);
}

Bm25Index::Scores Bm25Index::score_all(std::string_view query) const {
  Scores out;
  if (doc_len_.empty()) return out;
  std::vector<std::string> q = bm25_terms(query);
  std::sort(q.begin(), q.end());
  q.erase(std::unique(q.begin(), q.end()), q.end());
  const double n_docs = static_cast<double>(doc_len_.size());
  const double avgdl = std::max(1.0, static_cast<double>(total_len_) / n_docs);
  std::unordered_map<int64_t, double>& scores = out.by_id;
  for (const auto& t : q) {
    auto p = postings_.find(t);
    if (p == postings_.end()) continue;
    const double df = static_cast<double>(p->second.size());
    const double idf = std::log(1.0 + (n_docs - df + 0.5) / (df + 0.5));
    for (const auto& [id, tf] : p->second) {
      const double dl = doc_len_.at(id);
      const double norm = params_.k1 * (1.0 - params_.b + params_.b * dl / avgdl);
      scores[id] += idf * (tf * (params_.k1 + 1.0)) / (tf + norm);
    }
  }
  for (const auto& [id, prior] : doc_prior_)
    if (auto it = scores.find(id); it != scores.end()) it->second *= prior;
  double sum = 0, sum_sq = 0;
  for (const auto& [id, s] : scores) {
    sum += s;
    sum_sq += s * s;
  }
  out.mean = sum / n_docs;
  out.stddev = std::sqrt(std::max(0.0, sum_sq / n_docs - out.mean * out.mean));
  return out;
}

std::vector<Bm25Index::Hit> Bm25Index::top(const Scores& scores, size_t limit) {
  if (limit == 0) return {};
  std::vector<Hit> hits;
  hits.reserve(scores.by_id.size());
  for (const auto& [id, s] : scores.by_id) hits.push_back({id, s});
  auto better = [](const Hit& a, const Hit& b) { return a.score != b.score ? a.score > b.score : a.id < b.id; };
  if (hits.size() > limit) {
    std::partial_sort(hits.begin(), hits.begin() + static_cast<long>(limit), hits.end(), better);
    hits.resize(limit);
  } else {
    std::sort(hits.begin(), hits.end(), better);
  }
  return hits;
}

std::vector<Bm25Index::Hit> Bm25Index::search(std::string_view query, size_t limit) const {
  if (doc_len_.empty() || limit == 0) return {};
  return top(score_all(query), limit);
}

}  // namespace etna::rag
