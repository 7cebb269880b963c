#include <algorithm>

#include "etna/base/error.h"
#include "etna/model/model.h"

namespace etna::model {

KvCache::KvCache(const ModelConfig& config, int n_seq, int n_ctx)
    : n_seq_(n_seq), n_ctx_(n_ctx), n_layer_(config.n_layer), n_embd_kv_(config.n_embd_kv()) {
  if (n_seq < 1) fail(ErrorKind::invalid_argument, "a KV cache needs at least one sequence (got {})", n_seq);
  if (n_ctx < 1) fail(ErrorKind::invalid_argument, "the context size must be at least 1 (got {})", n_ctx);
  const size_t n = static_cast<size_t>(n_seq) * n_layer_ * n_ctx * n_embd_kv_;
  // Zeroed so that nothing uninitialised can ever be read, even through a caller's bug.
  k_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
  length_.assign(n_seq, 0);
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
    const size_t row = static_cast<size_t>(n) * n_embd_kv_;
    for (int l = 0; l < n_layer_; ++l) {
      std::copy_n(k(src, l, 0), row, k(dst, l, 0));
      std::copy_n(v(src, l, 0), row, v(dst, l, 0));
    }
  }
  length_[dst] = n;
}

void KvCache::mark_filled(int seq, int pos) {
  check_seq(seq);
  length_[seq] = std::max(length_[seq], pos + 1);
}

}  // namespace etna::model
