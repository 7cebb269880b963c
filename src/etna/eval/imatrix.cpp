#include "etna/eval/imatrix.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "etna/base/error.h"
#include "etna/eval/perplexity.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::eval {
namespace {

using gguf::Value;
using gguf::ValueType;

constexpr int kMinRows = 16;  // the peer ignores smaller dense products

// Column sums of squares per weight matrix, found by where its data lies in the model file.
class Collector : public model::Model::LinearObserver {
 public:
  explicit Collector(const gguf::GgufFile& file) {
    for (const auto& t : file.tensors()) {
      if (t.name.rfind("blk.", 0) != 0 || t.dims.size() < 2) continue;
      uint64_t n_mat = 1;
      for (size_t d = 2; d < t.dims.size(); ++d) n_mat *= t.dims[d];
      ranges_.push_back(Range{t.data, t.data + t.n_bytes, &t, n_mat, t.n_bytes / n_mat});
    }
    std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  }

  void observe(const tensor::Matrix& w, const float* x, int n_tokens) override {
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), w.data, [](const uint8_t* p, const Range& r) { return p < r.begin; });
    if (it == ranges_.begin()) return;
    const Range& r = *--it;
    if (w.data >= r.end) return;  // not a block matrix of the file (e.g. the output matrix)
    const uint64_t mat = static_cast<uint64_t>(w.data - r.begin) / r.mat_bytes;
    if (r.n_mat == 1 && n_tokens < kMinRows) return;  // experts: every routed token counts
    Stats& s = stats_[r.info->name];
    const uint64_t cols = r.info->dims[0];
    if (s.sums.empty()) {
      s.cols = cols;
      s.sums.assign(cols * r.n_mat, 0.0);
      s.counts.assign(r.n_mat, 0);
    }
    if (static_cast<uint64_t>(w.cols) != cols)
      fail(ErrorKind::internal, "imatrix: a product with '{}' has rows of {} values, the tensor {}", r.info->name, w.cols, cols);
    double* sum = &s.sums[mat * cols];
    for (int t = 0; t < n_tokens; ++t) {
      const float* row = x + static_cast<size_t>(t) * cols;
      for (uint64_t j = 0; j < cols; ++j) sum[j] += static_cast<double>(row[j]) * row[j];
    }
    s.counts[mat] += n_tokens;
  }

  struct Stats {
    uint64_t cols = 0;
    std::vector<double> sums;     // cols per matrix, matrix after matrix
    std::vector<int64_t> counts;  // rows seen per matrix
  };
  const std::map<std::string, Stats>& stats() const { return stats_; }

 private:
  struct Range {
    const uint8_t* begin;
    const uint8_t* end;
    const gguf::TensorInfo* info;
    uint64_t n_mat, mat_bytes;
  };
  std::vector<Range> ranges_;
  std::map<std::string, Stats> stats_;
};

// Clears the observer however the collection ends.
struct ObserverScope {
  explicit ObserverScope(model::Model::LinearObserver* o) { model::Model::set_linear_observer(o); }
  ~ObserverScope() { model::Model::set_linear_observer(nullptr); }
  ObserverScope(const ObserverScope&) = delete;
  ObserverScope& operator=(const ObserverScope&) = delete;
};

}  // namespace

ImatrixSummary compute_imatrix(const std::string& model_path, const std::string& text_path, const std::string& out_path,
                               const ImatrixOptions& options, const std::function<void(int, int)>& on_chunk) {
  model::Model::set_repack(false);  // products must read the file's own tensor data
  auto model = model::Model::load(model_path);
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> tokens = perplexity_tokens(*tok, read_text_file(text_path));
  const tokenizer::Vocab& vocab = tok->vocab();
  const int32_t bos = vocab.add_bos && vocab.bos != tokenizer::kNoToken ? vocab.bos : kNoBos;

  Collector collector(model->file());
  PerplexityOptions po;
  po.n_ctx = options.n_ctx;
  po.n_batch = options.n_ctx;
  po.max_chunks = options.max_chunks;
  PerplexityResult r;
  {
    ObserverScope scope(&collector);
    r = perplexity(*model, tokens, bos, po, [&](const ChunkScore& s, int n) {
      if (on_chunk) on_chunk(s.index + 1, n);
    });
  }

  gguf::GgufWriter w;
  w.set("general.type", Value::string("imatrix"));
  w.set("imatrix.datasets", Value::array(ValueType::STRING, {Value::string(text_path)}));
  w.set("imatrix.chunk_count", Value::unsigned_int(ValueType::UINT32, static_cast<uint64_t>(r.n_chunks)));
  w.set("imatrix.chunk_size", Value::unsigned_int(ValueType::UINT32, static_cast<uint64_t>(options.n_ctx)));
  std::vector<std::vector<float>> data;  // kept alive until written
  data.reserve(2 * collector.stats().size());
  for (const auto& [name, s] : collector.stats()) {
    std::vector<float> sums(s.sums.begin(), s.sums.end()), counts(s.counts.begin(), s.counts.end());
    const uint64_t n_mat = s.counts.size();
    data.push_back(std::move(sums));
    w.add_tensor(name + ".in_sum2", {s.cols, n_mat}, gguf::GgmlType::F32, data.back().data());
    data.push_back(std::move(counts));
    w.add_tensor(name + ".counts", {1, n_mat}, gguf::GgmlType::F32, data.back().data());
  }
  w.write(out_path);
  ImatrixSummary out;
  out.chunks = r.n_chunks;
  out.entries = collector.stats().size();
  out.ppl = r.ppl();
  return out;
}

}  // namespace etna::eval
