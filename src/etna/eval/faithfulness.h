// Answer quality over a collection: whether each sentence of a generated answer cites a source
// that supports it, and how close the answer is to a reference answer.
//
// Support is lexical, so it needs no judge model and runs anywhere: a sentence is supported by a
// cited source when at least `min_support` of the sentence's content words (rag::content_words)
// occur in that source's text: the content-word recall of the sentence in its evidence, the
// lexical baseline of the faithfulness metrics of the RAG-evaluation literature (RAGAS, Es et al.
// 2023, judge statements with a model instead). It catches answers that cite nothing, cite the
// wrong passage or say what no cited passage says; it cannot catch a paraphrase that inverts a
// meaning with the same words. Answer similarity is SQuAD's token F1 (Rajpurkar et al. 2016).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "etna/eval/retrieval.h"
#include "etna/rag/retriever.h"

namespace etna::eval {

struct SentenceJudgement {
  std::string text;
  std::vector<int> cited;  // marker numbers that name one of the sources
  double support = 0;      // best content-word recall over the cited sources (0 when none)
  bool supported = false;  // support >= min_support
};

struct AnswerJudgement {
  std::vector<SentenceJudgement> sentences;  // those with at least one content word
  int cited = 0;                             // sentences citing a source
  int supported = 0;                         // sentences supported by a cited source
  int unmatched = 0;                         // distinct marker numbers naming no source
  bool cites_relevant = false;               // some cited source is a relevant file (when known)
  // supported / sentences (0 for an answer without content words).
  double faithfulness() const {
    return sentences.empty() ? 0.0 : static_cast<double>(supported) / static_cast<double>(sentences.size());
  }
};

// Judges `answer`, whose markers [n] name sources[n-1]. `question` (optional) decides
// cites_relevant through relevance().
AnswerJudgement judge_answer(std::string_view answer, const std::vector<rag::SearchHit>& sources,
                             const RagQuestion* question = nullptr, double min_support = 0.5);

// SQuAD's token F1 between an answer and a reference: lowercased, punctuation and the articles
// a/an/the removed, then the harmonic mean of token precision and recall (bag of words).
double token_f1(std::string_view prediction, std::string_view reference);

struct AnswerMetrics {
  int questions = 0;
  double faithfulness = 0;    // mean over answers of supported / sentences
  double citation_rate = 0;   // mean over answers of cited / sentences
  double cites_relevant = 0;  // share of answers citing a relevant file
  double uncited = 0;         // share of answers that cite no source at all
  int unmatched = 0;          // markers naming no source, over all answers
  int with_reference = 0;     // questions with a reference answer
  double answer_f1 = 0;       // mean token F1 over those
};

// Accumulates judgements (and, when the question has a reference answer, its F1) into means.
class AnswerMetricsBuilder {
 public:
  void add(const RagQuestion& q, const std::string& answer, const AnswerJudgement& j);
  AnswerMetrics result() const;

 private:
  AnswerMetrics sum_;
};

}  // namespace etna::eval
