// Tool calling: format detection from real chat templates, rendering tools and earlier calls
// through them, parsing replies (whole and streamed), and the grammar that forces a valid call.
#include "etna/engine/tool_calls.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/engine/grammar.h"
#include "etna/tokenizer/chat_template.h"

namespace etna::engine {
namespace {

using ojson = nlohmann::ordered_json;

// The real templates kept verbatim in the tokenizer's tests (one copy in the repository).
std::string template_source(const std::string& name) {
  std::ifstream in(std::string(ETNA_SOURCE_DIR) + "/tests/unit/tokenizer/chat_template_test.cpp");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  const std::string start = "const char* " + name + " = R\"TPL(";
  const size_t a = all.find(start);
  if (a == std::string::npos) return "";
  const size_t b = all.find(")TPL\"", a);
  return all.substr(a + start.size(), b - a - start.size());
}

const ojson kTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                  "required": ["city"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
])");

TEST(ToolCalls, DetectsFormatsFromRealTemplates) {
  const std::string qwen = template_source("kQwen25"), llama = template_source("kLlama31"), mistral = template_source("kMistralV03");
  ASSERT_FALSE(qwen.empty());
  ASSERT_FALSE(llama.empty());
  ASSERT_FALSE(mistral.empty());
  EXPECT_EQ(detect_tool_format(qwen, true), ToolFormat::hermes);
  EXPECT_EQ(detect_tool_format(llama, true), ToolFormat::llama3);
  EXPECT_EQ(detect_tool_format(mistral, true), ToolFormat::mistral);
  EXPECT_EQ(detect_tool_format(qwen, false), ToolFormat::generic);  // not the model's own template
  EXPECT_EQ(detect_tool_format(template_source("kZephyr"), true), ToolFormat::generic);
}

TEST(ToolCalls, ParsesEachFormat) {
  auto r = parse_tool_calls(ToolFormat::hermes,
                            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
                            "<tool_call>{\"name\": \"ping\", \"arguments\": \"{}\"}</tool_call>");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.content, "Let me check.");
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Oslo"})");
  EXPECT_EQ(r.calls[1].arguments, "{}");
  EXPECT_EQ(r.calls[0].id.substr(0, 5), "call_");
  EXPECT_NE(r.calls[0].id, r.calls[1].id);
  // Malformed JSON stays text.
  r = parse_tool_calls(ToolFormat::generic, "<tool_call>{\"name\": oops}</tool_call> done");
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, "<tool_call>{\"name\": oops}</tool_call> done");
  r = parse_tool_calls(ToolFormat::llama3, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\", \"days\": 2}}");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Rome","days":2})");
  r = parse_tool_calls(ToolFormat::llama3, "{\"name\": \"ping\", \"parameters\": {}}; {\"name\": \"ping\", \"parameters\": {}}");
  EXPECT_EQ(r.calls.size(), 2u);
  r = parse_tool_calls(ToolFormat::llama3, "The weather is {fine}.");
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, "The weather is {fine}.");
  r = parse_tool_calls(ToolFormat::mistral, "[TOOL_CALLS] [{\"name\": \"ping\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}}]");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].id.size(), 9u);  // Mistral's templates insist on 9 characters
  r = parse_tool_calls(ToolFormat::mistral, "[{\"name\": \"ping\", \"arguments\": {}}]");  // marker dropped by the detokeniser
  EXPECT_EQ(r.calls.size(), 1u);
}

TEST(ToolCalls, StreamFilterHoldsBackOnlyWhatMayBeACall) {
  ToolCallFilter f(ToolFormat::hermes);
  std::string out;
  for (const char* piece : {"Sure", ", one mo", "ment <", "tool", "_call>{\"name\": \"ping\",", " \"arguments\": {}}</tool_call>"})
    out += f.push(piece);
  EXPECT_EQ(out, "Sure, one moment ");
  auto r = f.finish();
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "ping");
  ToolCallFilter plain(ToolFormat::hermes);
  out = plain.push("a < b and <tool");
  out += plain.push("s> are fine");
  auto rest = plain.finish();
  EXPECT_EQ(out + rest.content, "a < b and <tools> are fine");
  EXPECT_TRUE(rest.calls.empty());
  ToolCallFilter llama(ToolFormat::llama3);
  EXPECT_EQ(llama.push("  "), "");
  EXPECT_EQ(llama.push("{\"name\": \"ping\", "), "");
  EXPECT_EQ(llama.push("\"parameters\": {}}"), "");
  EXPECT_EQ(llama.finish().calls.size(), 1u);
  ToolCallFilter text(ToolFormat::llama3);
  EXPECT_EQ(text.push("Hello"), "Hello");
  EXPECT_EQ(text.push(" {x}"), " {x}");
}

TEST(ToolCalls, ProgressStreamsNamesAndArgumentsAsTheyAreGenerated) {
  // Token by token (here: character by character) the arguments only grow, and they end as the
  // final call's arguments, with the same ids.
  const std::string reply =
      "Ok. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rio de {J}aneiro\", \"n\": [1, 2]}}\n</tool_call>\n"
      "<tool_call>\n{\"arguments\": {\"z\": true}, \"name\": \"late\"}\n</tool_call>";
  ToolCallFilter f(ToolFormat::hermes);
  std::string content;
  std::vector<std::string> args_seen(2);
  for (char c : reply) {
    content += f.push(std::string(1, c));
    const auto& p = f.progress();
    for (size_t i = 0; i < p.size(); ++i) {
      ASSERT_EQ(p[i].arguments.compare(0, args_seen[i].size(), args_seen[i]), 0) << "arguments never shrink or change";
      args_seen[i] = p[i].arguments;
    }
  }
  EXPECT_EQ(content, "Ok. ");
  const auto progress = f.progress();
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_EQ(progress[0].name, "get_weather");
  EXPECT_EQ(progress[0].arguments, R"({"city":"Rio de {J}aneiro","n":[1,2]})");
  EXPECT_EQ(progress[1].name, "late");
  EXPECT_EQ(progress[1].arguments, R"({"z":true})");
  const auto r = f.finish();
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].id, progress[0].id);
  EXPECT_EQ(r.calls[1].id, progress[1].id);
  EXPECT_EQ(r.calls[0].arguments, progress[0].arguments);
  EXPECT_EQ(r.calls[1].arguments, progress[1].arguments);

  // Mistral: call objects inside the array; llama3: "parameters".
  auto m = scan_tool_calls(R"([TOOL_CALLS][{"name": "a", "arguments": {"x": "}"}}, {"name": "b", "arguments": {)", 1);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "a");
  EXPECT_EQ(m[0].arguments, R"({"x":"}"})");
  EXPECT_TRUE(m[0].complete);
  EXPECT_EQ(m[1].arguments, "{");
  EXPECT_FALSE(m[1].complete);
  auto l = scan_tool_calls(R"({"name": "ping", "parameters": {"q": "a \"quoted\" word"}})", 0);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].arguments, R"({"q":"a \"quoted\" word"})");
  // Arguments given as a JSON string are not streamed; the final call still has them.
  ToolCallFilter s(ToolFormat::generic);
  s.push("<tool_call>{\"name\": \"ping\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>");
  ASSERT_EQ(s.progress().size(), 1u);
  EXPECT_EQ(s.progress()[0].arguments, "");
  EXPECT_EQ(s.finish().calls.at(0).arguments, R"({"a":1})");
  // Hostile: unbalanced closers and stray quotes neither crash nor invent calls.
  EXPECT_TRUE(scan_tool_calls("}}]]\"\"\\", 0).empty());
  EXPECT_EQ(scan_tool_calls(std::string(10000, '{'), 0).size(), 1u);
}

TEST(ToolCalls, ForcedGrammarAcceptsOnlyValidCalls) {
  auto accepts = [](const std::string& gbnf, const std::string& text) {
    GrammarState s(Grammar::parse(gbnf));
    return s.feed(text) && s.accepting();
  };
  const std::string h = forced_tool_call_gbnf(ToolFormat::hermes, kTools, "", true);
  EXPECT_TRUE(accepts(h, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 3}}\n</tool_call>"));
  EXPECT_TRUE(accepts(h, "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(accepts(h, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"days\": 3}}\n</tool_call>"));   // city required
  EXPECT_FALSE(accepts(h, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\", \"days\": 9}}\n</tool_call>"));
  EXPECT_FALSE(accepts(h, "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>"));
  const std::string single = forced_tool_call_gbnf(ToolFormat::hermes, kTools, "ping", false);
  EXPECT_FALSE(accepts(single, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
  EXPECT_FALSE(accepts(single, "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_TRUE(accepts(forced_tool_call_gbnf(ToolFormat::llama3, kTools, "", false), "{\"name\": \"ping\", \"parameters\": {}}"));
  EXPECT_TRUE(accepts(forced_tool_call_gbnf(ToolFormat::mistral, kTools, "", true),
                      "[{\"name\": \"ping\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}}]"));
  // What the grammar produces parses back into the same call.
  auto r = parse_tool_calls(ToolFormat::hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Oslo"})");
  EXPECT_THROW(forced_tool_call_gbnf(ToolFormat::hermes, kTools, "missing", false), Error);
  EXPECT_THROW(forced_tool_call_gbnf(ToolFormat::hermes, ojson::parse(R"([{"type": "retrieval"}])"), "", false), Error);
}

ojson conversation() {
  return ojson::parse(R"([
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "abcDEF123", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "{\"temp\": -3}"}
  ])");
}

TEST(ToolCalls, RendersToolsAndRoundTripsThroughRealTemplates) {
  tokenizer::ChatTemplate qwen(template_source("kQwen25"), "", "<|im_end|>");
  std::string text = qwen.render_context(tool_template_context(ToolFormat::hermes, conversation(), kTools));
  EXPECT_NE(text.find("<tools>"), std::string::npos) << text;
  EXPECT_NE(text.find("\"get_weather\""), std::string::npos);
  EXPECT_NE(text.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"), std::string::npos) << text;
  EXPECT_NE(text.find("<tool_response>\n{\"temp\": -3}\n</tool_response>"), std::string::npos) << text;
  EXPECT_EQ(text.substr(text.size() - 22), "<|im_start|>assistant\n");

  tokenizer::ChatTemplate llama(template_source("kLlama31"), "<|begin_of_text|>", "<|eot_id|>");
  text = llama.render_context(tool_template_context(ToolFormat::llama3, conversation(), kTools));
  EXPECT_NE(text.find("\"name\": \"get_weather\""), std::string::npos) << text;
  EXPECT_NE(text.find("ipython"), std::string::npos) << text;
  EXPECT_NE(text.find("temp"), std::string::npos);  // the template writes string results through tojson

  tokenizer::ChatTemplate mistral(template_source("kMistralV03"), "<s>", "</s>");
  text = mistral.render_context(tool_template_context(ToolFormat::mistral, conversation(), kTools));
  EXPECT_NE(text.find("[AVAILABLE_TOOLS]"), std::string::npos) << text;
  EXPECT_NE(text.find("[TOOL_CALLS]"), std::string::npos) << text;
  EXPECT_NE(text.find("[TOOL_RESULTS]"), std::string::npos) << text;

  // Generic: a template that knows nothing of tools gets them in a system message, the call as
  // tags in the assistant's text and the result as a user message.
  auto chatml = tokenizer::ChatTemplate::chatml();
  text = chatml.render_context(tool_template_context(ToolFormat::generic, conversation(), kTools));
  EXPECT_EQ(text.find("<|im_start|>system\n# Tools"), 0u) << text;
  EXPECT_NE(text.find("<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call>"),
            std::string::npos) << text;
  EXPECT_NE(text.find("<|im_start|>user\n<tool_response>\n{\"temp\": -3}\n</tool_response>"), std::string::npos) << text;
}

}  // namespace
}  // namespace etna::engine
