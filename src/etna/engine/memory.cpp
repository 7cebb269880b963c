#include "etna/engine/memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "etna/base/error.h"

namespace etna::engine {

MemoryEstimate estimate_memory(const model::Model& model, int n_ctx, model::KvType cache_type, int n_batch) {
  if (n_ctx < 1) fail(ErrorKind::invalid_argument, "the context size must be at least 1 (got {})", n_ctx);
  if (n_batch < 1) fail(ErrorKind::invalid_argument, "the batch size must be at least 1 (got {})", n_batch);
  const model::ModelConfig& c = model.config();
  MemoryEstimate m;
  m.n_ctx = n_ctx;
  m.n_batch = n_batch = std::min(n_batch, n_ctx);
  for (const auto& t : model.file().tensors()) m.weights += t.n_bytes;
  m.kv_per_token = model::kv_bytes_per_token(c, cache_type);
  // A sliding-window layer keeps a ring of min(n_ctx, window + batch) cells, as KvCache does.
  const uint64_t per_layer = m.kv_per_token / std::max(1, c.n_layer);
  for (int l = 0; l < c.n_layer; ++l)
    m.kv_total += per_layer * static_cast<uint64_t>(c.is_swa(l) ? std::min(n_ctx, c.sliding_window + n_batch) : n_ctx);
  // Per batch token: residual stream, normed copy and projection output (3 x n_embd), query and
  // attention output (2 x n_head x head_dim), new K and V rows, gate and up (2 x n_ff), and the
  // activations converted for the matmul (at most 4 bytes per element of the widest input).
  const uint64_t E = c.n_embd, Q = static_cast<uint64_t>(c.n_head) * c.head_dim, KV = c.n_embd_kv(), F = c.n_ff;
  const uint64_t per_token = 3 * E + 2 * Q + 2 * KV + 2 * F + std::max(E, F);
  // Plus attention scores of every head over the context, one logits row, one decoded K/V row.
  const uint64_t fixed = static_cast<uint64_t>(c.n_head) * n_ctx + c.n_vocab + 2 * KV;
  m.scratch = sizeof(float) * (per_token * static_cast<uint64_t>(n_batch) + fixed);
  return m;
}

uint64_t weight_bytes_per_token(const model::Model& model) {
  const model::ModelConfig& c = model.config();
  uint64_t bytes = 0;
  for (const auto& t : model.file().tensors()) {
    if (t.name == "token_embd.weight" && !c.tied_output) continue;  // one row is read, not the matrix
    const bool experts = t.name.size() > 12 && t.name.compare(t.name.size() - 12, 12, "_exps.weight") == 0;
    // A token's router chooses expert_used_count distinct experts: only their slices are read.
    bytes += experts && c.n_expert > 0 ? t.n_bytes / c.n_expert * c.n_expert_used : t.n_bytes;
  }
  return bytes;
}

ResidentMemory resident_memory() {
  ResidentMemory r;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    // Lines look like "VmRSS:\t  123456 kB".
    auto value_kb = [&](const char* key) -> uint64_t {
      std::istringstream ss(line.substr(std::char_traits<char>::length(key)));
      uint64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    };
    if (line.rfind("VmRSS:", 0) == 0) r.current = value_kb("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) r.peak = value_kb("VmHWM:");
  }
  return r;
}

}  // namespace etna::engine
