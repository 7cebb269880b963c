#include "etna/hub/library.h"

#include "etna/gguf/file_type.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/gguf/gguf_file.h"

namespace etna::hub {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::regex& split_suffix() {
  static const std::regex re("-(\\d{5})-of-(\\d{5})$");
  return re;
}

bool is_gguf(const std::string& name) {
  return name.size() > 5 && name.compare(name.size() - 5, 5, ".gguf") == 0;
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) fail(ErrorKind::io, "cannot read {}", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    fail(ErrorKind::corrupt, "{} is not valid JSON: {}", p.string(), e.what());
  }
}

void write_json_atomically(const fs::path& p, const json& j) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", p.parent_path().string(), ec.message());
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) fail(ErrorKind::io, "cannot write {}", tmp.string());
  }
  fs::rename(tmp, p, ec);
  if (ec) fail(ErrorKind::io, "cannot write {}: {}", p.string(), ec.message());
}

}  // namespace

std::string Manifest::main_path() const {
  for (const auto& f : files)
    if (is_gguf(f.name)) return f.path;
  return files.empty() ? std::string() : files.front().path;
}

uint64_t Manifest::total_size() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

json Manifest::to_json() const {
  json j;
  j["name"] = name;
  j["source"] = {{"kind", source_kind}, {"ref", source}, {"revision", revision}, {"endpoint", endpoint}};
  json fl = json::array();
  for (const auto& f : files) fl.push_back({{"name", f.name}, {"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
  j["files"] = fl;
  j["owns_files"] = owns_files;
  j["architecture"] = architecture;
  j["parameters"] = parameters;
  j["quantisation"] = quantisation;
  j["size"] = total_size();
  j["licence"] = licence.to_json();
  j["pulled_at"] = pulled_at;
  j["last_used"] = last_used;
  json acc = json::array();
  for (const auto& a : accepted) acc.push_back({{"use", a.use}, {"licence", a.licence}, {"at", a.at}});
  j["accepted"] = acc;
  return j;
}

Manifest Manifest::from_json(const json& j) {
  Manifest m;
  m.name = j.value("name", "");
  if (j.contains("source") && j["source"].is_object()) {
    const auto& s = j["source"];
    m.source_kind = s.value("kind", "");
    m.source = s.value("ref", "");
    m.revision = s.value("revision", "");
    m.endpoint = s.value("endpoint", "");
  }
  if (j.contains("files") && j["files"].is_array())
    for (const auto& f : j["files"])
      m.files.push_back({f.value("name", ""), f.value("path", ""), f.value("size", uint64_t(0)), f.value("sha256", "")});
  m.owns_files = j.value("owns_files", false);
  m.architecture = j.value("architecture", "");
  m.parameters = j.value("parameters", uint64_t(0));
  m.quantisation = j.value("quantisation", "");
  if (j.contains("licence") && j["licence"].is_object()) m.licence = LicenceRecord::from_json(j["licence"]);
  m.pulled_at = j.value("pulled_at", "");
  m.last_used = j.value("last_used", "");
  if (j.contains("accepted") && j["accepted"].is_array())
    for (const auto& a : j["accepted"]) m.accepted.push_back({a.value("use", ""), a.value("licence", ""), a.value("at", "")});
  if (!valid_model_name(m.name)) fail(ErrorKind::corrupt, "manifest has an invalid model name '{}'", m.name);
  return m;
}

std::string file_type_name(int64_t ft) { return gguf::file_type_name(ft); }

void describe_gguf(const std::string& path, Manifest& m) {
  auto f = gguf::GgufFile::open(path);
  m.architecture = f->architecture();
  uint64_t params = 0;
  for (const auto& t : f->tensors()) params += t.n_elements;
  m.parameters = params;
  const gguf::Value* ft = f->find("general.file_type");
  m.quantisation = ft && ft->is_integer() ? file_type_name(ft->as_int()) : "";
  m.licence = merge_licence(licence_from_gguf(*f), m.licence);
}

std::string model_name_for(const std::string& file_name) {
  std::string stem = fs::path(file_name).filename().string();
  if (is_gguf(stem)) stem.resize(stem.size() - 5);
  stem = std::regex_replace(stem, split_suffix(), "");
  std::string out;
  for (char c : stem) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '-';
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  if (out.size() > 128) out.resize(128);
  return out.empty() ? "model" : out;
}

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Library::Library(fs::path root) : root_(std::move(root)) {}

std::vector<Manifest> Library::list() const {
  std::vector<Manifest> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return out;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const fs::path mp = e.path() / "manifest.json";
    if (!fs::is_regular_file(mp, ec)) continue;
    try {
      out.push_back(Manifest::from_json(read_json(mp)));
    } catch (const Error& err) {
      log::warn("skipping {}: {}", mp.string(), err.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const Manifest& a, const Manifest& b) { return a.name < b.name; });
  return out;
}

std::optional<Manifest> Library::find(const std::string& name) const {
  if (!valid_model_name(name)) return std::nullopt;
  const fs::path mp = model_dir(name) / "manifest.json";
  std::error_code ec;
  if (!fs::is_regular_file(mp, ec)) return std::nullopt;
  return Manifest::from_json(read_json(mp));
}

std::optional<Manifest> Library::find_by_path(const std::string& path) const {
  std::error_code ec;
  const fs::path want = fs::weakly_canonical(fs::absolute(path), ec);
  for (auto& m : list()) {
    const std::string main = m.main_path();
    if (main.empty()) continue;
    if (fs::weakly_canonical(fs::path(main), ec) == want) return m;
  }
  return std::nullopt;
}

void Library::save(const Manifest& m) const {
  if (!valid_model_name(m.name)) fail(ErrorKind::invalid_argument, "invalid model name '{}': use letters, digits, '.', '_' and '-'", m.name);
  write_json_atomically(model_dir(m.name) / "manifest.json", m.to_json());
}

void Library::remove(const std::string& name) const {
  auto m = find(name);
  if (!m) fail(ErrorKind::not_found, "no model named '{}' in the library ({})", name, root_.string());
  std::error_code ec;
  const fs::path dir = model_dir(name);
  if (m->owns_files) {
    fs::remove_all(dir, ec);
  } else {
    fs::remove(dir / "manifest.json", ec);
    fs::remove(dir, ec);  // only when empty; imported files live elsewhere
  }
  if (ec) fail(ErrorKind::io, "cannot remove {}: {}", dir.string(), ec.message());
}

Manifest Library::import_file(const std::string& path, const std::string& name) const {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(ErrorKind::not_found, "{} is not a file", path);
  const fs::path abs = fs::absolute(path).lexically_normal();
  Manifest m;
  m.name = name.empty() ? model_name_for(abs.filename().string()) : name;
  if (!valid_model_name(m.name)) fail(ErrorKind::invalid_argument, "invalid model name '{}': use letters, digits, '.', '_' and '-'", m.name);
  if (find(m.name)) fail(ErrorKind::conflict, "a model named '{}' is already in the library; choose another with --name", m.name);
  m.source_kind = "import";
  m.source = abs.string();
  // Split models: register every shard beside the first.
  std::smatch sm;
  const std::string stem = abs.stem().string();
  if (std::regex_search(stem, sm, split_suffix())) {
    const int n = std::stoi(sm[2].str());
    const std::string base = stem.substr(0, sm.position(0));
    for (int i = 1; i <= n; ++i) {
      const fs::path shard = abs.parent_path() / fmt::format("{}-{:05d}-of-{:05d}.gguf", base, i, n);
      if (!fs::is_regular_file(shard, ec)) fail(ErrorKind::not_found, "split model shard {} is missing", shard.string());
      m.files.push_back({shard.filename().string(), shard.string(), fs::file_size(shard), ""});
    }
  } else {
    m.files.push_back({abs.filename().string(), abs.string(), fs::file_size(abs), ""});
  }
  describe_gguf(m.main_path(), m);
  m.pulled_at = utc_now();
  save(m);
  return m;
}

void Library::touch(const std::string& name) const {
  try {
    if (auto m = find(name)) {
      m->last_used = utc_now();
      save(*m);
    }
  } catch (const Error& e) {
    log::warn("cannot update last use of {}: {}", name, e.what());
  }
}

void Library::record_acceptance(const std::string& name, const std::string& use, const std::string& licence_id) const {
  auto m = find(name);
  if (!m) fail(ErrorKind::not_found, "no model named '{}' in the library", name);
  for (const auto& a : m->accepted)
    if (a.use == use && a.licence == licence_id) return;
  m->accepted.push_back({use, licence_id, utc_now()});
  save(*m);
}

std::vector<fs::path> default_scan_dirs() {
  std::vector<fs::path> dirs;
  if (const char* s = std::getenv("ETNA_SCAN_DIRS"); s) {
    std::stringstream ss(s);
    std::string d;
    while (std::getline(ss, d, ':'))
      if (!d.empty()) dirs.emplace_back(d);
    return dirs;
  }
  const char* home = std::getenv("HOME");
  if (const char* hf = std::getenv("HF_HUB_CACHE"); hf && *hf) dirs.emplace_back(hf);
  else if (const char* hh = std::getenv("HF_HOME"); hh && *hh) dirs.push_back(fs::path(hh) / "hub");
  else if (home) dirs.push_back(fs::path(home) / ".cache" / "huggingface" / "hub");
  if (home) {
    dirs.push_back(fs::path(home) / ".lmstudio" / "models");
    dirs.push_back(fs::path(home) / ".cache" / "lm-studio" / "models");
  }
  return dirs;
}

std::vector<Manifest> scan_for_models(const std::vector<fs::path>& dirs) {
  std::vector<Manifest> out;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    auto it = fs::recursive_directory_iterator(d, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const fs::path p = it->path();
      if (!is_gguf(p.filename().string()) || !fs::is_regular_file(p, ec)) continue;
      std::smatch sm;
      const std::string stem = p.stem().string();
      if (std::regex_search(stem, sm, split_suffix()) && sm[1].str() != "00001") continue;
      Manifest m;
      m.name = model_name_for(p.filename().string());
      m.source_kind = "scan";
      m.source = p.string();
      m.files.push_back({p.filename().string(), p.string(), fs::file_size(p, ec), ""});
      try {
        describe_gguf(p.string(), m);
      } catch (const Error&) {
        continue;
      }
      out.push_back(std::move(m));
    }
  }
  return out;
}

}  // namespace etna::hub
