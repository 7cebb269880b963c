// The incremental JSON validator behind response_format json_object.
#include "etna/engine/json_constraint.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace etna::engine {
namespace {

bool valid_prefix(const std::string& s, bool object_only = false) {
  JsonPrefixValidator v(object_only);
  return v.feed(s);
}

TEST(JsonConstraint, AcceptsValidDocumentsByteByByte) {
  const char* docs[] = {
      R"({})", R"({"a":1})", R"({ "a" : [1, -2.5e+3, 0, 0.25E-1, true, false, null, "x\"y\\z\u00e9", {}, []] })",
      "{\"nested\": {\"deep\": [[[{\"k\": \"v\"}]]]}, \"s\": \"caf\xc3\xa9\"}", R"({"a":{"b":[]}})",
  };
  for (const char* d : docs) {
    JsonPrefixValidator v;
    EXPECT_TRUE(v.feed(std::string(d))) << d;
    EXPECT_TRUE(v.complete()) << d;
    EXPECT_EQ(v.closing_text(), "") << d;
  }
  JsonPrefixValidator scalar(false);
  EXPECT_TRUE(scalar.feed("123"));
  EXPECT_TRUE(scalar.complete());
}

TEST(JsonConstraint, RejectsInvalidContinuations) {
  EXPECT_FALSE(valid_prefix("[", true));  // json_object wants an object
  EXPECT_FALSE(valid_prefix("x"));
  EXPECT_FALSE(valid_prefix("{a"));
  EXPECT_FALSE(valid_prefix("{\"a\" 1"));
  EXPECT_FALSE(valid_prefix("{\"a\":1,}"));
  EXPECT_FALSE(valid_prefix("[1,]"));
  EXPECT_FALSE(valid_prefix("{\"a\":01}"));
  EXPECT_FALSE(valid_prefix("{\"a\":1.}"));
  EXPECT_FALSE(valid_prefix("{\"a\":-}"));
  EXPECT_FALSE(valid_prefix("{\"a\":tru }"));
  EXPECT_FALSE(valid_prefix("{\"a\":\"\\x\"}"));
  EXPECT_FALSE(valid_prefix("{\"a\":\"\\u12g\"}"));
  EXPECT_FALSE(valid_prefix("{\"a\":\"line\nbreak\"}"));
  EXPECT_FALSE(valid_prefix("{\"a\":1]"));
  EXPECT_FALSE(valid_prefix("{}x"));
  EXPECT_FALSE(valid_prefix("{} "));  // nothing after the document, not even spaces
  EXPECT_FALSE(valid_prefix(std::string(40, '[')));  // nesting limit
  EXPECT_FALSE(valid_prefix("{" + std::string(JsonPrefixValidator::kMaxWhitespace + 1, ' ')));
  // A rejected byte leaves the state as it was.
  JsonPrefixValidator v;
  ASSERT_TRUE(v.feed(std::string("{\"a\":")));
  EXPECT_FALSE(v.feed('}'));
  EXPECT_TRUE(v.feed(std::string("2}")));
  EXPECT_TRUE(v.complete());
}

TEST(JsonConstraint, ClosingTextCompletesEveryPrefix) {
  const std::string doc =
      R"({"name": "Lily \"the\" girl \u00e9", "age": -12.5e+2, "ok": true, "no": false, "none": null,)"
      R"( "list": [1, [2, {"x": []}], "s"], "obj": {"k": {"k2": 0}}})";
  for (size_t n = 0; n <= doc.size(); ++n) {
    JsonPrefixValidator v;
    ASSERT_TRUE(v.feed(doc.substr(0, n))) << n;
    const std::string closed = doc.substr(0, n) + v.closing_text();
    nlohmann::json parsed;
    ASSERT_NO_THROW(parsed = nlohmann::json::parse(closed)) << closed;
    EXPECT_TRUE(parsed.is_object()) << closed;
  }
}

TEST(JsonConstraint, RandomTokenWalksStayValid) {
  // Greedy-free random walks over a toy vocabulary with the mask applied always give JSON.
  const std::vector<std::string> pieces = {"{", "}", "[", "]", "\"", "a", ":", ",", " ", "1", ".", "e", "-",
                                           "true", "nul", "l", "\\", "n", "u", "0", "\"k\":", "\n", "", "x\"", "}}"};
  std::mt19937 rng(7);
  for (int walk = 0; walk < 300; ++walk) {
    JsonPrefixValidator state;
    std::string text;
    for (int step = 0; step < 60 && !state.complete(); ++step) {
      std::vector<float> logits(pieces.size(), 0.0f);
      ASSERT_GT(mask_json_logits(state, pieces, logits), 0u) << text;
      std::vector<size_t> allowed;
      for (size_t i = 0; i < logits.size(); ++i)
        if (!std::isinf(logits[i])) allowed.push_back(i);
      const auto& p = pieces[allowed[rng() % allowed.size()]];
      ASSERT_TRUE(state.feed(p));
      text += p;
    }
    text += state.closing_text();
    nlohmann::json parsed;
    ASSERT_NO_THROW(parsed = nlohmann::json::parse(text)) << text;
    EXPECT_TRUE(parsed.is_object());
  }
}

TEST(JsonConstraint, MaskKeepsOnlyContinuations) {
  const std::vector<std::string> pieces = {"{", "x", "", " {", "{\"a"};
  std::vector<float> logits(pieces.size(), 1.0f);
  JsonPrefixValidator v;
  EXPECT_EQ(mask_json_logits(v, pieces, logits), 3u);
  EXPECT_TRUE(std::isinf(logits[1]));
  EXPECT_TRUE(std::isinf(logits[2]));  // control tokens (no text) never fit
  EXPECT_EQ(logits[0], 1.0f);
}

}  // namespace
}  // namespace etna::engine
