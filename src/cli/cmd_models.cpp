// The model library commands: `etna list [--json] [--scan]`, `etna show NAME`, `etna rm NAME`,
// `etna import PATH [--name NAME]`. Models live in <data>/models (see etna/hub/library.h).
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/info.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/hub/library.h"

namespace etna::cli {
namespace {

using json = nlohmann::ordered_json;

void out(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

std::string human_bytes(uint64_t n) {
  if (n >= (1ull << 30)) return fmt::format("{:.1f} GiB", n / double(1ull << 30));
  if (n >= (1ull << 20)) return fmt::format("{:.1f} MiB", n / double(1ull << 20));
  if (n >= (1ull << 10)) return fmt::format("{:.1f} KiB", n / double(1ull << 10));
  return fmt::format("{} B", n);
}

std::string human_params(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.1f}B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.1f}M", n / 1e6);
  if (n >= 1000ull) return fmt::format("{:.1f}K", n / 1e3);
  return std::to_string(n);
}

json manifest_json(const hub::Manifest& m) { return json::parse(m.to_json().dump()); }

void print_table(const std::vector<hub::Manifest>& models, const std::vector<hub::Manifest>& found) {
  std::string s = fmt::format("{:<40} {:>10} {:<8} {:<8} {:>7}  {:<34} {}\n", "NAME", "SIZE", "QUANT", "ARCH", "PARAMS",
                              "LICENCE", "SOURCE");
  auto row = [&s](const hub::Manifest& m, const std::string& source) {
    s += fmt::format("{:<40} {:>10} {:<8} {:<8} {:>7}  {:<34} {}\n", m.name, human_bytes(m.total_size()),
                     m.quantisation.empty() ? "-" : m.quantisation, m.architecture.empty() ? "-" : m.architecture,
                     human_params(m.parameters), m.licence.badge(), source);
  };
  for (const auto& m : models) row(m, m.source_kind + ":" + m.source);
  if (!found.empty()) {
    s += "\nfound elsewhere (read-only; `etna import PATH` adds one to the library):\n";
    for (const auto& m : found) row(m, m.source);
  }
  if (models.empty() && found.empty()) s += "(no models: `etna pull OWNER/REPO:QUANT` or `etna import FILE.gguf`)\n";
  out(s);
}

CommandRegistrar reg_list(25, [](CLI::App& root) {
  struct Opts {
    bool json = false, scan = false;
    std::string data;
  };
  auto o = std::make_shared<Opts>();
  auto* c = root.add_subcommand("list", "List the models in the library with size, quantisation and licence");
  c->add_flag("--json", o->json, "print a JSON array of manifests");
  c->add_flag("--scan", o->scan, "also list GGUF files in other tools' folders (Hugging Face cache, LM Studio)");
  c->add_option("--data", o->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->callback([o] {
    const auto lib = model_library(o->data);
    const auto models = lib.list();
    std::vector<hub::Manifest> found;
    if (o->scan) found = hub::scan_for_models(hub::default_scan_dirs());
    if (o->json) {
      json arr = json::array();
      for (const auto& m : models) arr.push_back(manifest_json(m));
      for (const auto& m : found) arr.push_back(manifest_json(m));
      out(arr.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      return;
    }
    print_table(models, found);
  });
});

CommandRegistrar reg_show(25, [](CLI::App& root) {
  struct Opts {
    std::string name, data;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = root.add_subcommand("show", "Show a library model: what `info` shows plus its source, files and licence");
  c->add_option("name", o->name, "model name (see `etna list`)")->required();
  c->add_flag("--json", o->json, "print one JSON object");
  c->add_option("--data", o->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->callback([o] {
    const auto lib = model_library(o->data);
    auto m = lib.find(o->name);
    if (!m) fail(ErrorKind::not_found, "no model named '{}' in the library (see `etna list`)", o->name);
    json d = json::object();
    const std::string main = m->main_path();
    if (main.size() > 5 && main.substr(main.size() - 5) == ".gguf") d = describe_model_file(main, false);
    json lib_json = manifest_json(*m);
    d["licence"] = lib_json["licence"];  // the library's record also knows the model card
    d["library"] = lib_json;
    if (o->json) {
      out(d.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
      return;
    }
    std::string s = fmt::format("{:<18} {}\n{:<18} {}{}\n", "model", m->name, "source", m->source_kind + ": " + m->source,
                                m->revision.empty() ? "" : " @ " + m->revision);
    s += fmt::format("{:<18} {}\n{:<18} {}\n", "pulled", m->pulled_at, "last used", m->last_used.empty() ? "never" : m->last_used);
    for (const auto& f : m->files)
      s += fmt::format("{:<18} {} ({}){}\n", "library file", f.path, human_bytes(f.size), f.sha256.empty() ? "" : " sha256 " + f.sha256);
    for (const auto& a : m->accepted) s += fmt::format("{:<18} {} for {} use on {}\n", "accepted", a.licence, a.use, a.at);
    out(s);
    if (d.contains("path")) print_model_description(d);
    else {
      std::string l;
      print_licence_lines(d["licence"], l);
      out(l);
    }
  });
});

CommandRegistrar reg_rm(25, [](CLI::App& root) {
  struct Opts {
    std::string name, data;
  };
  auto o = std::make_shared<Opts>();
  auto* c = root.add_subcommand("rm", "Remove a model from the library (deletes pulled files; imported files stay)");
  c->add_option("name", o->name, "model name")->required();
  c->add_option("--data", o->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->callback([o] {
    const auto lib = model_library(o->data);
    auto m = lib.find(o->name);
    if (!m) fail(ErrorKind::not_found, "no model named '{}' in the library (see `etna list`)", o->name);
    lib.remove(o->name);
    out(fmt::format("removed {}{}\n", o->name, m->owns_files ? fmt::format(" ({} freed)", human_bytes(m->total_size()))
                                                             : " (its files stay at " + m->main_path() + ")"));
  });
});

CommandRegistrar reg_import(25, [](CLI::App& root) {
  struct Opts {
    std::string path, name, data;
  };
  auto o = std::make_shared<Opts>();
  auto* c = root.add_subcommand("import", "Register an existing GGUF file in the library, in place (no copy)");
  c->add_option("path", o->path, "the .gguf file (the first shard of a split model)")->required();
  c->add_option("--name", o->name, "library name (default: the file name without .gguf)");
  c->add_option("--data", o->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->callback([o] {
    const auto lib = model_library(o->data);
    const auto m = lib.import_file(o->path, o->name);
    out(fmt::format("imported {} ({}, {}), licence {}\n", m.name, m.architecture, m.quantisation.empty() ? "-" : m.quantisation,
                    m.licence.summary()));
  });
});

}  // namespace
}  // namespace etna::cli
