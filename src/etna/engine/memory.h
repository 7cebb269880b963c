// What running a model costs in memory: the weights (mapped from the file), the KV cache per
// token and for a whole context, and the scratch of one forward pass; and what this process
// actually holds (resident set), to check the estimate against.
#pragma once
#include <cstdint>

#include "etna/model/model.h"

namespace etna::engine {

struct MemoryEstimate {
  uint64_t weights = 0;       // bytes of every tensor in the file
  uint64_t kv_per_token = 0;  // K and V of one position, all layers, in the cache's type
  uint64_t kv_total = 0;      // kv_per_token * n_ctx (one sequence), less what window layers' rings omit
  uint64_t scratch = 0;       // activations of one forward pass over n_batch tokens (upper estimate)
  int n_ctx = 0;
  int n_batch = 0;
  uint64_t total() const { return weights + kv_total + scratch; }
};

// The estimate for one sequence of n_ctx positions evaluated n_batch tokens at a time.
// Throws etna::Error (invalid_argument) for n_ctx < 1 or n_batch < 1.
MemoryEstimate estimate_memory(const model::Model& model, int n_ctx, model::KvType cache_type, int n_batch = 512);

// Bytes of weights read to generate one token: every tensor except the token embedding (of
// which one row is read), which counts only when it doubles as the output matrix; of stacked
// experts (`*_exps` tensors) only the expert_used_count experts a token is routed to.
uint64_t weight_bytes_per_token(const model::Model& model);

// This process's resident set now and at its peak (VmRSS, VmHWM of /proc/self/status), in
// bytes; zeros where /proc is unavailable.
struct ResidentMemory {
  uint64_t current = 0;
  uint64_t peak = 0;
};
ResidentMemory resident_memory();

}  // namespace etna::engine
