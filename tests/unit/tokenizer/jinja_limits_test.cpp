// Hostile chat templates (they come from untrusted GGUF files): every construct that chains or
// nests is bounded before it can overflow the stack, with one clear etna::Error.
#include <string>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tokenizer/jinja/interpreter.h"

namespace etna::tokenizer::jinja {
namespace {

std::string error_of(const std::string& source) {
  try {
    Template(source).render(from_json(nlohmann::json{{"x", "a"}}), {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(JinjaLimits, LongFilterChainIsRefusedNotACrash) {
  std::string e = error_of("{{ x" + repeat(" | trim", 100000) + " }}");
  EXPECT_NE(e.find("nested too deeply"), std::string::npos) << e;
}

TEST(JinjaLimits, EveryChainingConstructIsBounded) {
  const std::vector<std::string> bombs = {
      "{{ x" + repeat(".a", 100000) + " }}",                // attribute chain
      "{{ x" + repeat("[0]", 100000) + " }}",               // subscript chain
      "{{ x" + repeat(" is string", 100000) + " }}",        // test chain
      "{{ 1" + repeat(" + 1", 100000) + " }}",              // left-associative operators
      "{{ x" + repeat(" ~ x", 100000) + " }}",
      "{{ 1" + repeat(" or 1", 100000) + " }}",
      "{{ 1" + repeat(" if 1", 100000) + " }}",             // ternaries
      "{{ range" + repeat("()", 100000) + " }}",            // call chain
      "{% filter upper" + repeat(" | trim", 100000) + " %}a{% endfilter %}",
  };
  for (const auto& b : bombs) {
    std::string e = error_of(b);
    EXPECT_NE(e.find("nested too deeply"), std::string::npos) << b.substr(0, 30) << ": " << e;
  }
}

TEST(JinjaLimits, OrdinaryChainsStillWork) {
  EXPECT_EQ(Template("{{ x | trim | upper | lower | upper }}").render(from_json(nlohmann::json{{"x", " a "}}), {}), "A");
  EXPECT_EQ(Template("{{ 1" + repeat(" + 1", 60) + " }}").render(from_json(nlohmann::json::object()), {}), "61");
}

}  // namespace
}  // namespace etna::tokenizer::jinja
