#include "etna/rag/ingest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/catalog.h"
#include "etna/rag/loader.h"

namespace etna::rag {

namespace fs = std::filesystem;

fs::path collection_dir(const fs::path& data_dir, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 128 && name[0] != '.';
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
  if (!ok)
    fail(ErrorKind::invalid_argument,
         "bad collection name '{}': use 1-128 letters, digits, '_', '-' or '.', not starting with '.'", name);
  return data_dir / "documents" / name;
}

namespace {

using Clock = std::chrono::steady_clock;

// Reads a whole file; on failure returns false with a reason.
bool read_file(const fs::path& p, uint64_t expected, std::string& out, std::string& reason) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    reason = fmt::format("cannot read: {}", std::strerror(errno));
    return false;
  }
  out.clear();
  out.reserve(expected);
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      reason = fmt::format("cannot read: {}", std::strerror(errno));
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > expected + (1u << 20) && out.size() > 2 * expected) break;  // growing under us
  }
  ::close(fd);
  return true;
}

std::string mb(uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1 << 20)); }

bool is_gzip(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".gz";
}

struct Walk {
  std::vector<fs::path> files;
  std::vector<fs::path> roots;  // normalised arguments; catalog files under these may be deleted
  std::vector<SkippedFile> skipped;
};

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.size() > 1 && n[0] == '.' && n != "..";
}

Walk walk(const std::vector<fs::path>& paths) {
  Walk w;
  std::set<fs::path> seen;
  for (const fs::path& arg : paths) {
    std::error_code ec;
    fs::path p = fs::absolute(arg, ec).lexically_normal();
    if (!p.empty() && !p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
    const fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      w.skipped.push_back({arg.string(), "no such file or directory"});
      continue;
    }
    w.roots.push_back(p);
    if (fs::is_regular_file(st)) {
      if (seen.insert(p).second) w.files.push_back(p);
      continue;
    }
    if (!fs::is_directory(st)) {
      w.skipped.push_back({arg.string(), "not a regular file or directory"});
      continue;
    }
    fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) {
      w.skipped.push_back({p.string(), fmt::format("cannot list: {}", ec.message())});
      continue;
    }
    while (it != end) {
      const fs::directory_entry& e = *it;
      if (hidden(e.path())) {
        if (e.is_directory(ec)) it.disable_recursion_pending();
      } else if (e.is_regular_file(ec)) {
        if (seen.insert(e.path()).second) w.files.push_back(e.path());
      }
      it.increment(ec);
      if (ec) {
        w.skipped.push_back({p.string(), fmt::format("stopped listing: {}", ec.message())});
        break;
      }
    }
  }
  std::sort(w.files.begin(), w.files.end());
  return w;
}

bool under(const fs::path& file, const fs::path& root) {
  const std::string f = file.string(), r = root.string();
  if (f == r) return true;
  return f.size() > r.size() && f.compare(0, r.size(), r) == 0 && (r.back() == '/' || f[r.size()] == '/');
}

std::string random_hex(int n) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < n; ++i) s += "0123456789abcdef"[rd() & 15];
  return s;
}

nlohmann::json payload_of(const ChunkRow& c) {
  return {{"doc", sanitize_utf8(fs::path(c.file).filename().string())},
          {"file", sanitize_utf8(c.file)},
          {"page", c.page},
          {"line_start", c.line_start},
          {"line_end", c.line_end},
          {"byte_start", c.byte_start},
          {"byte_end", c.byte_end},
          {"heading", sanitize_utf8(c.heading)},
          {"text", sanitize_utf8(c.text)}};
}

// Embeds every chunk still marked unembedded; returns how many.
uint64_t embed_pending(Catalog& cat, VectorBackend& vec, const IngestOptions& opt, const VectorMeta& meta) {
  uint64_t n = 0;
  bool ensured = false;
  const size_t batch = std::max<size_t>(1, opt.embed_batch);
  while (true) {
    std::vector<ChunkRow> rows = cat.unembedded(batch);
    if (rows.empty()) return n;
    std::vector<std::string> texts;
    for (const auto& r : rows) texts.push_back(r.heading.empty() ? r.text : r.heading + "\n" + r.text);
    const auto vectors = opt.embedder->embed(texts, /*truncate=*/true);
    if (!ensured) vec.ensure(meta);
    ensured = true;
    std::vector<ChunkVector> points;
    std::vector<int64_t> ids;
    for (size_t i = 0; i < rows.size(); ++i) {
      points.push_back({rows[i].id, vectors[i], payload_of(rows[i])});
      ids.push_back(rows[i].id);
    }
    vec.upsert(points);
    cat.mark_embedded(ids);
    n += rows.size();
  }
}

}  // namespace

IngestReport ingest(const fs::path& dir, const std::vector<fs::path>& paths, const IngestOptions& opt,
                    const std::function<void(const IngestProgress&)>& on_progress,
                    const std::function<void(const SkippedFile&)>& on_skip) {
  const auto t0 = Clock::now();
  // Validate before touching anything.
  chunk_document(Document{}, opt.chunk, TokenCounter{});
  IngestReport rep;
  rep.chunk = opt.chunk;
  if (opt.embedder && opt.chunk_explicit) {
    const int limit = std::max(8, opt.embedder->max_tokens() - 4);
    if (opt.chunk.max_tokens > limit)
      fail(ErrorKind::invalid_argument,
           "chunks of {} tokens do not fit the embedding model {} (it holds {} tokens of text): use --chunk-tokens {} or less",
           opt.chunk.max_tokens, opt.embedder->model_name(), limit, limit);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::io, "cannot create {}: {}", dir.string(), ec.message());
  auto cat = Catalog::open(dir / "catalog.db");
  if (!cat->meta("catalog_id")) cat->set_meta("catalog_id", random_hex(32));
  const std::string catalog_id = cat->meta("catalog_id").value_or("");
  const std::string recorded_store = normalise_store_url(cat->meta("vector_store").value_or(kBuiltinVectorStore));
  VectorStoreOptions store_opt = opt.vector_store;
  store_opt.url = store_opt.url.empty() ? recorded_store : normalise_store_url(store_opt.url);
  const bool moved = store_opt.url != recorded_store;
  if (moved && !opt.embedder)
    fail(ErrorKind::invalid_argument,
         "moving collection '{}' from {} to {} embeds every chunk again: give the embedding model (--embedding-model)",
         dir.filename().string(), recorded_store, store_opt.url);
  const std::unique_ptr<VectorBackend> vec = open_vector_backend(dir, *cat, store_opt);
  std::optional<ChunkOptions> recorded;
  if (auto m = cat->meta("chunking")) {
    ChunkOptions c;
    if (std::sscanf(m->c_str(), "%d/%d", &c.max_tokens, &c.overlap_tokens) == 2) recorded = c;
  }
  const bool has_chunks = cat->chunk_count() > 0;
  if (!opt.chunk_explicit && recorded && has_chunks) rep.chunk = *recorded;
  if (opt.embedder) {
    const int limit = std::max(8, opt.embedder->max_tokens() - 4);
    if (rep.chunk.max_tokens > limit) {
      rep.chunk.max_tokens = limit;
      if (rep.chunk.overlap_tokens * 2 >= limit) rep.chunk.overlap_tokens = limit / 4;
      rep.chunk_lowered = true;
    }
  }
  rep.rechunked = has_chunks && recorded &&
                  (recorded->max_tokens != rep.chunk.max_tokens || recorded->overlap_tokens != rep.chunk.overlap_tokens);
  auto skip = [&](SkippedFile s) {
    if (on_skip) on_skip(s);
    rep.skipped.push_back(std::move(s));
  };

  VectorMeta meta;
  bool reset = false;
  if (opt.embedder) {
    meta = {fmt::format("{}|{}", opt.embedder->model_name(), opt.embedder->dim()),
            static_cast<size_t>(opt.embedder->dim()), catalog_id};
    reset = cat->meta("embedding_id").value_or("") != meta.model_id || moved;
  }
  // A stale copy of a writer's catalogue is refused here, before anything is dropped or written.
  const uint64_t generation = claim_vector_store(*vec, *cat);
  if (opt.embedder) {
    // A different model (or dimension), or another store, invalidates every stored vector.
    if (reset) vec->drop(catalog_id);
    vec->check(meta);  // a foreign or mismatched remote collection is refused before any change
    if (reset) {
      if (moved && recorded_store == kBuiltinVectorStore) open_builtin_backend(dir)->drop(catalog_id);
      cat->reset_embedded();
      cat->set_meta("embedding_id", meta.model_id);
    }
    cat->set_meta("vector_store", store_opt.url);
    cat->set_meta("embedding_model", opt.embedder_path);
    cat->set_meta("embedding_dim", std::to_string(opt.embedder->dim()));
  }
  cat->set_meta("chunking", fmt::format("{}/{}", rep.chunk.max_tokens, rep.chunk.overlap_tokens));

  Walk w = walk(paths);
  if (rep.rechunked) {
    // Every file the collection holds is cut again with the new sizes, not only those named now.
    std::unordered_set<std::string> named;
    for (const auto& f : w.files) named.insert(f.string());
    for (const FileRecord& f : cat->files()) {
      std::error_code e2;
      if (!named.count(f.path) && fs::is_regular_file(f.path, e2)) w.files.emplace_back(f.path);
    }
  }
  for (auto& s : w.skipped) skip(std::move(s));
  rep.files_seen = w.files.size();
  TokenCounter counter(opt.embedder ? &opt.embedder->tokenizer() : nullptr);
  IngestProgress prog;
  prog.files_total = w.files.size();
  auto report_progress = [&] {
    prog.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (on_progress) on_progress(prog);
  };
  report_progress();

  std::unordered_set<std::string> present;
  std::string bytes, reason;
  for (const fs::path& p : w.files) {
    const std::string key = p.string();
    present.insert(key);
    prog.current = key;
    struct stat st{};
    bool confined = opt.confine_to.empty();
    if (!confined) {
      std::error_code ec;
      const fs::path real = fs::canonical(p, ec);
      for (const fs::path& root : opt.confine_to) confined = confined || (!ec && under(real, root));
    }
    if (!confined) {
      skip({key, "a symbolic link to a file outside the allowed folders"});
    } else if (::stat(p.c_str(), &st) != 0) {
      skip({key, fmt::format("cannot stat: {}", std::strerror(errno))});
    } else if (static_cast<uint64_t>(st.st_size) > opt.max_file_bytes) {
      skip({key, fmt::format("too large ({} > {} limit)", mb(st.st_size), mb(opt.max_file_bytes))});
    } else {
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      const int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      const std::optional<FileRecord> old = cat->file(key);
      if (!rep.rechunked && old && old->size == size && old->mtime_ns == mtime) {
        ++rep.files_unchanged;
      } else if (!read_file(p, size, bytes, reason)) {
        skip({key, reason});
      } else if (const std::string hash = content_hash(bytes); !rep.rechunked && old && old->hash == hash) {
        cat->touch_file(key, size, mtime);
        ++rep.files_unchanged;
      } else if (std::string plain; is_gzip(p) && !gunzip(bytes, opt.max_file_bytes, &plain, &reason)) {
        skip({key, reason});
      } else {
        // report.txt.gz is read as report.txt (changelog.gz as text).
        if (is_gzip(p)) bytes = std::move(plain);
        std::optional<Format> fmt = format_from_extension(is_gzip(p) ? p.stem() : p);
        const bool is_pdf = (fmt && *fmt == Format::pdf) || bytes.compare(0, 5, "%PDF-") == 0;
        if (is_pdf) fmt = Format::pdf;
        if (!is_pdf && looks_binary(bytes)) {
          skip({key, "binary file"});
        } else {
          if (!fmt) fmt = Format::text;
          std::optional<Document> doc;
          try {
            switch (*fmt) {
              case Format::text: doc = load_text(std::move(bytes)); break;
              case Format::markdown: doc = load_markdown(std::move(bytes)); break;
              case Format::html: doc = load_html(bytes); break;
              case Format::pdf: doc = load_pdf(bytes); break;
            }
          } catch (const Error& e) {
            skip({key, e.what()});
          }
          if (doc) {
            doc->path = p;
            const std::vector<Chunk> chunks = chunk_document(*doc, rep.chunk, counter);
            if (chunks.empty()) skip({key, "no extractable text"});  // recorded anyway: not retried
            FileRecord rec{key, size, mtime, hash, format_name(*fmt), static_cast<int64_t>(chunks.size())};
            std::vector<int64_t> removed;
            cat->replace_file(rec, chunks, &removed);
            vec->remove(removed);
            rep.chunks_removed += removed.size();
            rep.chunks_added += chunks.size();
            rep.bytes_processed += size;
            prog.chunks += chunks.size();
            ++(old ? rep.files_updated : rep.files_new);
            if (opt.embedder && !rep.rechunked) rep.chunks_embedded += embed_pending(*cat, *vec, opt, meta);
          }
        }
      }
    }
    ++prog.files_done;
    report_progress();
  }

  // Files recorded under an ingested root that are gone now lose their chunks.
  for (const FileRecord& f : cat->files()) {
    if (present.count(f.path)) continue;
    bool in_root = false;
    for (const auto& r : w.roots) in_root = in_root || under(f.path, r);
    if (!in_root) continue;
    std::error_code e2;
    if (fs::exists(f.path, e2) && !hidden(fs::path(f.path))) continue;  // still there (e.g. skipped now)
    const std::vector<int64_t> ids = cat->remove_file(f.path);
    vec->remove(ids);
    rep.chunks_removed += ids.size();
    ++rep.files_deleted;
  }
  if (opt.embedder) rep.chunks_embedded += embed_pending(*cat, *vec, opt, meta);  // leftovers (model change, crash)
  vec->set_generation(generation, catalog_id);  // for a collection made in this run
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rep;
}

}  // namespace etna::rag
