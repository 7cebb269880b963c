// `etna ingest PATH... --collection NAME`: load, chunk and index documents (text, Markdown, HTML,
// PDF) for retrieval; incremental on re-runs. A progress bar is drawn on stderr when it is a
// terminal; skipped files get one line each and the run ends with a summary on stdout.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/data_dir.h"
#include "cli/vector_store_options.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/catalog.h"
#include "etna/rag/ingest.h"

namespace etna::cli {
namespace {

namespace fs = std::filesystem;

struct IngestArgs {
  std::vector<std::string> paths;
  std::string collection;
  std::string embedding_model;
  std::string data;
  int chunk_tokens = 256;
  int overlap = 32;
  bool chunk_explicit = false;
  double max_file_mb = 64;
  rag::VectorStoreOptions vector_store;
};

std::string duration(double s) {
  if (!(s >= 0) || s > 360000) return "--:--";
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{:02}:{:02}", t / 60, t % 60);
}

void run(const IngestArgs& a) {
  if (a.max_file_mb <= 0) fail(ErrorKind::invalid_argument, "--max-file-mb must be positive");
  // A path that is not there is a mistake to report, not an empty collection to create.
  for (const auto& p : a.paths) {
    std::error_code ec;
    if (!fs::exists(fs::path(p), ec))
      fail(ErrorKind::not_found, "{}: no such file or directory (nothing was ingested)", p);
  }
  const fs::path dir = rag::collection_dir(data_dir(a.data), a.collection);
  rag::IngestOptions opt;
  opt.chunk.max_tokens = a.chunk_tokens;
  opt.chunk.overlap_tokens = a.overlap;
  opt.chunk_explicit = a.chunk_explicit;
  opt.max_file_bytes = static_cast<uint64_t>(a.max_file_mb * 1024 * 1024);
  opt.vector_store = a.vector_store;
  std::string model = a.embedding_model;
  if (model.empty() && fs::exists(dir / "catalog.db")) {
    // Keep embedding with the model the collection was built with.
    auto cat = rag::Catalog::open(dir / "catalog.db");
    if (auto m = cat->meta("embedding_model"); m && !m->empty()) {
      if (fs::exists(*m)) model = *m;
      else std::cerr << "etna: warning: the collection's embedding model " << *m
                     << " is missing; new chunks get BM25 only until it is given with --embedding-model\n";
    }
  }
  std::unique_ptr<engine::Embedder> embedder;
  if (!model.empty()) {
    embedder = engine::Embedder::load(model);
    opt.embedder = embedder.get();
    opt.embedder_path = fs::absolute(model).lexically_normal().string();
  }

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  bool bar_drawn = false;
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto clear_bar = [&] {
    if (bar_drawn) std::fprintf(stderr, "\r\033[K");
    bar_drawn = false;
  };
  auto on_progress = [&](const rag::IngestProgress& p) {
    if (!tty) return;
    const auto now = std::chrono::steady_clock::now();
    if (p.files_done != p.files_total && now - last < std::chrono::milliseconds(100)) return;
    last = now;
    const double frac = p.files_total ? static_cast<double>(p.files_done) / p.files_total : 1.0;
    const int width = 24, fill = static_cast<int>(frac * width);
    const double rate = p.seconds > 0 ? p.chunks / p.seconds : 0;
    const double eta = frac > 0 ? p.seconds * (1 - frac) / frac : -1;
    std::fprintf(stderr, "\r\033[K[%s%s] %zu/%zu files  %llu chunks  %.0f chunks/s  ETA %s",
                 std::string(fill, '#').c_str(), std::string(width - fill, '.').c_str(), p.files_done, p.files_total,
                 static_cast<unsigned long long>(p.chunks), rate, duration(eta).c_str());
    std::fflush(stderr);
    bar_drawn = true;
  };
  auto on_skip = [&](const rag::SkippedFile& s) {
    clear_bar();
    std::cerr << "skipped " << s.path << ": " << s.reason << "\n";
  };
  std::vector<fs::path> paths(a.paths.begin(), a.paths.end());
  const rag::IngestReport r = rag::ingest(dir, paths, opt, on_progress, on_skip);
  clear_bar();
  if (r.chunk_lowered)
    std::cerr << fmt::format("etna: chunks of {} tokens (overlap {}): the most the embedding model holds\n",
                             r.chunk.max_tokens, r.chunk.overlap_tokens);
  if (r.rechunked)
    std::cerr << fmt::format("etna: every file of '{}' was chunked again with {} tokens (overlap {})\n", a.collection,
                             r.chunk.max_tokens, r.chunk.overlap_tokens);
  const double rate = r.seconds > 0 ? r.chunks_added / r.seconds : 0;
  std::cout << fmt::format(
      "collection '{}': {} files seen ({} new, {} changed, {} unchanged, {} deleted), {} chunks added, {} removed{}, "
      "{} skipped, {:.2f} s ({:.0f} chunks/s)\n",
      a.collection, r.files_seen, r.files_new, r.files_updated, r.files_unchanged, r.files_deleted, r.chunks_added,
      r.chunks_removed, embedder ? fmt::format(", {} embedded", r.chunks_embedded) : std::string(" (BM25 only)"),
      r.skipped.size(), r.seconds, rate);
}

CommandRegistrar reg(50, [](CLI::App& root) {
  auto args = std::make_shared<IngestArgs>();
  auto* c = root.add_subcommand("ingest", "Index documents (text, Markdown, HTML, PDF) into a collection for search");
  c->add_option("paths", args->paths, "files and folders (walked recursively)")->required();
  c->add_option("--collection", args->collection, "collection name")->required();
  c->add_option("--embedding-model", args->embedding_model,
                "GGUF embedding model for hybrid search (default: the one the collection was built with; none: BM25)");
  c->add_option("--data", args->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_option("--chunk-tokens", args->chunk_tokens,
                "chunk size in tokens (default: the collection's, else 256 or the embedding model's limit if lower; "
                "a size the model cannot hold is refused; a new size re-chunks every file)")
      ->capture_default_str();
  c->add_option("--overlap", args->overlap, "overlap between consecutive chunks, tokens")->capture_default_str();
  c->add_option("--max-file-mb", args->max_file_mb, "skip files larger than this")->capture_default_str();
  add_vector_store_options(c, args->vector_store);
  c->callback([args, c] {
    finish_vector_store_options(args->vector_store);
    args->chunk_explicit = c->count("--chunk-tokens") > 0;
    run(*args);
  });
});

}  // namespace
}  // namespace etna::cli
