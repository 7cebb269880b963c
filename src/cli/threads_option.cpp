// `-t, --threads N` for the commands that run a model: how many threads the matrix kernels use.
#include "cli/command.h"
#include "etna/tensor/tensor.h"

namespace etna::cli {

void add_threads_option(CLI::App* c) {
  c->add_option_function<int>(
       "-t,--threads", [](const int& n) { tensor::set_num_threads(n); },
       "threads for the model's computation (default: the physical cores)")
      ->check(CLI::NonNegativeNumber);
}

}  // namespace etna::cli
