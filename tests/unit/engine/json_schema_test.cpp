// JSON Schema -> grammar: documents valid under the schema are accepted, invalid ones refused,
// unsupported keywords named, hostile schemas (deep nesting, huge enums) refused with bounded work.
#include "etna/engine/json_schema.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/engine/grammar.h"

namespace etna::engine {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const Grammar> compile(const std::string& schema, bool strict = false) {
  JsonSchemaOptions o;
  o.strict = strict;
  return Grammar::parse(json_schema_to_gbnf(ojson::parse(schema), o));
}

bool ok(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  GrammarState s(g);
  return s.feed(text) && s.accepting();
}

std::string error_of(const std::string& schema) {
  try {
    compile(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, AnyValueAndObjects) {
  auto any = Grammar::parse(json_any_gbnf(false));
  for (const char* d : {"1", "-0.5e+10", "\"a\\\"b\\u00e9\"", "[1, [2], {}]", "{\"a\": {\"b\": null}}", "true"})
    EXPECT_TRUE(ok(any, d)) << d;
  for (const char* d : {"01", "[1,]", "{\"a\"}", "tru", "\"\x01\""}) EXPECT_FALSE(ok(any, d)) << d;
  auto obj = Grammar::parse(json_any_gbnf(true));
  EXPECT_TRUE(ok(obj, "{\n  \"k\": [1, 2]\n}"));
  EXPECT_FALSE(ok(obj, "[1]"));
}

TEST(JsonSchema, PropertiesRequiredAndAdditional) {
  auto g = compile(R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
    "tags":{"type":"array","items":{"type":"string"}}},"required":["name"],"additionalProperties":false})");
  EXPECT_TRUE(ok(g, R"({"name": "Ann"})"));
  EXPECT_TRUE(ok(g, R"({"name": "Ann", "age": 31})"));
  EXPECT_TRUE(ok(g, R"({"name":"Ann","tags":["a","b"]})"));
  EXPECT_TRUE(ok(g, R"({"name": "Ann", "age": 3, "tags": []})"));
  EXPECT_FALSE(ok(g, R"({"age": 31})"));                 // name is required
  EXPECT_FALSE(ok(g, R"({"name": "Ann", "x": 1})"));     // no additional properties
  EXPECT_FALSE(ok(g, R"({"name": "Ann", "age": 3.5})")); // integer
  EXPECT_FALSE(ok(g, R"({"name": "Ann",})"));
  // Without additionalProperties: false (and not strict), other keys may follow.
  auto open = compile(R"({"type":"object","properties":{"a":{"type":"boolean"}}})");
  EXPECT_TRUE(ok(open, R"({"a": true, "zz": [1]})"));
  EXPECT_TRUE(ok(open, R"({})"));
  auto strict = compile(R"({"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"]})", true);
  EXPECT_FALSE(ok(strict, R"({"a": true, "zz": [1]})"));
  EXPECT_TRUE(ok(strict, R"({"a": false})"));
}

TEST(JsonSchema, EnumConstAnyOfTypeLists) {
  auto g = compile(R"({"type":"object","properties":{"color":{"enum":["red","green",3,null]},
    "v":{"const":{"x":[1,"y"]}},"u":{"anyOf":[{"type":"integer"},{"type":"string","maxLength":2}]},
    "t":{"type":["boolean","null"]}},"required":["color","v","u","t"],"additionalProperties":false})");
  EXPECT_TRUE(ok(g, R"({"color": "green", "v": {"x":[1,"y"]}, "u": 12, "t": null})"));
  EXPECT_TRUE(ok(g, R"({"color": 3, "v": {"x":[1,"y"]}, "u": "ab", "t": true})"));
  EXPECT_FALSE(ok(g, R"({"color": "blue", "v": {"x":[1,"y"]}, "u": 1, "t": true})"));
  EXPECT_FALSE(ok(g, R"({"color": 3, "v": {"x":[1,"y"]}, "u": "abc", "t": true})"));
  EXPECT_FALSE(ok(g, R"({"color": 3, "v": {"x":[1,"y"]}, "u": 1, "t": 1})"));
}

TEST(JsonSchema, ArraysAndTuples) {
  auto g = compile(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(ok(g, "[1]"));
  EXPECT_TRUE(ok(g, "[1, 2]"));
  EXPECT_TRUE(ok(g, "[1,2,3]"));
  EXPECT_FALSE(ok(g, "[1,2,3,4]"));
  auto t = compile(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false,"minItems":1})");
  EXPECT_TRUE(ok(t, R"(["a"])"));
  EXPECT_TRUE(ok(t, R"(["a", 1])"));
  EXPECT_FALSE(ok(t, R"([1])"));
  EXPECT_FALSE(ok(t, R"(["a", 1, 2])"));
}

TEST(JsonSchema, StringsFormatsAndPatterns) {
  auto len = compile(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(ok(len, R"("a")"));
  EXPECT_TRUE(ok(len, R"("a\"")"));
  EXPECT_TRUE(ok(len, "\"\xc3\xa9t\xc3\xa9\""));
  EXPECT_FALSE(ok(len, R"("abcd")"));
  auto date = compile(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(ok(date, R"("2024-02-28")"));
  EXPECT_FALSE(ok(date, R"("2024-02-30")"));
  EXPECT_FALSE(ok(date, R"("2024-13-01")"));
  auto dt = compile(R"({"type":"string","format":"date-time"})");
  EXPECT_TRUE(ok(dt, R"("2024-12-31T23:59:59Z")"));
  EXPECT_TRUE(ok(dt, R"("2024-01-01T00:00:00.123+02:00")"));
  EXPECT_FALSE(ok(dt, R"("2024-01-01T24:00:00Z")"));
  auto uuid = compile(R"({"type":"string","format":"uuid"})");
  EXPECT_TRUE(ok(uuid, R"("123e4567-e89b-12d3-a456-426614174000")"));
  EXPECT_FALSE(ok(uuid, R"("123e4567e89b12d3a456426614174000")"));
  auto email = compile(R"({"type":"string","format":"email"})");
  EXPECT_TRUE(ok(email, R"("ann.lee+x@mail.example.org")"));
  EXPECT_FALSE(ok(email, R"("ann@localhost")"));
  EXPECT_FALSE(ok(email, R"("a..b@x.org")"));
  auto pat = compile(R"J({"type":"string","pattern":"^[A-Z]{2}-\\d{3}(x|yz)?$"})J");
  EXPECT_TRUE(ok(pat, R"("AB-123")"));
  EXPECT_TRUE(ok(pat, R"("AB-123yz")"));
  EXPECT_FALSE(ok(pat, R"("AB-12")"));
  EXPECT_FALSE(ok(pat, R"("ab-123")"));
  auto neg = compile(R"J({"type":"string","pattern":"[^a]+\\.(?:txt|md)"})J");
  EXPECT_TRUE(ok(neg, R"("notes.md")"));
  EXPECT_FALSE(ok(neg, R"("a.md")"));
  EXPECT_NE(error_of(R"J({"type":"string","pattern":"(?=x)y"})J").find("'pattern'"), std::string::npos);
  EXPECT_NE(error_of(R"J({"type":"string","pattern":"(a)\\1"})J").find("'pattern'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"string","format":"hostname"})").find("'format'"), std::string::npos);
}

TEST(JsonSchema, IntegerBoundsAreExact) {
  auto g = compile(R"({"type":"integer","minimum":-15,"maximum":127})");
  for (int v = -40; v <= 300; ++v) EXPECT_EQ(ok(g, std::to_string(v)), v >= -15 && v <= 127) << v;
  EXPECT_FALSE(ok(g, "007"));
  auto ex = compile(R"({"type":"integer","exclusiveMinimum":9,"exclusiveMaximum":1000})");
  for (int v : {9, 10, 999, 1000}) EXPECT_EQ(ok(ex, std::to_string(v)), v > 9 && v < 1000) << v;
  auto lo = compile(R"({"type":"integer","minimum":42})");
  EXPECT_FALSE(ok(lo, "41"));
  EXPECT_TRUE(ok(lo, "42"));
  EXPECT_TRUE(ok(lo, "123456789"));
  EXPECT_FALSE(ok(lo, "-50"));
  auto nn = compile(R"({"type":"number","minimum":0})");
  EXPECT_TRUE(ok(nn, "0.5"));
  EXPECT_FALSE(ok(nn, "-0.5"));
  EXPECT_NE(error_of(R"({"type":"number","maximum":3.5})").find("'maximum'"), std::string::npos);
}

TEST(JsonSchema, RefsAndRecursion) {
  auto g = compile(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
    "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"],"additionalProperties":false}},
    "$ref":"#/$defs/node"})");
  EXPECT_TRUE(ok(g, R"({"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]})"));
  EXPECT_FALSE(ok(g, R"({"v": 1, "kids": [{"w": 2}]})"));
  EXPECT_NE(error_of(R"({"$ref":"#/$defs/missing"})").find("does not define"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref":"http://example.com/s.json"})").find("'$ref'"), std::string::npos);
}

TEST(JsonSchema, UnsupportedKeywordsAreNamed) {
  EXPECT_NE(error_of(R"({"type":"object","patternProperties":{"a":{}}})").find("'patternProperties' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"type":"object","properties":{"x":{"type":"number","multipleOf":2}}})").find("'multipleOf'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"type":"object","properties":{"x":{"type":"number","multipleOf":2}}})").find("#/properties/x"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"not":{"type":"string"}})").find("'not'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","uniqueItems":true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"teapot"})").find("unknown type"), std::string::npos);
  try {
    compile(R"({"if":{}})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
  }
}

TEST(JsonSchema, HostileSchemasAreBounded) {
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 200; ++i) deep = std::string(R"({"type":"array","items":)").append(deep).append("}");
  EXPECT_NE(error_of(deep).find("deeper"), std::string::npos);
  std::string huge = R"({"enum":[)";
  for (int i = 0; i < 20000; ++i) {
    if (i) huge += ',';
    huge += std::to_string(i);
  }
  huge += "]}";
  EXPECT_NE(error_of(huge).find("enum"), std::string::npos);
  EXPECT_NE(error_of(R"({"type":"array","minItems":1000000})").find("limit"), std::string::npos);
  // Self-reference without progress cannot loop: every path through it reads '{' or '['.
  auto g = compile(R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"$ref":"#"}}]})");
  EXPECT_TRUE(ok(g, "[[1], [[2, 3]]]"));
  // A $ref cycle without structure is refused rather than looping.
  EXPECT_NE(error_of(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})"), "");
}

TEST(JsonSchema, RandomWalksStayValid) {
  // Random continuations chosen from the allowed bytes always end in a valid document.
  auto schema = ojson::parse(R"({"type":"object","properties":{"id":{"type":"integer","minimum":1,"maximum":999},
    "name":{"type":"string","maxLength":8},"ok":{"type":"boolean"},"when":{"type":"string","format":"date"}},
    "required":["id","name","ok","when"],"additionalProperties":false})");
  auto g = Grammar::parse(json_schema_to_gbnf(schema));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    GrammarState s(g);
    std::string text;
    for (int step = 0; step < 200 && !s.accepting(); ++step) {
      auto next = s.next_bytes();
      std::vector<int> opts;
      for (int b = 0x20; b < 0x7F; ++b)
        if (b != 0x5C && next.test(static_cast<size_t>(b))) opts.push_back(b);  // no escapes
      if (opts.empty()) break;
      const char c = static_cast<char>(opts[rng() % opts.size()]);
      ASSERT_TRUE(s.feed(std::string(1, c)));
      text += c;
    }
    const std::string closed = text + s.closing_text();
    auto doc = ojson::parse(closed);
    EXPECT_TRUE(doc["id"].is_number_integer()) << closed;
    EXPECT_GE(doc["id"].get<int>(), 1);
    EXPECT_LE(doc["id"].get<int>(), 999);
    EXPECT_LE(doc["name"].get<std::string>().size(), 8u);
    EXPECT_EQ(doc["when"].get<std::string>().size(), 10u);
  }
}

}  // namespace
}  // namespace etna::engine
