#include "etna/engine/lookup.h"

#include <algorithm>

namespace etna::engine {

std::vector<Token> lookup_draft(std::span<const Token> history, int n_draft, int max_ngram, int* matched) {
  const size_t h = history.size();
  if (matched) *matched = 0;
  if (n_draft <= 0 || h < 2) return {};
  for (int n = std::min<int>(max_ngram, static_cast<int>(h) - 1); n >= 1; --n) {
    const auto pattern = history.subspan(h - n);
    // Most recent occurrence first: the nearest repetition is the likeliest to continue alike.
    // Start i ends at h - n - 1 so the match is earlier than the pattern itself and at least one
    // token follows it.
    for (size_t i = h - n; i-- > 0;) {
      if (!std::equal(pattern.begin(), pattern.end(), history.begin() + static_cast<std::ptrdiff_t>(i))) continue;
      if (matched) *matched = n;
      const size_t from = i + n, to = std::min(h, from + static_cast<size_t>(n_draft));
      return {history.begin() + static_cast<std::ptrdiff_t>(from), history.begin() + static_cast<std::ptrdiff_t>(to)};
    }
  }
  return {};
}

}  // namespace etna::engine
