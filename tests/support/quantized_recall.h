// Recall@10 of a quantised collection's search against its exact search, for the store's
// quantisation tests: queries query(0) .. query(n - 1), each searched both ways.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include "etna/store/collection.h"

namespace etna::test {

inline double quantized_recall_at_10(store::Collection& c, size_t queries,
                                     const std::function<std::vector<float>(uint64_t)>& query,
                                     std::optional<double> oversampling) {
  size_t found = 0, total = 0;
  for (uint64_t q = 0; q < queries; ++q) {
    const std::vector<float> v = query(q);
    auto exact = c.search({.vector = v, .limit = 10, .exact = true});
    auto approx = c.search({.vector = v, .limit = 10, .oversampling = oversampling});
    std::set<store::PointId> want;
    for (const auto& h : exact) want.insert(h.id);
    for (const auto& h : approx) found += want.count(h.id);
    total += exact.size();
  }
  return total ? double(found) / double(total) : 0.0;
}

}  // namespace etna::test
