#include <algorithm>
#include <cstring>

#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

KvCache::KvCache(const ModelConfig& config, int n_seq, int n_ctx, KvType type, int max_batch)
    : n_seq_(n_seq), n_ctx_(n_ctx), n_layer_(config.n_layer), n_embd_kv_(config.n_embd_kv()), max_batch_(max_batch),
      type_(type) {
  if (n_seq < 1) fail(ErrorKind::invalid_argument, "a KV cache needs at least one sequence (got {})", n_seq);
  if (n_ctx < 1) fail(ErrorKind::invalid_argument, "the context size must be at least 1 (got {})", n_ctx);
  if (max_batch < 1) fail(ErrorKind::invalid_argument, "the batch size must be at least 1 (got {})", max_batch);
  kv_bytes_per_token(config, type);  // throws when the type's blocks do not divide a row
  row_bytes_ = tensor::row_bytes(kv_ggml_type(type), n_embd_kv_);
  cells_.resize(n_layer_);
  window_.resize(n_layer_);
  layer_offset_.resize(n_layer_);
  for (int l = 0; l < n_layer_; ++l) {
    window_[l] = config.is_swa(l) ? config.sliding_window : 0;
    // A window layer reads at most `window` cells back from each query, and a batch writes up
    // to max_batch new cells before its queries read: that many cells are all it ever needs.
    const int64_t ring = static_cast<int64_t>(window_[l]) + max_batch;
    cells_[l] = window_[l] > 0 && ring < n_ctx ? static_cast<int>(ring) : n_ctx;
    has_ring_ = has_ring_ || cells_[l] < n_ctx;
    layer_offset_[l] = seq_bytes_;
    seq_bytes_ += static_cast<size_t>(cells_[l]) * row_bytes_;
  }
  const size_t n = static_cast<size_t>(n_seq) * seq_bytes_;
  // Zeroed so that nothing uninitialised can ever be read, even through a caller's bug (zero
  // bytes decode to 0.0 in every supported type).
  k_.assign(n, 0);
  v_.assign(n, 0);
  length_.assign(n_seq, 0);
}

void KvCache::store(uint8_t* row, const float* src) {
  if (type_ == KvType::f32)
    std::memcpy(row, src, row_bytes_);
  else
    tensor::quantize_row(kv_ggml_type(type_), src, row, n_embd_kv_);
}

void KvCache::check_seq(int seq) const {
  if (seq < 0 || seq >= n_seq_)
    fail(ErrorKind::invalid_argument, "sequence {} is out of range (the cache holds {} sequences)", seq, n_seq_);
}

int KvCache::length(int seq) const {
  check_seq(seq);
  return length_[seq];
}

void KvCache::clear(int seq) {
  check_seq(seq);
  length_[seq] = 0;
}

int KvCache::reusable(int seq, int n) const {
  check_seq(seq);
  n = std::max(0, std::min(n, length_[seq]));
  // A ring holds positions length - cells .. length - 1; continuing at n needs n - window .. n - 1.
  for (int l = 0; l < n_layer_; ++l)
    if (cells_[l] < n_ctx_ && std::max(0, n - window_[l]) < length_[seq] - cells_[l]) return 0;
  return n;
}

void KvCache::truncate(int seq, int n) {
  check_seq(seq);
  if (n < 0 || n > length_[seq])
    fail(ErrorKind::invalid_argument, "cannot truncate sequence {} of length {} to {} cells", seq, length_[seq], n);
  if (reusable(seq, n) != n)
    fail(ErrorKind::invalid_argument, "cannot truncate sequence {} of length {} to {} cells: its sliding-window layers "
         "no longer hold the cells before position {}", seq, length_[seq], n, n);
  length_[seq] = n;
}

void KvCache::copy(int src, int dst, int n) {
  check_seq(src);
  check_seq(dst);
  if (n < 0) n = length_[src];
  if (n > length_[src])
    fail(ErrorKind::invalid_argument, "cannot copy {} cells of sequence {} which holds {}", n, src, length_[src]);
  if (reusable(src, n) != n)
    fail(ErrorKind::invalid_argument, "cannot copy {} cells of sequence {}: its sliding-window layers no longer hold "
         "them", n, src);
  if (src != dst) {
    for (int l = 0; l < n_layer_; ++l) {
      // A ring is copied whole: its positions map to the same cells in both sequences.
      const size_t bytes = static_cast<size_t>(cells_[l] < n_ctx_ ? cells_[l] : n) * row_bytes_;
      std::copy_n(k_.data() + offset(src, l, 0), bytes, k_.data() + offset(dst, l, 0));
      std::copy_n(v_.data() + offset(src, l, 0), bytes, v_.data() + offset(dst, l, 0));
    }
  }
  length_[dst] = n;
}

void KvCache::mark_filled(int seq, int pos) {
  check_seq(seq);
  length_[seq] = std::max(length_[seq], pos + 1);
}

}  // namespace etna::model
