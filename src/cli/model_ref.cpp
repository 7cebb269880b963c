#include "cli/model_ref.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/data_dir.h"
#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"

namespace etna::cli {
namespace fs = std::filesystem;

namespace {

struct UseOptions {
  std::string use;
  bool accept = false;
  bool added = false;
};

// One UseOptions per subcommand (the subcommands live as long as the program).
UseOptions& use_options_of(CLI::App* c) {
  static std::vector<std::pair<CLI::App*, std::unique_ptr<UseOptions>>> all;
  for (auto& [app, o] : all)
    if (app == c) return *o;
  all.emplace_back(c, std::make_unique<UseOptions>());
  auto& o = *all.back().second;
  return o;
}

hub::Use effective_use(const UseOptions& o) {
  if (!o.use.empty()) return hub::parse_use(o.use);
  if (const char* e = std::getenv("ETNA_USE"); e && *e) return hub::parse_use(e);
  return hub::Use::personal;
}

std::string data_arg_of(CLI::App* c) {
  const CLI::Option* d = c->get_option_no_throw("--data");
  if (!d || d->count() == 0) return "";
  return d->as<std::string>();
}

void add_use_options(CLI::App* c) {
  UseOptions& o = use_options_of(c);
  if (o.added) return;
  o.added = true;
  c->add_option("--use", o.use,
                "what you use the model for: personal, research or commercial (default $ETNA_USE or personal); a "
                "model whose licence forbids it is refused");
  c->add_flag("--accept-licence", o.accept,
              "accept the model's licence conditions for this --use (recorded in the model's library manifest)");
}

}  // namespace

void add_library_option(CLI::App* c) {
  static std::vector<std::unique_ptr<std::string>> values;
  values.push_back(std::make_unique<std::string>());
  c->add_option("--data", *values.back(), "Data directory holding the model library (default $ETNA_DATA or ~/.local/share/etna)");
}

hub::Library model_library(const std::string& data_arg) { return hub::Library(data_dir(data_arg) / "models"); }

ResolvedModel resolve_model(const std::string& arg, hub::Use use, bool accept, const std::string& data_arg) {
  ResolvedModel r;
  std::error_code ec;
  std::optional<hub::Manifest> m;
  // A library is only needed for names; a plain path works without any data directory.
  auto library = [&]() -> std::optional<hub::Library> {
    try {
      return model_library(data_arg);
    } catch (const Error&) {
      return std::nullopt;
    }
  };
  if (fs::exists(arg, ec)) {
    r.path = arg;
    r.name = fs::path(arg).stem().string();
    if (auto lib = library()) m = lib->find_by_path(arg);
    if (m) {
      r.licence = m->licence;
      r.name = m->name;
      r.in_library = true;
    } else if (fs::is_regular_file(arg, ec)) {
      try {
        r.licence = hub::licence_from_gguf(*gguf::GgufFile::open(arg));
      } catch (const Error&) {
        // Not a GGUF the reader accepts: the command's own load reports it.
      }
    }
  } else {
    auto lib = library();
    if (lib && hub::valid_model_name(arg)) m = lib->find(arg);
    if (!m)
      fail(ErrorKind::not_found, "model {} is neither a file nor a model in the library{} (see `etna list`)", arg,
           lib ? " " + lib->root().string() : "");
    r.path = m->main_path();
    r.name = m->name;
    r.licence = m->licence;
    r.in_library = true;
    if (!fs::exists(r.path, ec))
      fail(ErrorKind::not_found, "model {}: its file {} is missing (pull it again, or `etna rm {}`)", arg, r.path, arg);
  }

  const hub::UseCheck check = hub::check_use(r.licence, use);
  if (!check.allowed) {
    if (check.refused) fail(ErrorKind::invalid_argument, "model {} refused for {} use: {}", r.name, hub::to_string(use), check.message);
    const std::string licence_id = r.licence.known() ? std::string(r.licence.terms->id) : (r.licence.id.empty() ? "unknown" : r.licence.id);
    bool accepted = false;
    if (m)
      for (const auto& a : m->accepted) accepted = accepted || (a.use == hub::to_string(use) && a.licence == licence_id);
    if (!accepted && !accept)
      fail(ErrorKind::invalid_argument, "model {} not loaded for {} use: {}", r.name, hub::to_string(use), check.message);
    if (!accepted) {
      auto lib = library();
      if (!lib) fail(ErrorKind::invalid_argument, "--accept-licence needs a data directory to record the acceptance in");
      if (!m) {
        m = lib->import_file(arg);  // registered in place, so the acceptance has a manifest to live in
        r.name = m->name;
        r.in_library = true;
      }
      lib->record_acceptance(m->name, std::string(hub::to_string(use)), licence_id);
      std::cerr << "etna: recorded your acceptance of " << r.licence.summary() << " for " << hub::to_string(use)
                << " use of " << m->name << "\n";
    }
  }
  if (r.in_library)
    if (auto lib = library()) lib->touch(r.name);
  return r;
}

CLI::Option* add_model_option(CLI::App* c, std::string& model, const std::string& description) {
  return add_extra_model_option(c, "-m,--model", model, description + " (a file, or a model name from `etna list`)");
}

CLI::Option* add_extra_model_option(CLI::App* c, const std::string& name, std::string& model, const std::string& description) {
  add_use_options(c);
  CLI::Option* opt = c->add_option(name, model, description);
  // Chain onto any earlier parse-complete hook (a command may have two model options).
  using Hooks = std::vector<std::function<void()>>;
  static std::vector<std::pair<CLI::App*, std::unique_ptr<Hooks>>> hooks;
  Hooks* list = nullptr;
  for (auto& [app, v] : hooks)
    if (app == c) list = v.get();
  if (!list) {
    hooks.emplace_back(c, std::make_unique<Hooks>());
    list = hooks.back().second.get();
    c->parse_complete_callback([list] {
      for (auto& f : *list) f();
    });
  }
  list->push_back([c, &model] {
    if (model.empty()) return;
    const UseOptions& o = use_options_of(c);
    model = resolve_model(model, effective_use(o), o.accept, data_arg_of(c)).path;
  });
  return opt;
}

}  // namespace etna::cli
