// `etna eval`: perplexity (and KL divergence against a base model), multiple-choice tasks, and
// the leaderboard of stored results. The arithmetic lives in src/etna/eval/; this file reads
// options, shows progress and stores the figures.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "etna/base/error.h"
#include "etna/eval/choice.h"
#include "etna/eval/perplexity.h"
#include "etna/eval/results.h"
#include "etna/gguf/file_type.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

struct Common {
  std::string model;
  std::string file;
  std::string cache_type = "f32";
  std::string data;
  int threads = 0;
  bool json = false;
  bool no_save = false;
};

void add_common(CLI::App* c, Common& o, const char* file_help) {
  c->add_option("-m,--model", o.model, "GGUF model")->required();
  c->add_option("-f,--file", o.file, file_help)->required();
  c->add_option("--cache-type", o.cache_type, "KV cache type: f32, f16 or q8_0")->capture_default_str();
  c->add_option("--threads", o.threads, "threads (default: physical cores)");
  c->add_option("--data", o.data, "data folder holding the leaderboard (default: $ETNA_DATA or ~/.local/share/etna)");
  c->add_flag("--json", o.json, "print the result as JSON on stdout");
  c->add_flag("--no-save", o.no_save, "do not store the result in the leaderboard");
}

bool stderr_is_tty() { return ::isatty(2) != 0; }

struct Loaded {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tok;
};

Loaded load(const Common& o) {
  if (o.threads < 0) fail(ErrorKind::invalid_argument, "--threads cannot be negative");
  tensor::set_num_threads(o.threads);
  Loaded l;
  l.model = model::Model::load(o.model);
  l.tok = tokenizer::Tokenizer::from_gguf(l.model->file());
  return l;
}

// A leaderboard row template describing the model and the dataset.
eval::ResultRow row_for(const Common& o, const model::Model& m, const std::string& task, const ordered_json& settings) {
  eval::ResultRow r;
  r.model = fs::path(o.model).stem().string();
  r.quantisation = gguf::file_type_name(m.file());
  std::error_code ec;
  r.file_bytes = fs::file_size(o.model, ec);
  r.task = task;
  r.dataset = fs::path(o.file).filename().string();
  r.settings = settings.dump();
  return r;
}

void save(const Common& o, std::vector<eval::ResultRow> rows) {
  if (o.no_save) return;
  auto store = eval::ResultStore::open(eval::results_path(data_dir(o.data)));
  store->add_run(std::move(rows));
}

// ---- perplexity ---------------------------------------------------------------------------------

struct PplArgs : Common {
  int ctx = 512;
  int batch = 2048;
  int chunks = 0;
  std::string kl_base;
};

void run_perplexity(const PplArgs& a) {
  Loaded l = load(a);
  eval::PerplexityOptions opt;
  opt.n_ctx = a.ctx;
  opt.n_batch = a.batch;
  opt.max_chunks = a.chunks;
  opt.cache_type = model::parse_kv_type(a.cache_type);
  const std::vector<int32_t> tokens = eval::perplexity_tokens(*l.tok, eval::read_text_file(a.file));
  const int n_vocab = l.model->config().n_vocab;
  const tokenizer::Vocab& vocab = l.tok->vocab();
  const int32_t bos = vocab.add_bos && vocab.bos != tokenizer::kNoToken ? vocab.bos : eval::kNoBos;

  std::unique_ptr<eval::KlBaseWriter> writer;
  std::unique_ptr<eval::KlComparer> comparer;
  eval::LogprobSink sink;
  if (!a.kl_base.empty()) {
    if (fs::exists(a.kl_base)) {
      comparer = std::make_unique<eval::KlComparer>(a.kl_base, n_vocab, a.ctx, tokens);
      sink = [&](const float* lp, int, int32_t next) { comparer->add(lp, next); };
      std::fprintf(stderr, "etna: comparing with the KL base %s\n", a.kl_base.c_str());
    } else {
      writer = std::make_unique<eval::KlBaseWriter>(a.kl_base, n_vocab, a.ctx, tokens);
      sink = [&](const float* lp, int, int32_t next) { writer->add(lp, next); };
      std::fprintf(stderr, "etna: saving this model's log-probabilities as the KL base %s\n", a.kl_base.c_str());
    }
  }
  const bool tty = stderr_is_tty();
  if (!a.json) std::fprintf(stderr, "etna: %zu tokens, %d chunks of %d\n", tokens.size(),
                            a.chunks > 0 ? std::min<int>(a.chunks, static_cast<int>(tokens.size()) / a.ctx)
                                         : static_cast<int>(tokens.size()) / a.ctx, a.ctx);
  auto progress = [&](const eval::ChunkScore& c, int n) {
    if (tty) std::fprintf(stderr, "\r[%d/%d] PPL %.4f", c.index + 1, n, c.running_ppl);
    else std::fprintf(stderr, "[%d/%d] PPL %.4f\n", c.index + 1, n, c.running_ppl);
    if (tty && c.index + 1 == n) std::fprintf(stderr, "\n");
  };
  const eval::PerplexityResult r = eval::perplexity(*l.model, tokens, bos, opt, progress, sink);
  if (writer) writer->finish();

  ordered_json settings = {{"ctx", a.ctx}, {"batch", std::min(a.batch, a.ctx)}, {"chunks", r.n_chunks},
                           {"cache_type", a.cache_type}};
  ordered_json out = {{"model", a.model}, {"file", a.file}, {"tokens", r.n_tokens}, {"chunks", r.n_chunks},
                      {"scored", r.nll.count}, {"ppl", r.ppl()}, {"ppl_stderr", r.ppl_stderr()},
                      {"nll", r.nll.mean()}};
  std::vector<eval::ResultRow> rows;
  eval::ResultRow base = row_for(a, *l.model, "perplexity", settings);
  eval::ResultRow ppl = base;
  ppl.metric = "ppl";
  ppl.value = r.ppl();
  ppl.error = r.ppl_stderr();
  rows.push_back(ppl);
  if (comparer) {
    const eval::KlResult k = comparer->result();
    out["kl"] = {{"base", a.kl_base}, {"positions", k.positions}, {"mean_kl", k.mean_kl}, {"kl_stderr", k.kl_stderr},
                 {"max_kl", k.max_kl}, {"top1_agreement", k.top1_agreement}, {"base_ppl", k.base_ppl},
                 {"ppl", k.ppl}, {"delta_ppl", k.delta_ppl()}};
    eval::ResultRow kl = base;
    kl.task = "kl";
    kl.dataset += " vs " + fs::path(a.kl_base).filename().string();
    for (auto [metric, value, err] : {std::tuple{"mean_kl", k.mean_kl, k.kl_stderr}, std::tuple{"top1", k.top1_agreement, 0.0},
                                      std::tuple{"delta_ppl", k.delta_ppl(), 0.0}}) {
      kl.metric = metric;
      kl.value = value;
      kl.error = err;
      rows.push_back(kl);
    }
  }
  save(a, std::move(rows));
  if (a.json) {
    std::cout << out.dump() << "\n";
    return;
  }
  std::cout << fmt::format("PPL = {:.4f} +/- {:.5f}  ({} chunks of {} tokens, {} tokens scored)\n", r.ppl(),
                           r.ppl_stderr(), r.n_chunks, a.ctx, r.nll.count);
  if (comparer) {
    const eval::KlResult k = comparer->result();
    std::cout << fmt::format("KL divergence from the base: mean {:.6f} +/- {:.6f}, max {:.6f} nats ({} positions)\n",
                             k.mean_kl, k.kl_stderr, k.max_kl, k.positions);
    std::cout << fmt::format("same top token: {:.3f} %   PPL base {:.4f}, this {:.4f}, difference {:+.4f}\n",
                             100 * k.top1_agreement, k.base_ppl, k.ppl, k.delta_ppl());
  }
}

// ---- multiple choice ----------------------------------------------------------------------------

struct ChoiceArgs : Common {
  int ctx = 2048;
  int limit = 0;
  uint64_t seed = 1;
};

void run_choice(const ChoiceArgs& a, bool hellaswag) {
  std::vector<eval::ChoiceTask> tasks = hellaswag ? eval::read_hellaswag(a.file) : eval::read_choice_jsonl(a.file);
  Loaded l = load(a);
  eval::ChoiceOptions opt;
  opt.n_ctx = a.ctx;
  opt.limit = a.limit;
  opt.seed = a.seed;
  opt.cache_type = model::parse_kv_type(a.cache_type);
  const bool tty = stderr_is_tty();
  auto progress = [&](int done, int total, const eval::ChoiceResult& r) {
    std::fprintf(stderr, tty ? "\r[%d/%d] acc %.2f %%  acc_norm %.2f %%" : "[%d/%d] acc %.2f %%  acc_norm %.2f %%\n", done,
                 total, 100 * r.acc.value(), 100 * r.acc_norm.value());
    if (tty && done == total) std::fprintf(stderr, "\n");
  };
  const eval::ChoiceResult r = eval::evaluate_choices(*l.model, *l.tok, std::move(tasks), opt, progress);
  const char* task = hellaswag ? "hellaswag" : "choice";
  ordered_json settings = {{"ctx", a.ctx}, {"limit", a.limit}, {"seed", a.seed}, {"cache_type", a.cache_type}};
  auto acc_json = [](const eval::Accuracy& x) {
    return ordered_json{{"value", x.value()}, {"correct", x.correct}, {"total", x.total}, {"stderr", x.stderr_of_mean()},
                        {"ci95", {x.low(), x.high()}}};
  };
  std::vector<eval::ResultRow> rows;
  eval::ResultRow base = row_for(a, *l.model, task, settings);
  for (auto [metric, acc] : {std::pair{"acc", &r.acc}, std::pair{"acc_norm", &r.acc_norm}}) {
    eval::ResultRow row = base;
    row.metric = metric;
    row.value = acc->value();
    row.error = acc->stderr_of_mean();
    rows.push_back(row);
  }
  save(a, std::move(rows));
  if (a.json) {
    std::cout << ordered_json{{"model", a.model}, {"file", a.file}, {"task", task}, {"tasks", r.acc.total},
                              {"acc", acc_json(r.acc)}, {"acc_norm", acc_json(r.acc_norm)}}.dump()
              << "\n";
    return;
  }
  for (auto [name, acc] : {std::pair{"acc     ", &r.acc}, std::pair{"acc_norm", &r.acc_norm}})
    std::cout << fmt::format("{} {:.2f} %  ({} of {}; 95 % interval {:.1f}-{:.1f} %)\n", name, 100 * acc->value(),
                             acc->correct, acc->total, 100 * acc->low(), 100 * acc->high());
}

// ---- leaderboard --------------------------------------------------------------------------------

struct ListArgs {
  std::string task;
  std::string data;
  bool json = false;
};

void run_list(const ListArgs& a) {
  auto store = eval::ResultStore::open(eval::results_path(data_dir(a.data)));
  const std::vector<eval::ResultRow> rows = store->list(a.task);
  if (a.json) {
    ordered_json out = ordered_json::array();
    for (const auto& r : rows)
      out.push_back({{"run", r.run}, {"date", r.date}, {"model", r.model}, {"quantisation", r.quantisation},
                     {"file_bytes", r.file_bytes}, {"task", r.task}, {"dataset", r.dataset},
                     {"settings", ordered_json::parse(r.settings, nullptr, false)}, {"metric", r.metric},
                     {"value", r.value}, {"error", r.error}});
    std::cout << out.dump() << "\n";
    return;
  }
  if (rows.empty()) {
    std::cout << "no evaluation results yet (run `etna eval perplexity` or `etna eval hellaswag`)\n";
    return;
  }
  std::cout << fmt::format("{:>4}  {:<20}  {:<28}  {:<8}  {:<10}  {:<24}  {:<10}  {}\n", "run", "date", "model", "quant",
                           "task", "dataset", "metric", "value");
  for (const auto& r : rows) {
    std::string value = r.error > 0 ? fmt::format("{:.4f} +/- {:.4f}", r.value, r.error) : fmt::format("{:.4f}", r.value);
    std::cout << fmt::format("{:>4}  {:<20}  {:<28}  {:<8}  {:<10}  {:<24}  {:<10}  {}\n", r.run, r.date, r.model,
                             r.quantisation, r.task, r.dataset, r.metric, value);
  }
}

CommandRegistrar reg(75, [](CLI::App& root) {
  auto* eval = root.add_subcommand("eval", "Evaluate models: perplexity, KL divergence, multiple choice; the leaderboard");
  eval->require_subcommand(1);

  auto ppl = std::make_shared<PplArgs>();
  auto* p = eval->add_subcommand("perplexity", "Perplexity of a text, computed as llama.cpp's llama-perplexity does");
  add_common(p, *ppl, "the text file");
  p->add_option("-c,--ctx", ppl->ctx, "tokens per chunk")->capture_default_str();
  p->add_option("-b,--batch", ppl->batch, "tokens per forward pass (at most -c)")->capture_default_str();
  p->add_option("--chunks", ppl->chunks, "score at most this many chunks (0 = all)")->capture_default_str();
  p->add_option("--kl-base", ppl->kl_base,
                "KL divergence: saves this model's log-probabilities to FILE when it does not exist, otherwise "
                "compares this model with the saved base (mean KL, same top token, PPL difference)");
  p->callback([ppl] { run_perplexity(*ppl); });

  auto hs = std::make_shared<ChoiceArgs>();
  auto* h = eval->add_subcommand("hellaswag", "HellaSwag accuracy from llama.cpp's 6-lines-per-task text file");
  add_common(h, *hs, "the task file (context, gold index, 4 endings per task)");
  h->add_option("-c,--ctx", hs->ctx, "longest context + ending in tokens")->capture_default_str();
  h->add_option("--limit", hs->limit, "evaluate this many tasks, drawn with --seed (0 = all)")->capture_default_str();
  h->add_option("--seed", hs->seed, "seed for drawing --limit tasks")->capture_default_str();
  h->callback([hs] { run_choice(*hs, true); });

  auto mc = std::make_shared<ChoiceArgs>();
  auto* m = eval->add_subcommand("choice", "Multiple-choice accuracy (ARC, MMLU, Winogrande or generic JSON Lines)");
  add_common(m, *mc, "the JSON Lines task file");
  m->add_option("-c,--ctx", mc->ctx, "longest question + choice in tokens")->capture_default_str();
  m->add_option("--limit", mc->limit, "evaluate this many tasks, drawn with --seed (0 = all)")->capture_default_str();
  m->add_option("--seed", mc->seed, "seed for drawing --limit tasks")->capture_default_str();
  m->callback([mc] { run_choice(*mc, false); });

  auto ls = std::make_shared<ListArgs>();
  auto* l = eval->add_subcommand("list", "The leaderboard: every stored evaluation result, newest first");
  l->add_option("--task", ls->task, "only this task (perplexity, kl, hellaswag, choice)");
  l->add_option("--data", ls->data, "data folder (default: $ETNA_DATA or ~/.local/share/etna)");
  l->add_flag("--json", ls->json, "JSON output");
  l->callback([ls] { run_list(*ls); });
});

}  // namespace
}  // namespace etna::cli
