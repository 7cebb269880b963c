// Cross-encoder reranking: a bert model with a classification head (`pooling_type` rank, as
// llama.cpp loads rerankers such as bge-reranker or ms-marco MiniLM) reads a query and a document
// together and gives one relevance score; higher is more relevant. The pair is laid out as the
// peer's server lays it out: BOS query EOS SEP document EOS (for WordPiece vocabularies:
// [CLS] query [SEP] [SEP] document [SEP]). The document is cut to fit the model's input.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "etna/model/bert.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::engine {

class Reranker {
 public:
  // Loads a cross-encoder GGUF. Throws etna::Error (unsupported) naming the file when it is not
  // one (no classification head, or pooling other than rank).
  static std::unique_ptr<Reranker> load(const std::string& path);

  const std::string& model_name() const { return name_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tok_; }

  // The token ids the model reads for (query, document).
  std::vector<int32_t> pair_tokens(const std::string& query, const std::string& document) const;

  // The relevance score of each document for the query, in input order. Throws etna::Error
  // (invalid_argument) for an empty query, (limit) when the query alone does not fit.
  std::vector<float> score(const std::string& query, const std::vector<std::string>& documents) const;

  // Tokens read for the last score() call's inputs (usage reporting): the sum of pair lengths.
  int count_tokens(const std::string& query, const std::vector<std::string>& documents) const;

 private:
  Reranker() = default;
  std::unique_ptr<model::BertModel> model_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  std::string name_;
};

}  // namespace etna::engine
