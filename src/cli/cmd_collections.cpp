// `etna collections [list] [--json]` and `etna collections delete NAME`: the document collections
// `etna ingest` made under <data>/documents (the same ones GET/DELETE /api/collections serve;
// --json prints the API's fields).
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"
#include "etna/rag/vector_backend.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct CollectionsArgs {
  std::string data;
  bool json = false;
  std::string name;
  rag::VectorStoreOptions store;
  bool local_only = false;
};

json list_json(const fs::path& documents) {
  std::vector<std::string> names;
  std::error_code ec;
  if (fs::is_directory(documents, ec))
    for (const auto& e : fs::directory_iterator(documents, ec))
      if (e.is_directory() && fs::exists(e.path() / "catalog.db")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  json out = json::array();
  for (const auto& name : names) {
    auto cat = rag::Catalog::open(documents / name / "catalog.db");
    const auto model = cat->meta("embedding_model");
    out.push_back({{"name", name},
                   {"files", cat->files().size()},
                   {"chunks", cat->chunk_count()},
                   {"embedding_model", model && !model->empty() ? json(fs::path(*model).stem().string()) : json(nullptr)}});
  }
  return out;
}

void list(const CollectionsArgs& a) {
  const fs::path documents = data_dir(a.data) / "documents";
  const json cols = list_json(documents);
  if (a.json) {
    std::cout << json{{"collections", cols}}.dump() << "\n";
    return;
  }
  if (cols.empty()) {
    std::cout << "no collections in " << documents.string() << " (make one with `etna ingest PATH --collection NAME`)\n";
    return;
  }
  std::cout << fmt::format("{:<24} {:>7} {:>8}  {}\n", "collection", "files", "chunks", "embedding model");
  for (const auto& c : cols)
    std::cout << fmt::format("{:<24} {:>7} {:>8}  {}\n", c["name"].get<std::string>(), c["files"].get<size_t>(),
                             c["chunks"].get<int64_t>(),
                             c["embedding_model"].is_null() ? "(BM25 only)" : c["embedding_model"].get<std::string>());
}

void remove(const CollectionsArgs& a) {
  const fs::path dir = rag::collection_dir(data_dir(a.data), a.name);  // validates the name
  if (!fs::exists(dir / "catalog.db"))
    fail(ErrorKind::not_found, "collection '{}' not found in {}", a.name, dir.parent_path().string());
  size_t files = 0;
  bool remote = false;
  {
    auto cat = rag::Catalog::open(dir / "catalog.db");
    files = cat->files().size();
    // Vectors kept in an external store go first (when they are this catalogue's), as DELETE
    // /api/collections/NAME does: a stale copy of the writer's catalogue or an unreachable store
    // fails here and leaves everything as it was.
    if (!a.local_only && cat->meta("vector_store").value_or(rag::kBuiltinVectorStore) != rag::kBuiltinVectorStore) {
      auto vectors = rag::open_recorded_vector_backend(dir, *cat, a.store);
      rag::claim_vector_store(*vectors, *cat);
      vectors->drop(cat->meta("catalog_id").value_or(""));
      remote = true;
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) fail(ErrorKind::io, "cannot delete {}: {}", dir.string(), ec.message());
  std::cout << fmt::format("deleted collection '{}' ({} files{}; the original files are left where they were)\n",
                           a.name, files, remote ? ", and its vectors in the external store" : "");
}

CommandRegistrar reg(54, [](CLI::App& root) {
  auto args = std::make_shared<CollectionsArgs>();
  auto* c = root.add_subcommand("collections", "List or delete document collections (made by `etna ingest`)");
  c->add_option("--data", args->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_flag("--json", args->json, "JSON output: {\"collections\": [{name, files, chunks, embedding_model}]}");
  auto* ls = c->add_subcommand("list", "List the collections (the default)");
  ls->add_option("--data", args->data, "Data directory");
  ls->add_flag("--json", args->json, "JSON output");
  ls->callback([args] { list(*args); });
  auto* del = c->add_subcommand("delete", "Delete a collection: its catalogue, vectors and uploaded copies");
  del->add_option("name", args->name, "collection name")->required();
  del->add_option("--data", args->data, "Data directory");
  add_vector_store_options(del, args->store);
  del->add_flag("--local-only", args->local_only,
                "keep the vectors in the external store (one that is gone for good, or shared with a copy)");
  del->callback([args] {
    finish_vector_store_options(args->store);
    remove(*args);
  });
  c->require_subcommand(0, 1);
  c->callback([args, c] {
    if (c->get_subcommands().empty()) list(*args);
  });
});

}  // namespace
}  // namespace etna::cli
