// `etna synth`: write a random-weight GGUF with a real model's shape, for benchmarks.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "etna/hub/synth.h"

namespace etna::cli {
namespace {

struct SynthArgs {
  std::string shape, type = "q4_0", output;
  uint64_t seed = 1;
};

CommandRegistrar reg(80, [](CLI::App& root) {
  auto args = std::make_shared<SynthArgs>();
  std::vector<std::string> shapes;
  for (const auto& s : hub::synth_shapes()) shapes.push_back(s.name);
  auto* c = root.add_subcommand("synth",
                                "Write a random-weight GGUF model with a real model's shape, tensor types and tokenizer "
                                "layout (for benchmarks: speed does not depend on the weights' values)");
  c->add_option("--shape", args->shape, "model shape")->required()->check(CLI::IsMember(shapes));
  c->add_option("--type", args->type, "quantisation mix as llama.cpp writes it")
      ->check(CLI::IsMember({"q4_0", "q8_0", "q4_k_m"}))
      ->capture_default_str();
  c->add_option("-o,--output", args->output, "output .gguf file")->required();
  c->add_option("--seed", args->seed, "random seed")->capture_default_str();
  c->callback([args] {
    const bool tty = stdout_is_tty();
    hub::synthesize_model(args->shape, args->type, args->output, args->seed, [&](size_t done, size_t total) {
      if (tty) std::fprintf(stderr, "\rsynth: tensor %zu/%zu", done, total);
    });
    if (tty) std::fprintf(stderr, "\n");
    std::cout << "wrote " << args->output << " (" << args->shape << ", " << args->type << ", random weights)\n";
  });
});

}  // namespace
}  // namespace etna::cli
