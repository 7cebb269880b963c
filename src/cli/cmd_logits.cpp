// `etna logits`: the top-K logits at every prompt position, as JSON, for comparing the forward
// pass with other engines (the same shape as ../shared/reference's "positions").
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string prompt;
  int top = 40;
  int ctx = 4096;
  int batch = 512;
  std::string cache_type = "f32";
};

// The k largest entries of row[0..n) as [id, logit], largest first (lower id first on ties).
nlohmann::ordered_json top_k(const float* row, int n, int k) {
  std::vector<int> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  k = std::min(k, n);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [row](int a, int b) {
    return row[a] != row[b] ? row[a] > row[b] : a < b;
  });
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (int i = 0; i < k; ++i) out.push_back({ids[i], row[ids[i]]});
  return out;
}

void run(const LogitsArgs& a) {
  if (a.top < 1) fail(ErrorKind::invalid_argument, "--top must be at least 1");
  if (a.ctx < 1) fail(ErrorKind::invalid_argument, "--ctx must be at least 1");
  if (a.batch < 1) fail(ErrorKind::invalid_argument, "--batch must be at least 1");
  const model::KvType cache_type = model::parse_kv_type(a.cache_type);
  auto model = model::Model::load(a.model);
  auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  tokenizer::EncodeOptions opt;
  opt.add_special = true;
  const std::vector<tokenizer::Token> tokens = tok->encode(a.prompt, opt);
  if (tokens.empty()) fail(ErrorKind::invalid_argument, "the prompt gives no tokens");

  // The cache only needs the prompt's cells; a prompt longer than --ctx still gets the
  // model's "longer than the context" error.
  const int n = static_cast<int>(tokens.size());
  auto cache = model->make_cache(1, std::min(a.ctx, n), cache_type);
  const int n_vocab = model->config().n_vocab;
  nlohmann::ordered_json positions = nlohmann::ordered_json::array();
  std::vector<float> logits;
  for (int start = 0; start < n; start += a.batch) {
    model::Batch b;
    for (int i = start; i < std::min(n, start + a.batch); ++i) b.add(tokens[i], i, 0, true);
    model->forward(b, *cache, logits);
    for (size_t r = 0; r < b.size(); ++r) {
      const float* row = &logits[r * n_vocab];
      const float mx = *std::max_element(row, row + n_vocab);
      double sum = 0;
      for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - mx);
      positions.push_back({{"top", top_k(row, n_vocab, a.top)}, {"lse", mx + std::log(sum)}});
    }
  }
  nlohmann::ordered_json out = {{"tokens", tokens}, {"positions", std::move(positions)}};
  std::cout << out.dump() << "\n";
}

CommandRegistrar reg(45, [](CLI::App& root) {
  auto args = std::make_shared<LogitsArgs>();
  auto* c = root.add_subcommand("logits", "Print the top logits at every prompt position as JSON");
  add_model_option(c, args->model, "GGUF model")->required();
  add_library_option(c);
  c->add_option("-p,--prompt", args->prompt, "the prompt (tokenised with BOS as the vocabulary asks)")->required();
  c->add_option("--top", args->top, "logits per position, largest first")->capture_default_str();
  c->add_option("--ctx", args->ctx, "context size: longer prompts are an error")->capture_default_str();
  c->add_option("--batch", args->batch, "tokens per forward pass")->capture_default_str();
  c->add_option("--cache-type", args->cache_type, "KV cache type: f32, f16 or q8_0 (to compare with an engine run "
                "with that cache)")->capture_default_str();
  c->callback([args] { run(*args); });
});

}  // namespace
}  // namespace etna::cli
