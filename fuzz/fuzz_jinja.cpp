// libFuzzer target for the Jinja interpreter (chat templates come from untrusted GGUF files): any
// byte string, parsed as a template and rendered with a chat-shaped context, must render or be
// refused with etna::Error within the interpreter's limits. Nothing else (no crash, no hang).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/tokenizer/jinja/interpreter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json context = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "Hi"}},
        {{"role", "assistant"}, {"content", "Hello!"}, {"tool_calls", nlohmann::json::array()}}}},
      {"add_generation_prompt", true},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"tools", nlohmann::json::array()}};
  try {
    etna::tokenizer::jinja::Template t(std::string(reinterpret_cast<const char*>(data), size));
    (void)t.render(etna::tokenizer::jinja::from_json(context));
  } catch (const etna::Error&) {
  }
  return 0;
}
