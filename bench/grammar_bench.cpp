// Per-token cost of grammar-constrained decoding (engine/grammar.h), measured in one run against
// the unconstrained baseline:
//   1. end to end on the scheduler: the same model and prompt generating N tokens freely and under
//      a JSON-schema grammar (both stop only at N: the end-of-generation token is biased away);
//   2. the mask alone, replaying the constrained tokens: first with an empty per-state cache (every
//      state walks the vocabulary trie), then again with the cache warm.
// Usage: grammar_bench [model.gguf] [tokens]   (default ../shared/models/tiny-llama-spm-q8_0.gguf, 256)
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "etna/engine/grammar.h"
#include "etna/engine/json_schema.h"
#include "etna/engine/scheduler.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

using namespace etna;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Run {
  double seconds = 0;
  std::vector<tokenizer::Token> tokens;
};

Run generate(engine::Scheduler& s, engine::GenerationRequest r) {
  Run out;
  const auto t0 = Clock::now();
  auto stream = s.submit(std::move(r));
  engine::GenerationEvent e;
  for (;;) {
    if (!stream->next(e, std::chrono::milliseconds(1000))) continue;
    out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
    if (e.done) break;
  }
  out.seconds = seconds_since(t0);
  if (!e.error.empty()) std::fprintf(stderr, "generation failed: %s\n", e.error.c_str());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "../shared/models/tiny-llama-spm-q8_0.gguf";
  const int n = argc > 2 ? std::atoi(argv[2]) : 256;
  try {
    auto model = model::Model::load(path);
    auto tok = tokenizer::Tokenizer::from_gguf(model->file());
    engine::SchedulerOptions so;
    so.n_parallel = 1;
    so.n_ctx = 1024;
    engine::Scheduler sched(*model, *tok, so);

    const auto schema = nlohmann::ordered_json::parse(R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":120},
      "tags":{"type":"array","items":{"type":"string"}},"notes":{"type":"string"}},
      "required":["name","age","tags","notes"],"additionalProperties":false})");
    auto grammar = engine::Grammar::parse(engine::json_schema_to_gbnf(schema));
    auto fresh_grammar = [&] { return engine::Grammar::parse(engine::json_schema_to_gbnf(schema)); };

    engine::GenerationRequest base;
    base.prompt = tok->encode("Reply as JSON:");
    base.params.temperature = 1.0f;
    base.params.seed = 7;
    base.params.max_tokens = n;
    for (int t = 0; t < model->config().n_vocab; ++t)
      if (tok->vocab().is_end_of_generation(t)) base.logit_bias.emplace_back(t, -1e30f);

    // Warm up (page in the weights), then alternate free and constrained runs; best of 3 each.
    generate(sched, base);
    // Constrained runs: a new Grammar object each time (cold masks, as a first request with a
    // schema), and the same object again (warm masks shared through the scheduler, as repeated
    // requests with one schema get from Grammar::cached).
    double free_best = 1e30, constrained_best = 1e30, repeat_best = 1e30;
    size_t free_tokens = 0, constrained_tokens = 0;
    Run constrained;
    for (int rep = 0; rep < 3; ++rep) {
      Run f = generate(sched, base);
      engine::GenerationRequest g = base;
      g.grammar = fresh_grammar();
      Run c = generate(sched, g);
      Run again = generate(sched, g);
      if (!again.tokens.empty()) repeat_best = std::min(repeat_best, again.seconds / static_cast<double>(again.tokens.size()));
      if (!f.tokens.empty() && f.seconds / static_cast<double>(f.tokens.size()) < free_best) {
        free_best = f.seconds / static_cast<double>(f.tokens.size());
        free_tokens = f.tokens.size();
      }
      if (!c.tokens.empty() && c.seconds / static_cast<double>(c.tokens.size()) < constrained_best) {
        constrained_best = c.seconds / static_cast<double>(c.tokens.size());
        constrained_tokens = c.tokens.size();
        constrained = c;
      }
    }

    // The mask alone, replaying the constrained tokens.
    std::vector<std::string> pieces(static_cast<size_t>(model->config().n_vocab));
    for (size_t t = 0; t < pieces.size(); ++t)
      if (!tok->vocab().is_control(static_cast<int>(t))) pieces[t] = tok->token_to_piece(static_cast<int>(t));
    auto trie = std::make_shared<engine::TokenTrie>(pieces);
    std::vector<float> logits(pieces.size());
    auto replay = [&](engine::GrammarMasker& masker) {
      engine::GrammarState state(grammar);
      const auto t0 = Clock::now();
      for (auto t : constrained.tokens) {
        std::fill(logits.begin(), logits.end(), 0.0f);
        masker.apply(state, logits, {});
        state.feed(pieces[static_cast<size_t>(t)]);
      }
      return seconds_since(t0) / static_cast<double>(std::max<size_t>(1, constrained.tokens.size()));
    };
    engine::GrammarMasker masker(trie);
    const double cold = replay(masker);
    const uint64_t misses = masker.cache_misses();
    const double warm = replay(masker);

    std::printf("model %s, vocabulary %zu, trie nodes %zu\n", path.c_str(), pieces.size(), trie->nodes().size());
    std::printf("end to end (best of 3): free %.1f us/token (%zu tokens), json-schema grammar %.1f us/token (%zu tokens)\n",
                free_best * 1e6, free_tokens, constrained_best * 1e6, constrained_tokens);
    std::printf("overhead %.1f us/token, ratio %.2fx (first use of the grammar)\n", (constrained_best - free_best) * 1e6,
                constrained_best / free_best);
    std::printf("same grammar again: %.1f us/token, overhead %.1f us/token, ratio %.2fx\n", repeat_best * 1e6,
                (repeat_best - free_best) * 1e6, repeat_best / free_best);
    std::printf("mask alone over %zu tokens: %.1f us/token with a cold cache (%llu distinct states), %.1f us/token warm\n",
                constrained.tokens.size(), cold * 1e6, static_cast<unsigned long long>(misses), warm * 1e6);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grammar_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
