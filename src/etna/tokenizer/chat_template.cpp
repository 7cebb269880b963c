#include "etna/tokenizer/chat_template.h"

#include <algorithm>

#include "etna/base/error.h"
#include "etna/tokenizer/jinja/interpreter.h"

namespace etna::tokenizer {

namespace {

constexpr const char* kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string token_text(const gguf::GgufFile& file, const char* id_key, const std::vector<std::string>& tokens) {
  std::optional<uint64_t> id;
  try {
    id = file.get_uint(id_key);
  } catch (const Error&) {
    auto signed_id = file.get_int(id_key);
    if (signed_id && *signed_id >= 0) id = static_cast<uint64_t>(*signed_id);
  }
  if (!id || *id >= tokens.size()) return "";
  return tokens[static_cast<size_t>(*id)];
}

// Pulls the strftime_now override out of the context (it is an option, not a variable).
jinja::RenderOptions take_options(jinja::Value& context) {
  jinja::RenderOptions options;
  if (!context.is_object()) return options;
  auto& obj = *context.as_object();
  auto it = obj.index.find("strftime_now");
  if (it == obj.index.end()) return options;
  const jinja::Value& v = obj.items[it->second].second;
  if (!v.is_int() && !v.is_float())
    fail(ErrorKind::invalid_argument, "chat template: extra_context[\"strftime_now\"] must be a Unix time in seconds");
  options.now_unix = v.is_int() ? v.as_int() : static_cast<int64_t>(v.as_float());
  // Remove the key so the global function stays visible to the template.
  obj.items.erase(obj.items.begin() + static_cast<std::ptrdiff_t>(it->second));
  obj.index.clear();
  for (size_t i = 0; i < obj.items.size(); ++i) obj.index[obj.items[i].first] = i;
  return options;
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : source_(std::move(source)), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)),
      template_(std::make_shared<jinja::Template>(source_)) {}

ChatTemplate ChatTemplate::from_gguf(const gguf::GgufFile& file) {
  std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::string bos = token_text(file, "tokenizer.ggml.bos_token_id", tokens);
  std::string eos = token_text(file, "tokenizer.ggml.eos_token_id", tokens);
  std::optional<std::string> source = file.get_string("tokenizer.chat_template");
  if (!source || source->empty()) return ChatTemplate(kChatMl, bos, eos);
  try {
    return ChatTemplate(*source, bos, eos);
  } catch (const Error& e) {
    throw Error(e.kind(), file.path() + ": tokenizer.chat_template: " + e.what());
  }
}

ChatTemplate ChatTemplate::chatml() { return ChatTemplate(kChatMl, "", ""); }

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra_context) const {
  if (!extra_context.is_null() && !extra_context.is_object())
    fail(ErrorKind::invalid_argument, "chat template: extra_context must be a JSON object");
  jinja::Value context = jinja::Value::object();
  auto& obj = *context.as_object();
  jinja::Array list;
  list.reserve(messages.size());
  for (const auto& m : messages) {
    jinja::Value msg = jinja::Value::object();
    msg.as_object()->set("role", jinja::Value(m.role));
    msg.as_object()->set("content", jinja::Value(m.content));
    list.push_back(std::move(msg));
  }
  obj.set("messages", jinja::Value::array(std::move(list)));
  obj.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  obj.set("bos_token", jinja::Value(bos_token_));
  obj.set("eos_token", jinja::Value(eos_token_));
  obj.set("tools", jinja::Value::none());
  obj.set("documents", jinja::Value::none());
  if (extra_context.is_object()) {
    jinja::Value extra = jinja::from_json(extra_context);
    for (auto& [k, v] : extra.as_object()->items) obj.set(k, v);
  }
  jinja::RenderOptions options = take_options(context);
  try {
    return template_->render(context, options);
  } catch (const Error& e) {
    // Templates without a system role (Gemma's raise "System role not supported"): fold each
    // system message into the next user turn, as llama.cpp's server does, and render again.
    const bool has_system = std::any_of(messages.begin(), messages.end(), [](const ChatMessage& m) {
      return m.role == "system";
    });
    if (e.kind() != ErrorKind::invalid_argument || !has_system) throw;
    std::vector<ChatMessage> folded;
    std::string pending;
    for (const auto& m : messages) {
      if (m.role == "system") {
        pending += (pending.empty() ? "" : "\n\n") + m.content;
      } else if (m.role == "user" && !pending.empty()) {
        folded.push_back({m.role, pending + "\n\n" + m.content});
        pending.clear();
      } else {
        folded.push_back(m);
      }
    }
    if (!pending.empty()) folded.push_back({"user", pending});
    return render(folded, add_generation_prompt, extra_context);
  }
}

std::string ChatTemplate::render_context(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) fail(ErrorKind::invalid_argument, "chat template: the context must be a JSON object");
  jinja::Value ctx = jinja::from_json(context);
  auto& obj = *ctx.as_object();
  if (!obj.find("messages")) obj.set("messages", jinja::Value::array());
  if (!obj.find("add_generation_prompt")) obj.set("add_generation_prompt", jinja::Value(false));
  if (!obj.find("bos_token")) obj.set("bos_token", jinja::Value(bos_token_));
  if (!obj.find("eos_token")) obj.set("eos_token", jinja::Value(eos_token_));
  if (!obj.find("tools")) obj.set("tools", jinja::Value::none());
  if (!obj.find("documents")) obj.set("documents", jinja::Value::none());
  jinja::RenderOptions options = take_options(ctx);
  return template_->render(ctx, options);
}

}  // namespace etna::tokenizer
