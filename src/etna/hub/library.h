// The model library: <data>/models/<name>/manifest.json per model (where it came from, its
// files with sizes and sha256, architecture, parameters, quantisation, licence record, when it
// was pulled and last used, and the licence uses the user accepted). Pulled files live beside
// the manifest; imported files stay where they are (the library never deletes them).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/hub/licence.h"

namespace etna::hub {

struct ModelFile {
  std::string name;    // file name in the repository ("x-Q4_K_M.gguf")
  std::string path;    // absolute path on disk
  uint64_t size = 0;
  std::string sha256;  // hex; "" when not computed (imported files)
};

struct Acceptance {
  std::string use;      // "commercial", "research"
  std::string licence;  // licence id accepted
  std::string at;       // UTC time, ISO 8601
};

struct Manifest {
  std::string name;
  std::string source_kind;  // "hub", "url", "import"
  std::string source;       // "owner/repo", the URL, or the imported path
  std::string revision;     // hub revision ("main")
  std::string endpoint;     // hub endpoint used
  std::vector<ModelFile> files;  // GGUF shards in order first, then other files (README, LICENSE, ...)
  bool owns_files = false;  // true: files are inside the library folder and `rm` deletes them
  std::string architecture;
  uint64_t parameters = 0;
  std::string quantisation;  // general.file_type name ("Q4_K_M"), "" when unknown
  LicenceRecord licence;
  std::string pulled_at, last_used;
  std::vector<Acceptance> accepted;

  // The path a model loader opens: the first .gguf file (shard 1 of a split model).
  std::string main_path() const;
  uint64_t total_size() const;
  nlohmann::json to_json() const;
  static Manifest from_json(const nlohmann::json& j);
};

// llama.cpp's general.file_type numbering as names ("Q4_K_M"; gguf::file_type_name).
std::string file_type_name(int64_t file_type);

// Architecture, parameter count, quantisation and licence of a GGUF file. Throws etna::Error.
void describe_gguf(const std::string& path, Manifest& m);

// "Llama-3.2-1B-Instruct-Q4_K_M" for "Llama-3.2-1B-Instruct-Q4_K_M-00001-of-00002.gguf".
std::string model_name_for(const std::string& file_name);
// True for names of [A-Za-z0-9._-], 1..128 characters, not starting with '.'.
bool valid_model_name(const std::string& name);

// The current UTC time as "2026-01-31T12:00:00Z".
std::string utc_now();

class Library {
 public:
  explicit Library(std::filesystem::path root);  // <data>/models (created on first write)

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path model_dir(const std::string& name) const { return root_ / name; }

  // Every model, sorted by name. Unreadable manifests are skipped with a warning on the log.
  std::vector<Manifest> list() const;
  std::optional<Manifest> find(const std::string& name) const;
  // The model whose main file is `path` (absolute comparison), if any.
  std::optional<Manifest> find_by_path(const std::string& path) const;
  // Writes <root>/<name>/manifest.json atomically.
  void save(const Manifest& m) const;
  // Removes the manifest and, when the library owns them, the files. Throws Error(not_found).
  void remove(const std::string& name) const;
  // Registers an existing GGUF file in place (no copy). Throws Error(conflict) when the name is
  // taken, (corrupt/io) when the file is not a readable GGUF.
  Manifest import_file(const std::string& path, const std::string& name = "") const;
  // Sets last_used to now (best effort).
  void touch(const std::string& name) const;
  void record_acceptance(const std::string& name, const std::string& use, const std::string& licence_id) const;

 private:
  std::filesystem::path root_;
};

// The folders other tools keep GGUF files in: ~/.cache/huggingface/hub (or $HF_HUB_CACHE),
// ~/.lmstudio/models and ~/.cache/lm-studio/models; $ETNA_SCAN_DIRS (':'-separated) replaces them.
std::vector<std::filesystem::path> default_scan_dirs();
// GGUF files under `dirs` (read-only; split shards after the first are skipped), described.
// Files that do not parse are skipped.
std::vector<Manifest> scan_for_models(const std::vector<std::filesystem::path>& dirs);

}  // namespace etna::hub
