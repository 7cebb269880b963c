// `etna bench -m MODEL.gguf [-p 512] [-n 128] [-t N] [-r 3] [--json]`: prompt-processing and
// generation speed (min / median / max tokens per second), the weight bytes each generated token
// reads, the machine's read bandwidth measured in the same run and the resulting roofline ratio,
// and resident memory against weights + KV cache.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "etna/gguf/file_type.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/engine/bench.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"

namespace etna::cli {
namespace {

using json = nlohmann::ordered_json;

struct BenchArgs {
  std::string model;
  int n_prompt = 512, n_gen = 128, threads = 0, reps = 3;
  std::string cache_type = "f32";
  bool json = false;
};

json rate_json(const engine::RateStats& s) { return {{"min", s.min}, {"median", s.median}, {"max", s.max}}; }

void bench(const BenchArgs& a) {
  if (a.threads < 0) fail(ErrorKind::invalid_argument, "-t must be >= 0 (got {})", a.threads);
  engine::BenchOptions o;
  o.n_prompt = a.n_prompt;
  o.n_gen = a.n_gen;
  o.repetitions = a.reps;
  o.cache_type = model::parse_kv_type(a.cache_type);
  tensor::set_num_threads(a.threads);  // 0: the tensor layer's default (physical cores)

  // The process's own footprint (code, libraries) before the model, so the memory check
  // compares what the model added against weights + KV cache.
  const engine::ResidentMemory baseline = engine::resident_memory();
  auto model = model::Model::load(a.model);
  const bool tty = isatty(fileno(stderr));
  const engine::BenchResult r = engine::run_bench(*model, o, [&](const std::string& line) {
    if (tty) std::fprintf(stderr, "bench: %s\n", line.c_str());
  });
  const uint64_t budget = r.memory.weights + r.memory.kv_total;
  const uint64_t added = r.resident.current > baseline.current ? r.resident.current - baseline.current : 0;
  const double rss_ratio = budget ? static_cast<double>(added) / budget : 0.0;

  if (a.json) {
    json j;
    j["model"] = a.model;
    j["name"] = model->config().name;
    j["type"] = gguf::file_type_name(model->file());
    j["threads"] = r.threads;
    j["kernels"] = r.kernels;
    j["cache_type"] = model::kv_type_name(o.cache_type);
    j["n_prompt"] = o.n_prompt;
    j["n_gen"] = o.n_gen;
    j["repetitions"] = o.repetitions;
    j["pp_tps"] = rate_json(r.pp_tps);
    j["tg_tps"] = rate_json(r.tg_tps);
    j["tg_median_tps"] = r.tg_tps.median;  // flat copy for simple scrapers
    j["bytes_per_token"] = r.bytes_per_token;
    j["bandwidth_gbps"] = r.bandwidth_gbps;
    j["roofline"] = r.roofline;
    json runs = json::array();
    for (const auto& run : r.roofline_runs)
      runs.push_back({{"tg_tps", run.tg_tps}, {"bandwidth_gbps", run.bandwidth_gbps}, {"roofline", run.roofline}});
    j["roofline_runs"] = runs;
    json peaks = json::object();
    for (const auto& p : r.int8_peaks) peaks[p.kernels] = p.gops;
    j["int8_peak_gops"] = peaks;
    j["layer_weights"] = r.layer_weights;
    j["prompt_gops"] = r.prompt_gops;
    j["prompt_peak_fraction"] = r.prompt_peak;
    j["memory"] = {{"weights", r.memory.weights},         {"kv_cache", r.memory.kv_total},
                   {"n_ctx", r.memory.n_ctx},             {"scratch_estimate", r.memory.scratch},
                   {"rss", r.resident.current},           {"rss_peak", r.resident.peak},
                   {"rss_before_load", baseline.current}, {"rss_added", added},
                   {"rss_over_weights_kv", rss_ratio},    {"within_10_percent", rss_ratio <= 1.10}};
    std::string s = j.dump() + "\n";
    std::fwrite(s.data(), 1, s.size(), stdout);
    return;
  }
  std::string out;
  out += fmt::format("model      {} ({}, {})\n", a.model, gguf::file_type_name(model->file()), model->config().name);
  out += fmt::format("threads    {} ({} kernels), KV cache {}\n", r.threads, r.kernels, model::kv_type_name(o.cache_type));
  if (o.n_prompt > 0)
    out += fmt::format("pp{:<7} {:9.2f} t/s median (min {:.2f}, max {:.2f}, {} runs)\n", o.n_prompt, r.pp_tps.median,
                       r.pp_tps.min, r.pp_tps.max, o.repetitions);
  if (o.n_gen > 0)
    out += fmt::format("tg{:<7} {:9.2f} t/s median (min {:.2f}, max {:.2f}, {} runs)\n", o.n_gen, r.tg_tps.median,
                       r.tg_tps.min, r.tg_tps.max, o.repetitions);
  out += fmt::format("weights    {:.1f} MiB read per generated token\n", r.bytes_per_token / 1048576.0);
  out += fmt::format("bandwidth  {:.2f} GB/s read ({} threads, {})\n", r.bandwidth_gbps, r.threads,
                     o.n_gen > 0 ? "median of the measurements right after each generation run" : "measured now");
  if (o.n_gen > 0) {
    out += fmt::format("roofline   {:.2f} of the memory-bound ideal (median over the runs:", r.roofline);
    for (const auto& run : r.roofline_runs) out += fmt::format(" {:.2f}", run.roofline);
    out += ")\n";
  }
  if (!r.int8_peaks.empty()) {
    out += "int8 peak ";
    for (const auto& p : r.int8_peaks) out += fmt::format(" {} {:.0f}", p.kernels, p.gops);
    out += " G ops/s (2 per multiply-add, measured now)\n";
    if (o.n_prompt > 0)
      out += fmt::format("prompt     {:.0f} G ops/s = {:.2f} of the int8 peak ({} layer weights per token)\n",
                         r.prompt_gops, r.prompt_peak, r.layer_weights);
  }
  out += fmt::format("memory     RSS +{:.1f} MiB since before loading (total {:.1f}, peak {:.1f}) vs weights + KV {:.1f} MiB: {:.2f}x{}\n",
                     added / 1048576.0, r.resident.current / 1048576.0, r.resident.peak / 1048576.0, budget / 1048576.0, rss_ratio,
                     rss_ratio <= 1.10 ? "" : " (over the 10% goal)");
  std::fwrite(out.data(), 1, out.size(), stdout);
}

CommandRegistrar reg(60, [](CLI::App& root) {
  auto* c = root.add_subcommand("bench", "Measure prompt-processing and generation speed against the memory roofline");
  auto a = std::make_shared<BenchArgs>();
  add_model_option(c, a->model, "the .gguf model file")->required();
  add_library_option(c);
  c->add_option("-p,--n-prompt", a->n_prompt, "prompt tokens evaluated in one batch (0 = skip)")->capture_default_str();
  c->add_option("-n,--n-gen", a->n_gen, "tokens generated one at a time (0 = skip)")->capture_default_str();
  c->add_option("-t,--threads", a->threads, "threads (default: all cores)");
  c->add_option("-r,--repetitions", a->reps, "timed runs of each test, after one warm-up")->capture_default_str();
  c->add_option("--cache-type", a->cache_type, "KV cache type: f32, f16 or q8_0")->capture_default_str();
  c->add_flag("--json", a->json, "print one JSON object");
  c->callback([a] { bench(*a); });
});

}  // namespace
}  // namespace etna::cli
