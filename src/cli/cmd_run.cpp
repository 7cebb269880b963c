// `etna run -m MODEL.gguf -p PROMPT`: continue a prompt, streaming the text to stdout
// (or, with --json, print one object with the tokens, text, finish reason and timings).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "cli/sampling_options.h"
#include "etna/base/error.h"
#include "etna/engine/generator.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {
namespace {

constexpr int kDefaultMaxContext = 4096;  // default cap: a model's full context can need GBs of cache

std::string read_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::io, "cannot read prompt file {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::io, "cannot read prompt file {}", path);
  return ss.str();
}

void write_out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int n_predict = 128;
  int ctx = 0;
  int lookup = 0;
  std::string cache_type = "f32";
  bool json = false;
  bool has_prompt = false, has_prompt_file = false;
  engine::SamplingParams sampling;
};

void run(const RunOptions& o) {
  if (o.has_prompt && o.has_prompt_file)
    fail(ErrorKind::invalid_argument, "give the prompt either with -p or with -f, not both");
  if (!o.has_prompt && !o.has_prompt_file) fail(ErrorKind::invalid_argument, "no prompt: use -p TEXT or -f FILE");
  if (o.ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", o.ctx);
  const std::string prompt = !o.has_prompt_file ? o.prompt : read_prompt_file(o.prompt_file);
  engine::SamplingParams params = o.sampling;
  params.max_tokens = o.n_predict;
  params.validate();

  auto model = model::Model::load(o.model);
  auto tokenizer = tokenizer::Tokenizer::from_gguf(model->file());
  const int n_ctx_train = model->config().n_ctx_train;
  const int n_ctx = o.ctx > 0 ? o.ctx : std::min(n_ctx_train > 0 ? n_ctx_train : kDefaultMaxContext, kDefaultMaxContext);

  tokenizer::EncodeOptions enc;
  enc.add_special = true;
  enc.parse_special = false;
  const std::vector<tokenizer::Token> prompt_tokens = tokenizer->encode(prompt, enc);

  engine::Generator gen(*model, *tokenizer, n_ctx, 512, model::parse_kv_type(o.cache_type));
  gen.set_lookup(o.lookup);
  engine::PieceCallback stream;
  if (!o.json) stream = [](std::string_view piece) {
    write_out(piece);
    return true;
  };
  const engine::GenerationResult r = gen.generate(prompt_tokens, params, stream);

  const auto& t = r.timings;
  if (o.json) {
    nlohmann::json j;
    j["prompt_tokens"] = prompt_tokens;
    j["tokens"] = r.tokens;
    j["text"] = r.text;
    j["finish_reason"] = engine::finish_reason_name(r.finish);
    j["seed"] = r.seed;
    j["timings"] = {{"prompt_n", t.prompt_tokens - t.cached_tokens},
                    {"prompt_ms", t.prompt_ms},
                    {"prompt_tps", t.prompt_tps()},
                    {"gen_n", t.generated_tokens},
                    {"gen_ms", t.gen_ms},
                    {"gen_tps", t.gen_tps()},
                    {"drafted", t.drafted_tokens},
                    {"accepted", t.accepted_tokens}};
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return;
  }
  if (stdout_is_tty()) write_out("\n");
  if (isatty(STDERR_FILENO))
    std::fprintf(stderr, "[prompt: %d tokens, %.1f ms, %.1f tok/s | generated: %d tokens, %.1f ms, %.1f tok/s | %s]\n",
                 t.prompt_tokens, t.prompt_ms, t.prompt_tps(), t.generated_tokens, t.gen_ms, t.gen_tps(),
                 engine::finish_reason_name(r.finish));
}

CommandRegistrar reg(10, [](CLI::App& root) {
  auto* c = root.add_subcommand("run", "Continue a prompt with a model, streaming the text");
  auto o = std::make_shared<RunOptions>();
  add_model_option(c, o->model, "the .gguf model file")->required();
  add_library_option(c);
  auto* p = c->add_option("-p,--prompt", o->prompt, "the prompt text");
  auto* f = c->add_option("-f,--file", o->prompt_file, "read the prompt from this file");
  c->add_option("-n,--n-predict", o->n_predict, "maximum tokens to generate; -1 = until the context is full")
      ->capture_default_str();
  c->add_option("--ctx", o->ctx, "context size in tokens (default: the model's, at most 4096)");
  c->add_option("--lookup", o->lookup,
                 "prompt-lookup decoding: guess up to N tokens from earlier text and check them in one batch "
                 "(same output, faster on repetitive text); 0 = off")
      ->capture_default_str();
  c->add_option("--cache-type", o->cache_type, "KV cache type: f32, f16 (half the memory) or q8_0")
      ->capture_default_str();
  c->add_flag("--json", o->json, "print one JSON object (tokens, text, finish reason, timings) instead of streaming");
  add_sampling_options(c, o->sampling);
  add_threads_option(c);
  c->callback([o, p, f] {
    o->has_prompt = p->count() > 0;
    o->has_prompt_file = f->count() > 0;
    run(*o);
  });
});

}  // namespace
}  // namespace etna::cli
