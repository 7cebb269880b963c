// Embedder implementations: a bert encoder pooled as its file says, and a llama-family decoder
// mean-pooled over its final-normalised hidden states. Texts are tokenised up front (so a
// too-long text fails before any arithmetic), then each is evaluated at its own length, several
// at a time on worker threads; the model weights are shared read-only.
#include "etna/engine/embedder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/model/bert.h"
#include "etna/model/model.h"

namespace etna::engine {
namespace {

using tokenizer::Token;

// v / |v|, the norm summed in double as llama.cpp's embedding normalisation does. A zero
// vector stays zero.
void l2_normalize(std::vector<float>& v) {
  double sum = 0.0;
  for (float x : v) sum += static_cast<double>(x) * x;
  const double norm = std::sqrt(sum);
  if (norm <= 0.0) return;
  const float scale = static_cast<float>(1.0 / norm);
  for (float& x : v) x *= scale;
}

// One vector from n rows of `dim` floats (row t = token t) as `pooling` says.
std::vector<float> pool(const std::vector<float>& hidden, int n, int dim, model::Pooling pooling) {
  std::vector<float> out(dim, 0.0f);
  switch (pooling) {
    case model::Pooling::cls:
      std::copy_n(hidden.begin(), dim, out.begin());
      break;
    case model::Pooling::last:
      std::copy_n(hidden.begin() + static_cast<size_t>(n - 1) * dim, dim, out.begin());
      break;
    default: {  // mean
      const float inv = 1.0f / static_cast<float>(n);
      for (int t = 0; t < n; ++t)
        for (int i = 0; i < dim; ++i) out[i] += hidden[static_cast<size_t>(t) * dim + i] * inv;
    }
  }
  return out;
}

// Runs fn(i) for every i < n on up to hardware_concurrency() threads (the caller's included)
// and rethrows the first exception any of them raised.
template <typename Fn>
void parallel_for(size_t n, Fn fn) {
  const size_t n_threads = std::min<size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;  // stop handing out work
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// What both kinds share: tokenising, the length limit, threading, pooling, normalising.
class BasicEmbedder : public Embedder {
 public:
  int max_tokens() const override { return max_tokens_; }
  const tokenizer::Tokenizer& tokenizer() const override { return *tokenizer_; }
  std::string model_name() const override { return name_; }

  std::vector<std::vector<float>> embed(const std::vector<std::string>& texts, bool truncate) const override {
    std::vector<std::vector<Token>> tokens(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      tokens[i] = encode(texts[i]);
      if (static_cast<int>(tokens[i].size()) > max_tokens_) {
        if (!truncate)
          fail(ErrorKind::limit, "input {} is too long: {} tokens, the model takes at most {}", i, tokens[i].size(),
               max_tokens_);
        cut(tokens[i]);
      }
    }
    return run(tokens);
  }

  std::vector<std::vector<float>> embed_tokens(const std::vector<std::vector<Token>>& inputs) const override {
    const auto n_vocab = static_cast<Token>(tokenizer_->vocab().size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].empty()) fail(ErrorKind::invalid_argument, "input {} has no tokens", i);
      for (Token t : inputs[i])
        if (t < 0 || t >= n_vocab) fail(ErrorKind::invalid_argument, "input {}: token id {} is outside the vocabulary (0..{})", i, t, n_vocab - 1);
      if (static_cast<int>(inputs[i].size()) > max_tokens_)
        fail(ErrorKind::limit, "input {} is too long: {} tokens, the model takes at most {}", i, inputs[i].size(), max_tokens_);
    }
    return run(inputs);
  }

  std::vector<int> count_tokens(const std::vector<std::string>& texts) const override {
    std::vector<int> counts;
    counts.reserve(texts.size());
    for (const std::string& t : texts) counts.push_back(static_cast<int>(encode(t).size()));
    return counts;
  }

 protected:
  // n_tokens x dim() hidden states of one sequence (at most max_tokens() tokens, at least one).
  virtual void hidden_states(const std::vector<Token>& tokens, std::vector<float>& hidden) const = 0;

  void init(const gguf::GgufFile& file, int max_tokens, model::Pooling pooling) {
    tokenizer_ = tokenizer::Tokenizer::from_gguf(file);
    max_tokens_ = max_tokens;
    pooling_ = pooling;
    name_ = std::filesystem::path(file.path()).stem().string();
  }

 private:
  std::vector<std::vector<float>> run(const std::vector<std::vector<Token>>& tokens) const {
    std::vector<std::vector<float>> out(tokens.size());
    parallel_for(tokens.size(), [&](size_t i) {
      std::vector<float> hidden;
      hidden_states(tokens[i], hidden);
      out[i] = pool(hidden, static_cast<int>(tokens[i].size()), dim(), pooling_);
      l2_normalize(out[i]);
    });
    return out;
  }

  std::vector<Token> encode(const std::string& text) const {
    tokenizer::EncodeOptions opt;
    opt.add_special = true;
    std::vector<Token> t = tokenizer_->encode(text, opt);
    // Empty text under a vocabulary that adds no specials: nothing to pool.
    if (t.empty()) fail(ErrorKind::invalid_argument, "cannot embed an empty text with this model (it gives no tokens)");
    return t;
  }

  // Cuts `t` to max_tokens_, keeping a closing [SEP] / EOS that the tokenizer appended.
  void cut(std::vector<Token>& t) const {
    const tokenizer::Vocab& v = tokenizer_->vocab();
    const Token last = t.back();
    const bool closing = (v.kind == tokenizer::VocabKind::wpm && last == v.sep) || (v.add_eos && last == v.eos);
    if (closing && max_tokens_ >= 2) {
      t.resize(max_tokens_ - 1);
      t.push_back(last);
    } else {
      t.resize(max_tokens_);
    }
  }

  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  int max_tokens_ = 0;
  model::Pooling pooling_ = model::Pooling::mean;
  std::string name_;
};

class BertEmbedder final : public BasicEmbedder {
 public:
  explicit BertEmbedder(std::unique_ptr<model::BertModel> m) : model_(std::move(m)) {
    const model::BertConfig& c = model_->config();
    model::Pooling p = c.pooling;
    if (p == model::Pooling::rank)
      fail(ErrorKind::unsupported, "{}: this is a reranker (pooling_type rank), not an embedding model",
           model_->file().path());
    if (p == model::Pooling::none) p = model::Pooling::mean;  // one vector per text is wanted
    init(model_->file(), c.n_ctx_train, p);
  }
  int dim() const override { return model_->config().n_embd; }

 protected:
  void hidden_states(const std::vector<Token>& tokens, std::vector<float>& hidden) const override {
    model_->forward(tokens, hidden);
  }

 private:
  std::unique_ptr<model::BertModel> model_;
};

// A llama-family decoder: causal attention, mean over the hidden states after output_norm.
class DecoderEmbedder final : public BasicEmbedder {
 public:
  explicit DecoderEmbedder(std::unique_ptr<model::Model> m) : model_(std::move(m)) {
    // Decoders converted as embedders may name their pooling; plain chat models get the mean.
    const gguf::GgufFile& f = model_->file();
    const uint64_t p = f.get_uint(model_->config().arch + ".pooling_type").value_or(0);
    model::Pooling pooling = model::Pooling::mean;
    if (p == static_cast<uint64_t>(model::Pooling::cls) || p == static_cast<uint64_t>(model::Pooling::last))
      pooling = static_cast<model::Pooling>(p);
    init(f, model_->config().n_ctx_train, pooling);
  }
  int dim() const override { return model_->config().n_embd; }

 protected:
  void hidden_states(const std::vector<Token>& tokens, std::vector<float>& hidden) const override {
    const int n = static_cast<int>(tokens.size());
    auto cache = model_->make_cache(1, n);
    model::Batch batch;
    for (int i = 0; i < n; ++i) batch.add(tokens[i], i, 0, false);
    model_->forward_hidden(batch, *cache, hidden);
  }

 private:
  std::unique_ptr<model::Model> model_;
};

}  // namespace

std::unique_ptr<Embedder> Embedder::load(const std::string& path) {
  std::string arch;
  {
    auto file = gguf::GgufFile::open(path);
    arch = file->architecture();
  }
  if (arch == "bert") return std::make_unique<BertEmbedder>(model::BertModel::load(path));
  if (arch == "llama" || arch == "qwen2") return std::make_unique<DecoderEmbedder>(model::Model::load(path));
  fail(ErrorKind::unsupported, "{}: architecture '{}' cannot make embeddings (supported: bert; llama, qwen2 mean-pooled)",
       path, arch.empty() ? std::string("(none)") : arch);
}

}  // namespace etna::engine
