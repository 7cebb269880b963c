#include <algorithm>
#include <cstring>

#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

KvCache::KvCache(const ModelConfig& config, int n_seq, int n_ctx, KvType type)
    : n_seq_(n_seq), n_ctx_(n_ctx), n_layer_(config.n_layer), n_embd_kv_(config.n_embd_kv()), type_(type) {
  if (n_seq < 1) fail(ErrorKind::invalid_argument, "a KV cache needs at least one sequence (got {})", n_seq);
  if (n_ctx < 1) fail(ErrorKind::invalid_argument, "the context size must be at least 1 (got {})", n_ctx);
  kv_bytes_per_token(config, type);  // throws when the type's blocks do not divide a row
  row_bytes_ = tensor::row_bytes(kv_ggml_type(type), n_embd_kv_);
  const size_t n = static_cast<size_t>(n_seq) * n_layer_ * n_ctx * row_bytes_;
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

void KvCache::truncate(int seq, int n) {
  check_seq(seq);
  if (n < 0 || n > length_[seq])
    fail(ErrorKind::invalid_argument, "cannot truncate sequence {} of length {} to {} cells", seq, length_[seq], n);
  length_[seq] = n;
}

void KvCache::copy(int src, int dst, int n) {
  check_seq(src);
  check_seq(dst);
  if (n < 0) n = length_[src];
  if (n > length_[src])
    fail(ErrorKind::invalid_argument, "cannot copy {} cells of sequence {} which holds {}", n, src, length_[src]);
  if (src != dst) {
    const size_t bytes = static_cast<size_t>(n) * row_bytes_;
    for (int l = 0; l < n_layer_; ++l) {
      std::copy_n(k_row(src, l, 0), bytes, k_row(dst, l, 0));
      std::copy_n(v_row(src, l, 0), bytes, v_row(dst, l, 0));
    }
  }
  length_[dst] = n;
}

void KvCache::mark_filled(int seq, int pos) {
  check_seq(seq);
  length_[seq] = std::max(length_[seq], pos + 1);
}

}  // namespace etna::model
