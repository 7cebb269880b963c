// A directory of collections: <dir>/collections/<name>/ holds each collection's data file and
// log; <dir>/snapshots/<name>/ holds its snapshots. Thread-safe.
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "etna/store/collection.h"

namespace etna::store {

class Database {
 public:
  // Opens (creating if needed) the store in `dir` and opens every collection in it.
  // Throws io when the directory cannot be created or read.
  static std::unique_ptr<Database> open(const std::filesystem::path& dir,
                                        Collection::Options options = {});
  ~Database();

  // Creates a collection. Names: 1..255 chars of [A-Za-z0-9_.-], not starting with '.'.
  // Throws conflict when it exists, invalid_argument on a bad name or config.
  Collection& create_collection(const std::string& name, const CollectionConfig& config);
  // Deletes the collection and its files. Returns false when it did not exist.
  bool drop_collection(const std::string& name);
  // Names of all collections, sorted.
  std::vector<std::string> list_collections() const;
  bool has_collection(const std::string& name) const;
  // The collection; throws not_found ("collection 'x' not found") when absent. The reference is
  // valid until the collection is dropped; use acquire() when a drop may race with the caller.
  Collection& get(const std::string& name) const;
  std::shared_ptr<Collection> acquire(const std::string& name) const;

  // Writes a snapshot of the collection under <dir>/snapshots/<name>/ and returns its path.
  std::filesystem::path snapshot(const std::string& name);
  // Snapshot files of a collection (newest last).
  std::vector<std::filesystem::path> list_snapshots(const std::string& name) const;
  // Creates or replaces collection `name` from a snapshot file. Throws corrupt when the file is
  // not a valid snapshot (the existing collection is then left untouched).
  Collection& restore(const std::string& name, const std::filesystem::path& snapshot_path);

  // Aliases (Qdrant's): other names for collections, kept in <dir>/aliases.json (written
  // atomically, so a crash leaves the old or the new set). Dropping a collection drops its aliases.
  struct AliasAction {
    enum class Kind { Create, Delete, Rename };
    Kind kind;
    std::string first;   // create / delete: the alias; rename: the old alias
    std::string second;  // create: the collection; rename: the new alias
  };
  // Applies every action in order, all or nothing. Throws not_found (unknown alias or
  // collection), conflict (alias exists or is a collection's name), invalid_argument (bad name).
  void update_aliases(const std::vector<AliasAction>& actions);
  // alias -> collection, sorted by alias.
  std::map<std::string, std::string> aliases() const;
  // The collection an alias names; any other name is returned unchanged.
  std::string resolve(const std::string& name) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  Database(std::filesystem::path dir, Collection::Options options);
  std::filesystem::path dir_;
  Collection::Options options_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Collection>> collections_;  // GUARDED_BY(mu_)
  std::map<std::string, std::string> aliases_;                      // GUARDED_BY(mu_)
  void save_aliases(const std::map<std::string, std::string>& a);    // REQUIRES: mu_ held
};

}  // namespace etna::store
