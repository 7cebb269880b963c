// Command-line options shared by the commands that generate text (run, chat): the sampling
// parameters, with the engine's defaults. Values are validated by the engine (etna::Error).
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "etna/engine/sampler.h"

namespace etna::cli {

inline void add_sampling_options(CLI::App* c, engine::SamplingParams& p) {
  c->add_option("--temp", p.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  c->add_option("--top-k", p.top_k, "keep the K most likely tokens; 0 = all")->capture_default_str();
  c->add_option("--top-p", p.top_p, "keep the most likely tokens up to this probability mass, in (0, 1]")
      ->capture_default_str();
  c->add_option("--min-p", p.min_p, "drop tokens less likely than this fraction of the best one")
      ->capture_default_str();
  c->add_option("--repeat-penalty", p.repeat_penalty, "penalise tokens seen in the last --repeat-last-n; 1 = off")
      ->capture_default_str();
  c->add_option("--repeat-last-n", p.repeat_last_n, "how many recent tokens the penalties look at")
      ->capture_default_str();
  c->add_option("--presence-penalty", p.presence_penalty, "subtracted once from tokens already present, [-2, 2]")
      ->capture_default_str();
  c->add_option("--frequency-penalty", p.frequency_penalty, "subtracted per occurrence of a token, [-2, 2]")
      ->capture_default_str();
  c->add_option("--seed", p.seed, "random seed (same seed and settings give the same text); default: random");
  c->add_option("--stop", p.stop, "stop before this text (repeatable)")->take_all();
}

}  // namespace etna::cli
