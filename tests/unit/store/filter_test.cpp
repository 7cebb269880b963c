// Qdrant filter parsing and evaluation: every condition kind, nested keys and arrays, clauses.
#include <gtest/gtest.h>

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "etna/base/error.h"
#include "etna/store/filter.h"

namespace etna::store {
namespace {

using nlohmann::json;

bool match(const json& filter, const json& payload, PointId id = 1) {
  auto f = parse_filter(filter);
  return f->matches(id, payload);
}

void expect_invalid(const json& filter, const std::string& fragment) {
  try {
    parse_filter(filter);
    FAIL() << "accepted malformed filter " << filter.dump();
  } catch (const Error& e) {
    EXPECT_TRUE(e.kind() == ErrorKind::invalid_argument || e.kind() == ErrorKind::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

const json kCity = {{"city", "London"}, {"count", 7}, {"price", 11.5}, {"ok", true},
                    {"tags", {"red", "green"}}, {"nothing", nullptr}, {"empty", json::array()},
                    {"address", {{"street", "Baker"}, {"no", 221}}},
                    {"country", {{"cities", {{{"name", "Paris"}, {"pop", 2}}, {{"name", "Lyon"}, {"pop", 1}}}}}},
                    {"diet", {{{"food", "meat"}, {"likes", true}}, {{"food", "veg"}, {"likes", false}}}},
                    {"text", "the quick brown fox"}};

TEST(StoreFilter, MatchValueKindsAndTypes) {
  EXPECT_TRUE(match({{"must", {{{"key", "city"}, {"match", {{"value", "London"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "city"}, {"match", {{"value", "Paris"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "count"}, {"match", {{"value", 7}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "count"}, {"match", {{"value", "7"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "ok"}, {"match", {{"value", true}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "missing"}, {"match", {{"value", 1}}}}}}}, kCity));
  // Arrays match when any element matches.
  EXPECT_TRUE(match({{"must", {{{"key", "tags"}, {"match", {{"value", "green"}}}}}}}, kCity));
}

TEST(StoreFilter, MatchAnyExceptText) {
  EXPECT_TRUE(match({{"must", {{{"key", "city"}, {"match", {{"any", {"Paris", "London"}}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "city"}, {"match", {{"any", {"Paris", "Rome"}}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "city"}, {"match", {{"except", {"Paris"}}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "city"}, {"match", {{"except", {"London"}}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "text"}, {"match", {{"text", "brown"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "text"}, {"match", {{"text", "lazy"}}}}}}}, kCity));
}

TEST(StoreFilter, RangeAndValuesCount) {
  EXPECT_TRUE(match({{"must", {{{"key", "price"}, {"range", {{"gt", 11}, {"lte", 11.5}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "price"}, {"range", {{"lt", 11.5}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "count"}, {"range", {{"gte", 7}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "city"}, {"range", {{"gte", 0}}}}}}}, kCity));  // not a number
  EXPECT_TRUE(match({{"must", {{{"key", "tags"}, {"values_count", {{"gte", 2}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "tags"}, {"values_count", {{"gt", 2}}}}}}}, kCity));
}

TEST(StoreFilter, IsEmptyIsNullHasId) {
  EXPECT_TRUE(match({{"must", {{{"is_empty", {{"key", "missing"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"is_empty", {{"key", "empty"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"is_empty", {{"key", "nothing"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"is_empty", {{"key", "tags"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"is_null", {{"key", "nothing"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"is_null", {{"key", "missing"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"is_null", {{"key", "city"}}}}}}}, kCity));
  json has = {{"must", {{{"has_id", {1, 5, "550e8400-e29b-41d4-a716-446655440000"}}}}}};
  EXPECT_TRUE(match(has, kCity, 5));
  EXPECT_FALSE(match(has, kCity, 6));
  EXPECT_TRUE(match(has, kCity, PointId::uuid("550E8400E29B41D4A716446655440000")));
}

TEST(StoreFilter, NestedKeysArraysAndNestedConditions) {
  EXPECT_TRUE(match({{"must", {{{"key", "address.street"}, {"match", {{"value", "Baker"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "country.cities[].name"}, {"match", {{"value", "Lyon"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "country.cities.name"}, {"match", {{"value", "Lyon"}}}}}}}, kCity));
  EXPECT_TRUE(match({{"must", {{{"key", "country.cities[0].name"}, {"match", {{"value", "Paris"}}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"key", "country.cities[0].name"}, {"match", {{"value", "Lyon"}}}}}}}, kCity));
  // Flattened keys mix elements; a nested condition requires one element to satisfy all of it.
  json flat = {{"must", {{{"key", "diet[].food"}, {"match", {{"value", "meat"}}}},
                         {{"key", "diet[].likes"}, {"match", {{"value", false}}}}}}};
  EXPECT_TRUE(match(flat, kCity));
  json nested = {{"must", {{{"nested", {{"key", "diet"}, {"filter", {{"must", {{{"key", "food"}, {"match", {{"value", "meat"}}}},
                                                                                 {{"key", "likes"}, {"match", {{"value", false}}}}}}}}}}}}}};
  EXPECT_FALSE(match(nested, kCity));
  nested["must"][0]["nested"]["filter"]["must"][1]["match"]["value"] = true;
  EXPECT_TRUE(match(nested, kCity));
}

TEST(StoreFilter, Clauses) {
  json london = {{"key", "city"}, {"match", {{"value", "London"}}}};
  json paris = {{"key", "city"}, {"match", {{"value", "Paris"}}}};
  json seven = {{"key", "count"}, {"match", {{"value", 7}}}};
  EXPECT_TRUE(match({{"should", {paris, london}}}, kCity));
  EXPECT_FALSE(match({{"should", {paris}}}, kCity));
  EXPECT_FALSE(match({{"must_not", {london}}}, kCity));
  EXPECT_TRUE(match({{"must_not", {paris}}}, kCity));
  EXPECT_TRUE(match({{"must", london}, {"must_not", paris}}, kCity));  // single objects are accepted
  EXPECT_TRUE(match({{"min_should", {{"conditions", {london, seven, paris}}, {"min_count", 2}}}}, kCity));
  EXPECT_FALSE(match({{"min_should", {{"conditions", {london, paris}}, {"min_count", 2}}}}, kCity));
  // A filter object used as a condition.
  EXPECT_TRUE(match({{"must", {{{"should", {paris, seven}}}}}}, kCity));
  EXPECT_FALSE(match({{"must", {{{"must_not", {seven}}}}}}, kCity));
  EXPECT_TRUE(match(json::object(), kCity));
  EXPECT_EQ(parse_filter(nullptr), nullptr);
}

TEST(StoreFilter, MalformedFiltersAreRejectedWithTheirPath) {
  expect_invalid(json::array(), "expected a filter object");
  expect_invalid({{"must", 5}}, "filter.must");
  expect_invalid({{"mustt", json::array()}}, "unknown filter clause 'mustt'");
  expect_invalid({{"must", {json::object()}}}, "filter.must[0]");
  expect_invalid({{"must", {{{"key", "a"}}}}}, "needs match, range or values_count");
  expect_invalid({{"must", {{{"key", "a"}, {"range", {{"gt", "x"}}}}}}}, "filter.must[0].range.gt: expected a number");
  expect_invalid({{"must", {{{"key", "a"}, {"match", {{"value", 1}, {"any", {1}}}}}}}}, "exactly one of");
  expect_invalid({{"must", {{{"key", "a"}, {"match", {{"value", 1.5}}}}}}}, "string, integer or boolean");
  expect_invalid({{"must", {{{"key", ""}, {"match", {{"value", 1}}}}}}}, "must not be empty");
  expect_invalid({{"must", {{{"key", "a..b"}, {"match", {{"value", 1}}}}}}}, "empty segment");
  expect_invalid({{"must", {{{"has_id", {-1}}}}}}, "has_id[0]");
  expect_invalid({{"must", {{{"has_id", {"not-a-uuid"}}}}}}, "has_id[0]");
  expect_invalid({{"should", {{{"nested", {{"key", "a"}}}}}}}, "filter.should[0].nested");
  expect_invalid({{"must", {{{"geo_radius", json::object()}}}}}, "geo");
  expect_invalid({{"must", {{{"frobnicate", 1}}}}}, "unknown condition 'frobnicate'");
  expect_invalid({{"min_should", {{"conditions", json::array()}}}}, "min_should");
}

}  // namespace
}  // namespace etna::store
