#include "etna/eval/faithfulness.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "etna/rag/answer.h"

namespace etna::eval {
namespace {

// SQuAD's normalisation: lowercase, punctuation dropped, articles dropped, white space collapsed.
std::vector<std::string> squad_tokens(std::string_view s) {
  std::vector<std::string> out;
  std::string w;
  auto flush = [&] {
    if (!w.empty() && w != "a" && w != "an" && w != "the") out.push_back(w);
    w.clear();
  };
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isspace(c)) {
      flush();
    } else if (c < 0x80 && std::ispunct(c)) {
      continue;  // removed, not a separator ("don't" -> "dont")
    } else {
      w += static_cast<char>(std::tolower(c));
    }
  }
  flush();
  return out;
}

}  // namespace

AnswerJudgement judge_answer(std::string_view answer, const std::vector<rag::SearchHit>& sources,
                             const RagQuestion* question, double min_support) {
  AnswerJudgement j;
  std::set<int> unmatched;
  std::vector<std::set<std::string>> source_words(sources.size());
  std::vector<bool> have_words(sources.size(), false);
  for (const std::string& sentence : rag::answer_sentences(answer)) {
    const std::set<std::string> words = rag::content_words(sentence);
    SentenceJudgement s;
    s.text = sentence;
    for (const rag::CitationMarker& m : rag::parse_citation_markers(sentence)) {
      if (m.n < 1 || static_cast<size_t>(m.n) > sources.size()) {
        unmatched.insert(m.n);
        continue;
      }
      if (std::find(s.cited.begin(), s.cited.end(), m.n) == s.cited.end()) s.cited.push_back(m.n);
    }
    if (words.empty()) {
      // A line of markers only ("[1]") cites the sentence before it.
      if (!s.cited.empty() && !j.sentences.empty()) {
        SentenceJudgement& prev = j.sentences.back();
        for (int n : s.cited)
          if (std::find(prev.cited.begin(), prev.cited.end(), n) == prev.cited.end()) prev.cited.push_back(n);
        // Re-judged below with the added sources.
        s = std::move(prev);
        j.sentences.pop_back();
      } else {
        continue;
      }
    }
    const std::set<std::string> judged = rag::content_words(s.text);
    for (int n : s.cited) {
      const size_t i = static_cast<size_t>(n - 1);
      if (!have_words[i]) {
        source_words[i] = rag::content_words(sources[i].chunk.text);
        have_words[i] = true;
      }
      size_t found = 0;
      for (const std::string& w : judged) found += source_words[i].count(w);
      s.support = std::max(s.support, judged.empty() ? 0.0 : static_cast<double>(found) / judged.size());
      if (question && relevance(*question, {sources[i].chunk.file, sources[i].chunk.text}) > 0) j.cites_relevant = true;
    }
    s.supported = !s.cited.empty() && s.support >= min_support;
    j.sentences.push_back(std::move(s));
  }
  for (const SentenceJudgement& s : j.sentences) {
    j.cited += s.cited.empty() ? 0 : 1;
    j.supported += s.supported ? 1 : 0;
  }
  j.unmatched = static_cast<int>(unmatched.size());
  return j;
}

double token_f1(std::string_view prediction, std::string_view reference) {
  const std::vector<std::string> p = squad_tokens(prediction), r = squad_tokens(reference);
  if (p.empty() || r.empty()) return p.empty() && r.empty() ? 1.0 : 0.0;
  std::map<std::string, int> counts;
  for (const auto& t : r) ++counts[t];
  int common = 0;
  for (const auto& t : p)
    if (auto it = counts.find(t); it != counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  if (common == 0) return 0.0;
  const double precision = static_cast<double>(common) / p.size(), recall = static_cast<double>(common) / r.size();
  return 2 * precision * recall / (precision + recall);
}

void AnswerMetricsBuilder::add(const RagQuestion& q, const std::string& answer, const AnswerJudgement& j) {
  ++sum_.questions;
  sum_.faithfulness += j.faithfulness();
  sum_.citation_rate += j.sentences.empty() ? 0.0 : static_cast<double>(j.cited) / j.sentences.size();
  sum_.cites_relevant += j.cites_relevant ? 1 : 0;
  sum_.uncited += j.cited == 0 ? 1 : 0;
  sum_.unmatched += j.unmatched;
  if (!q.answer.empty()) {
    ++sum_.with_reference;
    sum_.answer_f1 += token_f1(answer, q.answer);
  }
}

AnswerMetrics AnswerMetricsBuilder::result() const {
  AnswerMetrics m = sum_;
  if (m.questions > 0) {
    const double n = m.questions;
    m.faithfulness /= n;
    m.citation_rate /= n;
    m.cites_relevant /= n;
    m.uncited /= n;
  }
  if (m.with_reference > 0) m.answer_f1 /= m.with_reference;
  return m;
}

}  // namespace etna::eval
