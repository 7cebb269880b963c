// `-m NAME|PATH` for every command that loads a model: an existing file is used as is, anything
// else is looked up in the model library (<data>/models). The same options check the model's
// licence against the intended use (`--use personal|research|commercial`, default $ETNA_USE or
// personal) and record an explicit `--accept-licence` in the model's manifest.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "etna/hub/library.h"

namespace etna::cli {

// Adds `-m,--model` (bound to `model`) plus --use and --accept-licence to `c`. Once `c` is
// parsed, `model` is replaced by the file path it names, after the licence check (which throws
// etna::Error with one line naming the clause). The command's `--data` option, if it has one,
// chooses the library. Returns the -m option (for ->required()).
CLI::Option* add_model_option(CLI::App* c, std::string& model, const std::string& description);
// The same for a second model option (e.g. --embedding-model); shares --use / --accept-licence.
CLI::Option* add_extra_model_option(CLI::App* c, const std::string& name, std::string& model, const std::string& description);

// Adds `--data DIR` (where the library is) to a command that has no data directory option.
void add_library_option(CLI::App* c);

// The library under the data directory `data_arg` names (see data_dir()).
hub::Library model_library(const std::string& data_arg);

struct ResolvedModel {
  std::string path;
  std::string name;             // library name, or the file stem
  hub::LicenceRecord licence;
  bool in_library = false;
};
// Resolves `arg` (path or library name) and enforces `use` (recording acceptance when `accept`).
ResolvedModel resolve_model(const std::string& arg, hub::Use use, bool accept, const std::string& data_arg);

}  // namespace etna::cli
