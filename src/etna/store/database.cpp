#include "etna/store/database.h"

#include <chrono>

#include "etna/base/error.h"
#include "etna/base/log.h"
#include "etna/store/storage.h"

namespace etna::store {

namespace fs = std::filesystem;

namespace {

void check_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 255 && name[0] != '.';
  for (char c : name)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.');
  if (!ok)
    fail(ErrorKind::invalid_argument,
         "bad collection name '{}': use 1 to 255 characters of letters, digits, '_', '-' and '.', not starting with '.'",
         name);
}

// The store's working folders (a drop or restore in progress) start with '.', which no collection
// name may, so they can never be mistaken for (or collide with) a user's collection.
fs::path working_dir(const fs::path& collections, const char* purpose, const std::string& name) {
  return collections / fmt::format(".{}-{}", purpose, name);
}

void remove_tree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) fail(ErrorKind::io, "cannot remove {}: {}", p.string(), ec.message());
}

}  // namespace

Database::Database(fs::path dir, Collection::Options options) : dir_(std::move(dir)), options_(options) {}
Database::~Database() = default;

std::unique_ptr<Database> Database::open(const fs::path& dir, Collection::Options options) {
  log::init();
  std::error_code ec;
  fs::create_directories(dir / "collections", ec);
  if (ec) fail(ErrorKind::io, "cannot create vector store directory {}: {}", dir.string(), ec.message());
  fs::create_directories(dir / "snapshots", ec);
  std::unique_ptr<Database> db(new Database(dir, options));
  for (const auto& entry : fs::directory_iterator(dir / "collections")) {
    if (!entry.is_directory()) continue;
    std::string name = entry.path().filename().string();
    if (!name.empty() && name[0] == '.') {
      remove_tree(entry.path());  // a working folder of an interrupted restore or drop
      continue;
    }
    try {
      db->collections_[name] = Collection::open(entry.path(), name, options);
    } catch (const Error& e) {
      log::error("vector store: cannot open collection '{}', skipping it: {}", name, e.what());
    }
  }
  fs::path aliases = dir / "aliases.json";
  if (fs::exists(aliases)) {
    try {
      auto bytes = detail::read_file(aliases);
      auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
      for (auto it = j.begin(); it != j.end(); ++it)
        if (db->collections_.count(it.value().get<std::string>())) db->aliases_[it.key()] = it.value().get<std::string>();
    } catch (const std::exception& e) {
      log::error("vector store: ignoring unreadable {}: {}", aliases.string(), e.what());
    }
  }
  return db;
}

void Database::save_aliases(const std::map<std::string, std::string>& a) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : a) j[k] = v;
  std::string text = j.dump();
  detail::write_file_atomic(dir_ / "aliases.json", std::vector<uint8_t>(text.begin(), text.end()));
}

void Database::update_aliases(const std::vector<AliasAction>& actions) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = aliases_;
  for (const auto& a : actions) {
    switch (a.kind) {
      case AliasAction::Kind::Create:
        check_name(a.first);
        if (!collections_.count(a.second)) fail(ErrorKind::not_found, "Not found: Collection `{}` doesn't exist!", a.second);
        if (collections_.count(a.first))
          fail(ErrorKind::conflict, "Wrong input: alias `{}` is the name of a collection", a.first);
        if (next.count(a.first)) fail(ErrorKind::conflict, "Wrong input: Alias `{}` already exists!", a.first);
        next[a.first] = a.second;
        break;
      case AliasAction::Kind::Delete:
        if (!next.erase(a.first)) fail(ErrorKind::not_found, "Not found: Alias `{}` doesn't exist!", a.first);
        break;
      case AliasAction::Kind::Rename: {
        auto it = next.find(a.first);
        if (it == next.end()) fail(ErrorKind::not_found, "Not found: Alias `{}` doesn't exist!", a.first);
        check_name(a.second);
        if (collections_.count(a.second))
          fail(ErrorKind::conflict, "Wrong input: alias `{}` is the name of a collection", a.second);
        if (next.count(a.second) && a.second != a.first)
          fail(ErrorKind::conflict, "Wrong input: Alias `{}` already exists!", a.second);
        std::string target = it->second;
        next.erase(it);
        next[a.second] = target;
        break;
      }
    }
  }
  save_aliases(next);
  aliases_ = std::move(next);
}

std::map<std::string, std::string> Database::aliases() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aliases_;
}

std::string Database::resolve(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (collections_.count(name)) return name;
  auto it = aliases_.find(name);
  return it == aliases_.end() ? name : it->second;
}

Collection& Database::create_collection(const std::string& name, const CollectionConfig& config) {
  check_name(name);
  config.validate();
  std::lock_guard<std::mutex> lock(mu_);
  if (collections_.count(name)) fail(ErrorKind::conflict, "collection '{}' already exists", name);
  if (aliases_.count(name)) fail(ErrorKind::conflict, "'{}' is already an alias of collection '{}'", name, aliases_[name]);
  fs::path dir = dir_ / "collections" / name;
  if (fs::exists(dir)) remove_tree(dir);  // leftovers of a collection that failed to open
  std::shared_ptr<Collection> c = Collection::create(dir, name, config, options_);
  detail::fsync_dir(dir_ / "collections");
  collections_[name] = c;
  return *c;
}

bool Database::drop_collection(const std::string& name) {
  std::shared_ptr<Collection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = collections_.find(name);
    if (it == collections_.end()) return false;
    c = it->second;
    collections_.erase(it);
    c->mark_dropped();
    auto next = aliases_;
    for (auto a = next.begin(); a != next.end();) a = a->second == name ? next.erase(a) : std::next(a);
    if (next != aliases_) {
      try {
        save_aliases(next);
      } catch (const std::exception& e) {
        log::error("vector store: cannot save aliases after dropping '{}': {}", name, e.what());
      }
      aliases_ = std::move(next);
    }
    // Rename first so a crash mid-removal never leaves a half-deleted collection that reopens.
    fs::path dir = dir_ / "collections" / name, old = working_dir(dir_ / "collections", "dropped", name);
    std::error_code ec;
    if (fs::exists(old)) remove_tree(old);
    fs::rename(dir, old, ec);
    remove_tree(ec ? dir : old);
  }
  std::error_code ec;
  fs::remove_all(dir_ / "snapshots" / name, ec);
  return true;
}

std::vector<std::string> Database::list_collections() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, c] : collections_) out.push_back(name);
  return out;
}

bool Database::has_collection(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return collections_.count(name) > 0;
}

std::shared_ptr<Collection> Database::acquire(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = collections_.find(name);
  if (it == collections_.end()) fail(ErrorKind::not_found, "collection '{}' not found", name);
  return it->second;
}

Collection& Database::get(const std::string& name) const { return *acquire(name); }

fs::path Database::snapshot(const std::string& name) {
  auto c = acquire(name);
  fs::path dir = dir_ / "snapshots" / name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::io, "cannot create snapshot directory {}: {}", dir.string(), ec.message());
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
  fs::path path = dir / fmt::format("{}-{}.snapshot", name, ms);
  for (int i = 1; fs::exists(path); ++i) path = dir / fmt::format("{}-{}-{}.snapshot", name, ms, i);
  c->write_snapshot(path);
  return path;
}

std::vector<fs::path> Database::list_snapshots(const std::string& name) const {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::path dir = dir_ / "snapshots" / name;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".snapshot") out.push_back(e.path());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    std::error_code e1, e2;
    auto ta = fs::last_write_time(a, e1), tb = fs::last_write_time(b, e2);
    return ta != tb ? ta < tb : a < b;
  });
  return out;
}

Collection& Database::restore(const std::string& name, const fs::path& snapshot_path) {
  check_name(name);
  if (!fs::is_regular_file(snapshot_path))
    fail(ErrorKind::not_found, "snapshot file {} not found", snapshot_path.string());
  auto bytes = detail::read_file(snapshot_path);
  std::lock_guard<std::mutex> lock(mu_);
  // Build the restored collection beside the live one, prove it opens, then swap directories.
  fs::path dir = dir_ / "collections" / name;
  const fs::path tmp = working_dir(dir_ / "collections", "restoring", name);
  const fs::path old = working_dir(dir_ / "collections", "replaced", name);
  if (fs::exists(tmp)) remove_tree(tmp);
  if (fs::exists(old)) remove_tree(old);
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", tmp.string(), ec.message());
  std::unique_ptr<Collection> probe;
  try {
    detail::write_file_atomic(tmp / "data.etna", bytes);
    probe = Collection::open(tmp, name, options_);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  probe.reset();
  if (auto it = collections_.find(name); it != collections_.end()) {
    // Move the live folder aside first: if that fails, the running collection stays as it was.
    fs::rename(dir, old, ec);
    if (ec) {
      remove_tree(tmp);
      fail(ErrorKind::io, "cannot move {} aside: {}", dir.string(), ec.message());
    }
    it->second->mark_dropped();
    collections_.erase(it);
  }
  fs::rename(tmp, dir, ec);
  if (ec) fail(ErrorKind::io, "cannot move restored collection into place: {}", ec.message());
  detail::fsync_dir(dir_ / "collections");
  if (fs::exists(old)) remove_tree(old);
  std::shared_ptr<Collection> c = Collection::open(dir, name, options_);
  collections_[name] = c;
  return *c;
}

}  // namespace etna::store
