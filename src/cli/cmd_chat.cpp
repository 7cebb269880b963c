// `etna chat -m MODEL.gguf`: an interactive conversation on stdin/stdout using the model's chat
// template. The KV cache is kept between turns, so each turn only evaluates the new tokens.
// Lines starting with "/" are chat commands (/help lists them), never sent to the model; Ctrl-C
// (SIGINT) while a reply is generated stops that reply and keeps the conversation.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "cli/sampling_options.h"
#include "etna/base/error.h"
#include "etna/engine/generator.h"
#include "etna/model/model.h"
#include "etna/tokenizer/chat_template.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {
namespace {

constexpr int kDefaultMaxContext = 4096;

struct ChatOptions {
  std::string model;
  std::string system;
  int n_predict = 1024;
  int ctx = 0;
  std::string cache_type = "f32";
  engine::SamplingParams sampling;
};

void write_out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return !prefix.empty() && s.compare(0, prefix.size(), prefix) == 0;
}

// SIGINT: while generating, ask the reply to stop; at the prompt, say how to quit.
std::atomic<bool> g_generating{false};
std::atomic<bool> g_stop{false};

extern "C" void on_sigint(int) {
  if (g_generating.load()) {
    g_stop.store(true);
  } else {
    static const char msg[] = "\n(/exit or Ctrl-D quits)\n> ";
    ssize_t ignored = ::write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)ignored;
  }
}

// Installs on_sigint for the object's lifetime and restores the previous handler after.
class SigintGuard {
 public:
  SigintGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // reads at the prompt go on
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  struct sigaction old_ {};
};

const char* kHelp =
    "/help          this list\n"
    "/clear         start over (the system message stays); /reset is the same\n"
    "/system TEXT   set the system message (empty TEXT removes it); the conversation goes on\n"
    "/save FILE     write the conversation to FILE as JSON ({\"messages\": [{role, content}]})\n"
    "/exit, /quit   leave (Ctrl-D too)\n"
    "Ctrl-C stops a reply being written. A line starting with // is sent as /...\n";

void chat(const ChatOptions& o) {
  if (o.ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", o.ctx);
  engine::SamplingParams params = o.sampling;
  params.max_tokens = o.n_predict;
  params.validate();

  auto model = model::Model::load(o.model);
  auto tokenizer = tokenizer::Tokenizer::from_gguf(model->file());
  const auto& vocab = tokenizer->vocab();

  // The model's own template; ChatML when it has none. A template Etna cannot parse is reported
  // once and replaced by ChatML so the conversation still works.
  std::optional<tokenizer::ChatTemplate> tmpl;
  try {
    tmpl.emplace(tokenizer::ChatTemplate::from_gguf(model->file()));
  } catch (const etna::Error& e) {
    std::fprintf(stderr, "etna: warning: %s; using the ChatML format instead\n", e.what());
    tmpl.emplace(tokenizer::ChatTemplate::chatml());
  }
  const bool own_template = model->file().has("tokenizer.chat_template");
  // Without a template of its own the model may not know ChatML's end marker as a token.
  if (!own_template) {
    params.stop.push_back("<|im_end|>");
    params.stop.push_back("<|im_start|>");
  }

  const int n_ctx_train = model->config().n_ctx_train;
  const int n_ctx = o.ctx > 0 ? o.ctx : std::min(n_ctx_train > 0 ? n_ctx_train : kDefaultMaxContext, kDefaultMaxContext);
  engine::Generator gen(*model, *tokenizer, n_ctx, 512, model::parse_kv_type(o.cache_type));

  std::vector<tokenizer::ChatMessage> messages;
  std::string system = o.system;
  auto start_over = [&] {
    messages.clear();
    if (!system.empty()) messages.push_back({"system", system});
    gen.reset();
  };
  start_over();

  const std::string bos_text = vocab.bos >= 0 ? vocab.tokens[static_cast<size_t>(vocab.bos)] : "";
  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive)
    std::fprintf(stderr, "etna chat: %s, context %d tokens. /help lists commands, Ctrl-C stops a reply, /exit or Ctrl-D quits.\n",
                 model->config().name.empty() ? o.model.c_str() : model->config().name.c_str(), n_ctx);
  SigintGuard sigint;

  uint64_t turn = 0;
  std::string line;
  for (;;) {
    write_out("> ");
    if (!std::getline(std::cin, line)) {
      write_out("\n");
      break;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line[0] == '/' && !starts_with(line, "//")) {
      const size_t sp = line.find(' ');
      const std::string cmd = line.substr(0, sp);
      std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
      while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) arg.pop_back();
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/help") {
        write_out(kHelp);
      } else if (cmd == "/clear" || cmd == "/reset") {
        start_over();
        write_out("(conversation cleared)\n");
      } else if (cmd == "/system") {
        system = arg;
        if (!messages.empty() && messages.front().role == "system") messages.erase(messages.begin());
        if (!system.empty()) messages.insert(messages.begin(), tokenizer::ChatMessage{"system", system});
        write_out(system.empty() ? "(system message removed)\n" : "(system message set)\n");
      } else if (cmd == "/save") {
        if (arg.empty()) {
          write_out("usage: /save FILE\n");
          continue;
        }
        nlohmann::json j = {{"model", model->config().name}, {"messages", nlohmann::json::array()}};
        for (const auto& m : messages) j["messages"].push_back({{"role", m.role}, {"content", m.content}});
        std::ofstream f(arg, std::ios::binary | std::ios::trunc);
        f << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        f.close();
        if (!f) std::fprintf(stderr, "etna: error: cannot write %s\n", arg.c_str());
        else write_out(fmt::format("(saved {} messages to {})\n", messages.size(), arg));
      } else {
        write_out(fmt::format("unknown command {}; /help lists the commands (start a message with // to send /)\n", cmd));
      }
      continue;
    }
    if (starts_with(line, "//")) line.erase(0, 1);

    messages.push_back({"user", line});
    try {
      const std::string text = tmpl->render(messages, /*add_generation_prompt=*/true);
      tokenizer::EncodeOptions enc;
      enc.parse_special = true;
      // Templates usually write the BOS text themselves; do not add a second one.
      enc.add_special = !starts_with(text, bos_text);
      const auto tokens = tokenizer->encode(text, enc);

      engine::SamplingParams turn_params = params;
      if (params.seed != engine::kRandomSeed) turn_params.seed = params.seed + turn;  // reproducible, yet varied
      ++turn;
      g_stop.store(false);
      g_generating.store(true);
      engine::GenerationResult r;
      try {
        r = gen.generate(tokens, turn_params, [](std::string_view piece) {
          write_out(piece);
          return !g_stop.load();
        });
      } catch (...) {
        g_generating.store(false);
        throw;
      }
      g_generating.store(false);
      const bool stopped = g_stop.exchange(false);
      write_out(stopped ? " [stopped]\n" : "\n");
      messages.push_back({"assistant", r.text});
      if (!stopped && r.finish == engine::FinishReason::length && params.max_tokens > 0 &&
          r.tokens.size() < static_cast<size_t>(params.max_tokens))
        std::fprintf(stderr, "etna: the context is full; /clear to start over\n");
    } catch (const etna::Error& e) {
      messages.pop_back();  // forget the turn that failed
      std::fflush(stdout);
      std::fprintf(stderr, "etna: error: %s%s\n", e.what(),
                   e.kind() == ErrorKind::limit ? " (/clear to start over)" : "");
    }
  }
}

CommandRegistrar reg(11, [](CLI::App& root) {
  auto* c = root.add_subcommand("chat", "Talk with a model interactively (stdin/stdout), using its chat template");
  auto o = std::make_shared<ChatOptions>();
  add_model_option(c, o->model, "the .gguf model file")->required();
  add_library_option(c);
  c->add_option("--system", o->system, "a system message that starts the conversation");
  c->add_option("-n,--n-predict", o->n_predict, "maximum tokens per reply; -1 = until the context is full")
      ->capture_default_str();
  c->add_option("--ctx", o->ctx, "context size in tokens (default: the model's, at most 4096)");
  c->add_option("--cache-type", o->cache_type, "KV cache type: f32, f16 (half the memory) or q8_0")
      ->capture_default_str();
  add_sampling_options(c, o->sampling);
  add_threads_option(c);
  c->callback([o] { chat(*o); });
});

}  // namespace
}  // namespace etna::cli
