// Chat templates: turning a conversation into the prompt text a model was trained on, by
// rendering the Jinja template the model ships in `tokenizer.chat_template` the way Hugging Face
// transformers does (trim_blocks, lstrip_blocks, raise_exception, strftime_now, tojson).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/gguf/gguf_file.h"

namespace etna::tokenizer {

namespace jinja {
class Template;
}

struct ChatMessage {
  std::string role;
  std::string content;
};

// Immutable after construction: render() may be called from several threads at once.
class ChatTemplate {
 public:
  // Parses `source` (Jinja). bos/eos token texts are exposed to the template as bos_token and
  // eos_token. Throws etna::Error "chat template syntax error at line L, column C: ...".
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token);

  // The file's tokenizer.chat_template, or ChatML when it has none. bos/eos texts are
  // tokenizer.ggml.tokens[tokenizer.ggml.{bos,eos}_token_id] ("" when absent).
  static ChatTemplate from_gguf(const gguf::GgufFile& file);
  // The ChatML format (<|im_start|>role\ncontent<|im_end|>\n), with empty bos/eos.
  static ChatTemplate chatml();

  // Renders the conversation. The template sees messages, add_generation_prompt, bos_token,
  // eos_token, tools = none and documents = none (as transformers passes them), then every key of
  // extra_context (which may replace any of these, e.g. messages with tool_calls). A numeric
  // extra_context["strftime_now"] is the Unix time (UTC) strftime_now() formats, for reproducible
  // output. Throws etna::Error(invalid_argument) carrying the template's own message when it
  // calls raise_exception; etna::Error(limit) when it exceeds the output, step or recursion limits.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const nlohmann::json& extra_context = {}) const;

  // Renders with a complete, order-preserving context (tool schemas keep their key order in
  // tojson). messages ([]), add_generation_prompt (false), bos_token, eos_token, tools (none) and
  // documents (none) are added when the context lacks them. Same errors as render().
  std::string render_context(const nlohmann::ordered_json& context) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  std::string source_;
  std::string bos_token_;
  std::string eos_token_;
  std::shared_ptr<const jinja::Template> template_;
};

}  // namespace etna::tokenizer
