// Qdrant payload filters: parsed once from JSON into a tree, then evaluated against a point's id
// and payload. Supported: must / should / must_not / min_should; field conditions with match
// {value | any | except | text}, range {gt, gte, lt, lte}, values_count; is_empty, is_null,
// has_id, nested {key, filter}, and filter objects nested as conditions.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/store/types.h"

namespace etna::store {

// A payload key path: "a.b", "a[].b" and "a[2].b" are understood. Arrays met on the way are
// flattened (as Qdrant does), so "tags" on ["x","y"] yields the values "x" and "y".
struct KeyPath {
  struct Step {
    std::string field;
    bool all_elements = false;        // "field[]"
    std::optional<size_t> index;      // "field[3]"
  };
  std::string text;
  std::vector<Step> steps;
  // Throws invalid_argument on an empty key or empty / unterminated segments.
  static KeyPath parse(const std::string& key);
};

struct Filter;

struct MatchValue { nlohmann::json value; };              // keyword (string), integer or bool
struct MatchAny { std::vector<nlohmann::json> values; };  // any of these
struct MatchExcept { std::vector<nlohmann::json> values; };  // none of these
// Without a text index on the key: substring of a string value. With one (words = true, set by
// bind_text_indexes): every word of `text` is a word of the value (lower-cased, split at every
// character that is not a letter or digit), as Qdrant's full-text match.
struct MatchText {
  std::string text;
  bool words = false;
};
// Bounds are numbers, or RFC 3339 date-times (datetime = true; stored strings are then compared
// as instants, see parse_datetime).
struct Range {
  std::optional<double> gt, gte, lt, lte;
  bool datetime = false;
  bool contains(double x) const;
};

struct FieldCondition {
  KeyPath key;
  std::variant<std::monostate, MatchValue, MatchAny, MatchExcept, MatchText> match;
  std::optional<Range> range;
  std::optional<Range> values_count;  // number of values at the key
};
struct IsEmptyCondition { KeyPath key; };  // missing, null or []
struct IsNullCondition { KeyPath key; };   // present and null
struct HasIdCondition { std::vector<PointId> ids; };
struct NestedCondition {                   // some element of the array at key matches filter
  KeyPath key;
  std::shared_ptr<const Filter> filter;
};

using Condition = std::variant<FieldCondition, IsEmptyCondition, IsNullCondition, HasIdCondition,
                               NestedCondition, std::shared_ptr<const Filter>>;

// must: all hold; should: at least one holds (when non-empty); must_not: none holds;
// min_should: at least min_count of its conditions hold.
struct Filter {
  std::vector<Condition> must;
  std::vector<Condition> should;
  std::vector<Condition> must_not;
  struct MinShould {
    std::vector<Condition> conditions;
    size_t min_count = 1;
  };
  std::optional<MinShould> min_should;

  // True when the point with this id and payload passes the filter.
  bool matches(const PointId& id, const nlohmann::json& payload) const;
  bool empty() const { return must.empty() && should.empty() && must_not.empty() && !min_should; }
};

// Parses a Qdrant filter object. null gives nullptr (no filter). Unknown keys, wrong types,
// empty conditions or unsupported condition kinds (geo) throw etna::Error(invalid_argument)
// with the path of the offending element, e.g. "filter.must[1].range.gt: expected a number".
std::shared_ptr<const Filter> parse_filter(const nlohmann::json& j);

// An RFC 3339 date-time ("2024-05-01", "2024-05-01T10:00:00Z", "2024-05-01 10:00:00.5+02:00";
// no zone means UTC) as seconds since 1970-01-01 UTC; nullopt when `text` is not one.
std::optional<double> parse_datetime(const std::string& text);

// The words of a text as the full-text index sees them (lower-case ASCII letters and digits;
// other bytes, including UTF-8 sequences, are kept inside words).
std::vector<std::string> text_words(const std::string& text);

// A copy of `f` whose text matches on these keys use word matching (the keys have a text index).
std::shared_ptr<const Filter> bind_text_indexes(const std::shared_ptr<const Filter>& f,
                                                const std::vector<std::string>& text_keys);

// All values found at `key` in `payload` (arrays flattened). Null values are included.
std::vector<const nlohmann::json*> values_at(const nlohmann::json& payload, const KeyPath& key);

}  // namespace etna::store
