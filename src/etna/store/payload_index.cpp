#include "etna/store/payload_index.h"

#include <algorithm>
#include <iterator>

namespace etna::store::detail {

PayloadIndex::PayloadIndex(std::string field, PayloadSchemaType type)
    : field_(std::move(field)), path_(KeyPath::parse(field_)), type_(type) {}

std::vector<std::string> PayloadIndex::keys_of(const nlohmann::json& payload) const {
  std::vector<std::string> out;
  for (const auto* v : values_at(payload, path_)) {
    if (type_ == PayloadSchemaType::Keyword && v->is_string()) out.push_back(v->get<std::string>());
    if (type_ == PayloadSchemaType::Bool && v->is_boolean()) out.push_back(v->get<bool>() ? "true" : "false");
    if (type_ == PayloadSchemaType::Text && v->is_string())
      for (auto& w : text_words(v->get<std::string>())) out.push_back(std::move(w));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<double> PayloadIndex::numbers_of(const nlohmann::json& payload) const {
  std::vector<double> out;
  for (const auto* v : values_at(payload, path_)) {
    if (type_ == PayloadSchemaType::Datetime) {
      if (!v->is_string()) continue;
      if (auto t = parse_datetime(v->get<std::string>())) out.push_back(*t);
      continue;
    }
    if (!v->is_number()) continue;
    if (type_ == PayloadSchemaType::Integer && v->is_number_float()) continue;
    out.push_back(v->get<double>());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool PayloadIndex::keyed() const {
  return type_ == PayloadSchemaType::Keyword || type_ == PayloadSchemaType::Bool || type_ == PayloadSchemaType::Text;
}

void PayloadIndex::add(uint32_t slot, const nlohmann::json& payload) {
  bool any = false;
  if (keyed()) {
    for (auto& k : keys_of(payload)) by_key_[k].push_back(slot), any = true;
  } else {
    for (double x : numbers_of(payload)) by_number_.emplace(x, slot), any = true;
  }
  points_ += any;
}

void PayloadIndex::remove(uint32_t slot, const nlohmann::json& payload) {
  bool any = false;
  if (keyed()) {
    for (auto& k : keys_of(payload)) {
      auto it = by_key_.find(k);
      if (it == by_key_.end()) continue;
      auto& v = it->second;
      auto pos = std::find(v.begin(), v.end(), slot);
      if (pos != v.end()) *pos = v.back(), v.pop_back(), any = true;
      if (v.empty()) by_key_.erase(it);
    }
  } else {
    for (double x : numbers_of(payload)) {
      auto [lo, hi] = by_number_.equal_range(x);
      for (auto it = lo; it != hi; ++it)
        if (it->second == slot) {
          by_number_.erase(it);
          any = true;
          break;
        }
    }
  }
  points_ -= any && points_ > 0;
}

std::optional<std::vector<uint32_t>> PayloadIndex::candidates(const FieldCondition& cond) const {
  if (cond.key.text != field_ || cond.values_count) return std::nullopt;
  std::vector<uint32_t> out;
  auto add_key = [&](const nlohmann::json& v) {
    std::string k;
    if (type_ == PayloadSchemaType::Keyword && v.is_string()) k = v.get<std::string>();
    else if (type_ == PayloadSchemaType::Bool && v.is_boolean()) k = v.get<bool>() ? "true" : "false";
    else return false;
    auto it = by_key_.find(k);
    if (it != by_key_.end()) out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  };
  auto add_number = [&](const nlohmann::json& v) {
    if (!v.is_number()) return false;
    auto [lo, hi] = by_number_.equal_range(v.get<double>());
    for (auto it = lo; it != hi; ++it) out.push_back(it->second);
    return true;
  };
  bool keyed = this->keyed();
  if (type_ == PayloadSchemaType::Text) {
    // Word match: the points holding every word of the query (intersection of the word lists).
    auto* m = std::get_if<MatchText>(&cond.match);
    if (!m || !m->words || cond.range) return std::nullopt;
    auto words = text_words(m->text);
    if (words.empty()) return std::nullopt;
    bool first = true;
    for (const auto& w : words) {
      auto it = by_key_.find(w);
      std::vector<uint32_t> cur;
      if (it != by_key_.end()) cur = it->second;
      std::sort(cur.begin(), cur.end());
      if (first) {
        out = std::move(cur);
        first = false;
      } else {
        std::vector<uint32_t> both;
        std::set_intersection(out.begin(), out.end(), cur.begin(), cur.end(), std::back_inserter(both));
        out = std::move(both);
      }
    }
    return out;
  }
  if (cond.range) {
    if (keyed || !std::holds_alternative<std::monostate>(cond.match)) return std::nullopt;
    if (cond.range->datetime != (type_ == PayloadSchemaType::Datetime)) return std::nullopt;
    auto lo = cond.range->gte ? by_number_.lower_bound(*cond.range->gte)
              : cond.range->gt ? by_number_.upper_bound(*cond.range->gt)
                               : by_number_.begin();
    for (auto it = lo; it != by_number_.end(); ++it) {
      if ((cond.range->lt && !(it->first < *cond.range->lt)) || (cond.range->lte && !(it->first <= *cond.range->lte)))
        break;
      out.push_back(it->second);
    }
  } else if (type_ == PayloadSchemaType::Datetime) {
    return std::nullopt;
  } else if (auto* m = std::get_if<MatchValue>(&cond.match)) {
    if (!(keyed ? add_key(m->value) : add_number(m->value))) return std::nullopt;
  } else if (auto* m = std::get_if<MatchAny>(&cond.match)) {
    for (const auto& v : m->values)
      if (!(keyed ? add_key(v) : add_number(v))) return std::nullopt;
  } else {
    return std::nullopt;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace etna::store::detail
