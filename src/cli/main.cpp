#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>
#include <unistd.h>
#include <vector>

#include "cli/command.h"
#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/model/model.h"

namespace etna::cli {
namespace {
std::vector<std::pair<int, CommandSetup>>& registry() {
  static std::vector<std::pair<int, CommandSetup>> r;
  return r;
}
}  // namespace

CommandRegistrar::CommandRegistrar(int order, CommandSetup setup) { registry().emplace_back(order, std::move(setup)); }

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

bool stdout_is_tty() { return isatty(STDOUT_FILENO) != 0; }

}  // namespace etna::cli

int main(int argc, char** argv) {
  etna::log::init();
  CLI::App app{"Etna: a private, self-hosted AI stack in one program (models, server, vector store, documents)", "etna"};
  app.set_version_flag("--version", std::string("etna ") + ETNA_VERSION);
  app.add_flag_callback("--no-repack", [] { etna::model::Model::set_repack(false); },
                        "keep weights in the file's layout (no interleaved Q4_0/Q8_0 rows); also ETNA_REPACK=0");
  app.require_subcommand(1);
  app.fallthrough(false);
  auto& reg = etna::cli::registry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, setup] : reg) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const etna::Error& e) {
    std::fflush(stdout);
    std::cerr << "etna: error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::cerr << "etna: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "etna: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
