// Tool (function) calling across chat-template families: how tools and earlier calls are put into
// the prompt, how the model's reply is split back into text and calls, and the grammar that forces
// a call when the client requires one. Used by every API that offers tools (OpenAI chat, and the
// Ollama / Anthropic / Responses adapters).
//
// Formats, detected from the chat template's source:
//   hermes   Qwen2.5 / Qwen3 / Hermes: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
//   llama3   Llama 3.1+: a bare JSON object {"name": ..., "parameters": {...}} (after an optional
//            <|python_tag|>); several calls separated by ';' or new lines
//   mistral  [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (the marker is a control token
//            the detokeniser drops, so a reply that is just the JSON array counts too)
//   generic  templates that know nothing of tools (and the ChatML stand-in): the tools are described
//            in a system message that asks for hermes-style <tool_call> tags; earlier calls are shown
//            as those tags in the assistant's text and tool results as user messages wrapped in
//            <tool_response> tags.
// Native formats get `tools` (OpenAI shape) in the template context, and messages whose
// tool_calls carry parsed `arguments` objects, as Hugging Face templates expect.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/engine/json_schema.h"

namespace etna::engine {

enum class ToolFormat { hermes, llama3, mistral, generic };
const char* tool_format_name(ToolFormat f);

// The format a chat template uses for tools; generic when it has no tool support (or is not the
// model's own template).
ToolFormat detect_tool_format(std::string_view template_source, bool own_template);

struct ToolCall {
  std::string id;         // "call_..." (Mistral templates require 9 alphanumerics: see make_tool_call_id)
  std::string name;
  std::string arguments;  // compact JSON text of an object
};
std::string make_tool_call_id(ToolFormat f);

struct ParsedReply {
  std::string content;          // text outside the calls (trimmed when calls were found)
  std::vector<ToolCall> calls;  // in order; ids assigned
};

// Splits a reply into text and calls (also the replies forced_tool_call_gbnf produces). Malformed
// call JSON stays in the content.
ParsedReply parse_tool_calls(ToolFormat f, std::string_view reply);

// Streaming: passes text through until a call may be starting, then holds the rest back for
// finish(). push() returns the text that is certainly content; progress() shows the calls being
// generated, so an API can stream their names and arguments as they come.
class ToolCallFilter {
 public:
  explicit ToolCallFilter(ToolFormat f) : format_(f) {}
  std::string push(std::string_view piece);
  // Everything after the last push: remaining content (text held back that was no call) and the
  // calls, with the ids progress() gave them and (for calls that parse) arguments that extend
  // what progress() showed.
  ParsedReply finish();
  bool in_call() const { return in_call_; }

  // A call seen so far: its name once complete, its arguments object as far as generated (with
  // the whitespace outside strings removed; only grows). Arguments given as a JSON string, or
  // before the name, appear only in finish().
  struct Progress {
    std::string id, name, arguments;
  };
  const std::vector<Progress>& progress();

 private:
  ToolFormat format_;
  std::string held_;     // text not yet released (a possible marker prefix, or the calls)
  bool in_call_ = false;
  bool seen_text_ = false;  // something other than whitespace was released
  std::vector<Progress> progress_;
};

// The arguments object of one call's JSON text ({"name": ..., "arguments": {...}}), whitespace
// outside strings removed, as far as it goes (complete = its closing brace was seen). Empty when
// the text has no object-valued "arguments" / "parameters" member (yet).
struct ScannedCall {
  std::string name;  // raw string contents, "" until the name's closing quote
  std::string arguments;
  bool complete = false;
};
// Every call object in `text` at JSON nesting `depth` (0: bare or tagged objects; 1: inside an
// array, as Mistral writes them), complete or not.
std::vector<ScannedCall> scan_tool_calls(std::string_view text, int depth);

// `tools` is the OpenAI array [{"type": "function", "function": {name, description, parameters}}].
// Throws etna::Error(invalid_argument) naming the problem for a malformed array.
void validate_tools(const nlohmann::ordered_json& tools);

// A GBNF grammar whose sentences are calls in format f: of `only` (when non-empty) or any of the
// tools; one call, or one or more when `parallel`. Arguments follow each function's parameters
// schema (json_schema.h; errors as there).
std::string forced_tool_call_gbnf(ToolFormat f, const nlohmann::ordered_json& tools, const std::string& only, bool parallel,
                                  const JsonSchemaOptions& options = {});

// The template context for a conversation in OpenAI's message shape (roles system, user,
// assistant with optional tool_calls, tool with tool_call_id) and tools (may be empty): messages
// and tools as the format expects (see above). add_generation_prompt is set.
nlohmann::ordered_json tool_template_context(ToolFormat f, const nlohmann::ordered_json& messages,
                                             const nlohmann::ordered_json& tools);

}  // namespace etna::engine
