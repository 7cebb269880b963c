// A payload field index (internal): value -> slots, kept exact for live points. Used to count
// and enumerate the points a field condition can match, so the planner can pick exact scan vs
// filtered graph walk and the exact scan visits only candidates.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "etna/store/filter.h"
#include "etna/store/types.h"

namespace etna::store::detail {

class PayloadIndex {
 public:
  PayloadIndex(std::string field, PayloadSchemaType type);
  const std::string& field() const { return field_; }
  PayloadSchemaType type() const { return type_; }

  void add(uint32_t slot, const nlohmann::json& payload);
  void remove(uint32_t slot, const nlohmann::json& payload);
  // Points with at least one indexed value.
  size_t points() const { return points_; }

  // When this index can answer `cond` (same field, match value/any or range), the slots that
  // may match it (sorted, unique; a superset is allowed only for mixed-type values).
  std::optional<std::vector<uint32_t>> candidates(const FieldCondition& cond) const;

 private:
  std::vector<std::string> keys_of(const nlohmann::json& payload) const;  // keyword / bool / text words
  std::vector<double> numbers_of(const nlohmann::json& payload) const;     // integer / float / datetime
  bool keyed() const;  // keyword, bool and text (words) use by_key_

  std::string field_;
  KeyPath path_;
  PayloadSchemaType type_;
  std::unordered_map<std::string, std::vector<uint32_t>> by_key_;  // unsorted slot lists
  std::multimap<double, uint32_t> by_number_;
  size_t points_ = 0;
};

}  // namespace etna::store::detail
