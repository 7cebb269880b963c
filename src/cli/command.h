// Every `etna` subcommand lives in its own cmd_<name>.cpp and registers itself here, so adding a
// command touches no other file. A command's callback reports failure by throwing etna::Error;
// main() prints it as one line on stderr and exits non-zero.
#pragma once
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace etna::cli {

using CommandSetup = std::function<void(CLI::App& root)>;

// Registers a subcommand. `order` sorts the help listing (smaller first).
struct CommandRegistrar {
  CommandRegistrar(int order, CommandSetup setup);
};

// Thread count default: the number of physical cores (at least 1).
int default_threads();

// Adds `-t, --threads N` (the model's compute threads, tensor::set_num_threads) to a command.
void add_threads_option(CLI::App* c);

// True when stdout is a terminal.
bool stdout_is_tty();

}  // namespace etna::cli
