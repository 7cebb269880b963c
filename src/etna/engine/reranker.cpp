#include "etna/engine/reranker.h"

#include <filesystem>

#include "etna/base/error.h"

namespace etna::engine {

std::unique_ptr<Reranker> Reranker::load(const std::string& path) {
  std::unique_ptr<Reranker> r(new Reranker());
  r->model_ = model::BertModel::load(path);
  if (r->model_->config().pooling != model::Pooling::rank || r->model_->config().n_cls_out < 1)
    fail(ErrorKind::unsupported, "{} is not a reranker (pooling_type is {}, expected rank with a classification head)",
         path, model::pooling_name(r->model_->config().pooling));
  r->tok_ = tokenizer::Tokenizer::from_gguf(r->model_->file());
  const tokenizer::Vocab& v = r->tok_->vocab();
  if ((v.bos == tokenizer::kNoToken && v.cls == tokenizer::kNoToken) || (v.eos == tokenizer::kNoToken && v.sep == tokenizer::kNoToken))
    fail(ErrorKind::unsupported, "{}: the vocabulary has no BOS/EOS ([CLS]/[SEP]) tokens to lay out a pair", path);
  r->name_ = std::filesystem::path(path).stem().string();
  return r;
}

std::vector<int32_t> Reranker::pair_tokens(const std::string& query, const std::string& document) const {
  tokenizer::EncodeOptions plain;
  plain.add_special = false;
  const tokenizer::Vocab& v = tok_->vocab();
  const std::vector<int32_t> q = tok_->encode(query, plain);
  std::vector<int32_t> d = tok_->encode(document, plain);
  // WordPiece vocabularies name [CLS]/[SEP] rather than BOS/EOS.
  const int32_t bos = v.bos != tokenizer::kNoToken ? v.bos : v.cls;
  const int32_t eos = v.eos != tokenizer::kNoToken ? v.eos : v.sep;
  const int32_t sep = v.sep != tokenizer::kNoToken ? v.sep : v.eos;
  const size_t limit = static_cast<size_t>(model_->config().n_ctx_train);
  const size_t fixed = q.size() + 4;
  if (fixed >= limit)
    fail(ErrorKind::limit, "the query is too long for the reranker ({} tokens; the model reads {})", q.size(), limit);
  if (fixed + d.size() > limit) d.resize(limit - fixed);
  std::vector<int32_t> out;
  out.reserve(fixed + d.size());
  out.push_back(bos);
  out.insert(out.end(), q.begin(), q.end());
  out.push_back(eos);
  out.push_back(sep);
  out.insert(out.end(), d.begin(), d.end());
  out.push_back(eos);
  return out;
}

std::vector<float> Reranker::score(const std::string& query, const std::vector<std::string>& documents) const {
  if (query.empty()) fail(ErrorKind::invalid_argument, "the query is empty");
  std::vector<float> out;
  out.reserve(documents.size());
  for (const std::string& d : documents) out.push_back(model_->classify(pair_tokens(query, d))[0]);
  return out;
}

int Reranker::count_tokens(const std::string& query, const std::vector<std::string>& documents) const {
  int n = 0;
  for (const std::string& d : documents) n += static_cast<int>(pair_tokens(query, d).size());
  return n;
}

}  // namespace etna::engine
