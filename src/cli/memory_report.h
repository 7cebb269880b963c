// `etna info --memory MODEL [--ctx N] [--cache-type T] [--json]`: what running the model will
// need (weights, KV cache per token and for the context, scratch, total).
#pragma once
#include <string>

namespace etna::cli {

// Prints the memory estimate for `path` as text, or one JSON object. n_ctx <= 0: the model's
// training context. Throws etna::Error for a bad file, context or cache type.
void print_memory_report(const std::string& path, int n_ctx, const std::string& cache_type, bool json);

}  // namespace etna::cli
