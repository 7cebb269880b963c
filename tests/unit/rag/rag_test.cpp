// Loaders, chunker, incremental ingestion and retrieval of the rag layer.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/engine/embedder.h"
#include "etna/rag/bm25.h"
#include "etna/rag/catalog.h"
#include "etna/rag/chunker.h"
#include "etna/rag/ingest.h"
#include "etna/rag/loader.h"
#include "etna/rag/retriever.h"
#include "etna/store/database.h"
#include "support/test_support.h"
#include "unit/rag/corpus.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;
using etna::test::TempDir;

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string block_text(const Document& d, size_t i) { return d.text.substr(d.blocks[i].begin, d.blocks[i].end - d.blocks[i].begin); }

// A minimal PDF with one page per entry of `pages`, each page's lines drawn in Helvetica, and a
// correct cross-reference table.
std::string make_pdf(const std::vector<std::vector<std::string>>& pages) {
  std::vector<std::string> objs;  // object i+1
  const size_t n = pages.size();
  const size_t font = 3 + 2 * n;
  objs.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  std::string kids;
  for (size_t i = 0; i < n; ++i) kids += fmt::format("{} 0 R ", 3 + 2 * i);
  objs.push_back(fmt::format("<< /Type /Pages /Kids [{}] /Count {} >>", kids, n));
  for (size_t i = 0; i < n; ++i) {
    objs.push_back(fmt::format("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {} 0 R "
                               ">> >> /Contents {} 0 R >>",
                               font, 4 + 2 * i));
    std::string content = "BT /F1 12 Tf 16 TL 72 720 Td\n";
    for (const auto& line : pages[i]) content += "(" + line + ") Tj T*\n";
    content += "ET\n";
    objs.push_back(fmt::format("<< /Length {} >>\nstream\n{}endstream", content.size(), content));
  }
  objs.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
  std::string out = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objs.size(); ++i) {
    offsets.push_back(out.size());
    out += fmt::format("{} 0 obj\n{}\nendobj\n", i + 1, objs[i]);
  }
  const size_t xref = out.size();
  out += fmt::format("xref\n0 {}\n0000000000 65535 f \n", objs.size() + 1);
  for (size_t off : offsets) out += fmt::format("{:010} 00000 n \n", off);
  out += fmt::format("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{}\n%%EOF\n", objs.size() + 1, xref);
  return out;
}

TEST(Loader, TextParagraphsKeepLinesAndBytes) {
  const std::string src = "first para line one\nline two\n\n\nsecond para\n";
  Document d = load_text(src);
  ASSERT_EQ(d.blocks.size(), 2u);
  EXPECT_EQ(block_text(d, 0), "first para line one\nline two");
  EXPECT_EQ(d.blocks[0].line_start, 1);
  EXPECT_EQ(d.blocks[0].line_end, 2);
  EXPECT_EQ(d.blocks[1].line_start, 5);
  EXPECT_EQ(src.substr(d.blocks[1].src_byte_start, d.blocks[1].src_byte_end - d.blocks[1].src_byte_start),
            "second para");
}

TEST(Loader, MarkdownHeadingsAndFences) {
  const std::string src =
      "# Title\nintro text\n\n## Install\nrun make\n\n```\ncode\n\nmore code\n```\nSetext\n------\nbody\n";
  Document d = load_markdown(src);
  ASSERT_EQ(d.blocks.size(), 7u);
  EXPECT_EQ(d.blocks[0].heading_level, 1);
  EXPECT_EQ(d.blocks[2].heading_level, 2);
  EXPECT_EQ(block_text(d, 4), "```\ncode\n\nmore code\n```");  // the fence is one block
  EXPECT_EQ(d.blocks[5].heading_level, 2);                     // setext
  EXPECT_EQ(d.blocks[5].line_start, 12);
  EXPECT_EQ(d.blocks[6].line_start, 14);
}

TEST(Loader, MarkdownHeadingsSplitChunks) {
  const std::string src = "# Alpha\nalpha words here\n\n# Beta\nbeta words here\n\n# Gamma\ngamma words\n";
  std::vector<Chunk> chunks = chunk_document(load_markdown(src), {256, 16}, TokenCounter{});
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[1].heading, "Beta");
  EXPECT_EQ(chunks[1].text, "# Beta\nbeta words here");
  EXPECT_EQ(chunks[1].line_start, 4);
  EXPECT_EQ(chunks[1].line_end, 5);
  EXPECT_EQ(src.substr(chunks[2].byte_start, chunks[2].byte_end - chunks[2].byte_start), chunks[2].text);
}

TEST(Loader, HtmlDropsScriptsAndStyles) {
  const std::string src =
      "<html><head><title>Page T</title><style>body{color:red}</style><script>var secret=1;</script></head>\n"
      "<body><h1>Heading &amp; more</h1>\n<p>First <b>bold</b>\n paragraph.</p><script>alert('x')</script>\n"
      "<noscript>nojs</noscript><p>Second</p></body></html>";
  Document d = load_html(src);
  EXPECT_EQ(d.text.find("secret"), std::string::npos);
  EXPECT_EQ(d.text.find("color"), std::string::npos);
  EXPECT_EQ(d.text.find("alert"), std::string::npos);
  EXPECT_EQ(d.text.find("nojs"), std::string::npos);
  ASSERT_EQ(d.blocks.size(), 4u);
  EXPECT_EQ(block_text(d, 0), "Page T");
  EXPECT_EQ(block_text(d, 1), "Heading & more");
  EXPECT_EQ(d.blocks[1].heading_level, 1);
  EXPECT_EQ(block_text(d, 2), "First bold paragraph.");
  EXPECT_EQ(d.blocks[2].line_start, 3);
  EXPECT_EQ(d.blocks[2].line_end, 4);
  EXPECT_EQ(src.substr(d.blocks[3].src_byte_start, d.blocks[3].src_byte_end - d.blocks[3].src_byte_start), "Second");
}

TEST(Loader, PdfTextPerPage) {
  const std::string pdf = make_pdf({{"Hello from page one", "second line"}, {"Volcanic ash on page two"}});
  Document d = load_pdf(pdf);
  EXPECT_EQ(d.pages, 2);
  ASSERT_GE(d.blocks.size(), 2u);
  EXPECT_EQ(d.blocks.front().page, 1);
  EXPECT_EQ(d.blocks.back().page, 2);
  EXPECT_NE(block_text(d, 0).find("Hello from page one"), std::string::npos);
  EXPECT_NE(block_text(d, d.blocks.size() - 1).find("Volcanic ash"), std::string::npos);
  std::vector<Chunk> chunks = chunk_document(d, {256, 16}, TokenCounter{});
  ASSERT_EQ(chunks.size(), 2u);  // pages never share a chunk
  EXPECT_EQ(chunks[1].page, 2);
  EXPECT_EQ(chunks[1].line_start, 1);
  EXPECT_THROW(load_pdf("%PDF-1.4 garbage"), Error);
}

TEST(Loader, BinaryDetection) {
  EXPECT_FALSE(looks_binary("plain text, caf\xC3\xA9\n"));
  EXPECT_TRUE(looks_binary(std::string("ab\0cd", 5)));
  std::string noise;
  for (int i = 0; i < 1000; ++i) noise += static_cast<char>(0x80 + (i * 37) % 64);
  EXPECT_TRUE(looks_binary(noise));
  EXPECT_EQ(sanitize_utf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
}

TEST(Chunker, SizesOverlapAndPositions) {
  std::string src;
  for (int p = 0; p < 20; ++p) {
    for (int s = 0; s < 6; ++s) src += fmt::format("Paragraph {} sentence {} has several words in it. ", p, s);
    src += "\n\n";
  }
  Document d = load_text(src);
  ChunkOptions opt{64, 16};
  std::vector<Chunk> chunks = chunk_document(d, opt, TokenCounter{});
  ASSERT_GT(chunks.size(), 10u);
  TokenCounter counter;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    EXPECT_LE(c.tokens, opt.max_tokens);
    EXPECT_EQ(src.substr(c.byte_start, c.byte_end - c.byte_start), c.text) << i;
    // Breaks fall on sentence ends (every sentence fits well within a chunk).
    EXPECT_EQ(c.text.back(), '.') << c.text;
    if (i > 0) {
      EXPECT_GT(c.byte_start, chunks[i - 1].byte_start);
      EXPECT_LE(c.byte_start, chunks[i - 1].byte_end);  // overlap or adjacency, never a gap
    }
  }
  EXPECT_EQ(chunks.front().byte_start, 0u);
  EXPECT_EQ(chunks.back().byte_end, src.find_last_of('.') + 1);
  EXPECT_THROW(chunk_document(d, {64, 40}, counter), Error);
  EXPECT_THROW(chunk_document(d, {2, 0}, counter), Error);
}

TEST(Bm25, RanksByTermRarity) {
  Bm25Index idx;
  idx.add(1, "the cat sat on the mat");
  idx.add(2, "the dog chased cats in the garden");
  idx.add(3, "quantum chromodynamics of gluons");
  auto hits = idx.search("Quantum gluons", 10);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, 3);
  hits = idx.search("cats mat", 10);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].id, 1);  // matches both "cat" (plural stripped) and the rare "mat"
  idx.remove(1);
  hits = idx.search("mat", 10);
  EXPECT_TRUE(hits.empty());
  EXPECT_TRUE(idx.search("the of", 10).empty());  // stop words only
}

struct Fixture {
  TempDir tmp;
  fs::path docs = tmp / "docs";
  fs::path coll = tmp / "data" / "documents" / "test";
};

TEST(Ingest, SkipsBadFilesAndIsIncremental) {
  Fixture f;
  write(f.docs / "a.md", "# A\nalpha bravo\n");
  write(f.docs / "sub" / "b.txt", "charlie delta\n");
  write(f.docs / "c.html", "<p>echo foxtrot</p><script>golf()</script>");
  write(f.docs / "d.pdf", make_pdf({{"hotel india"}, {"juliett kilo"}}));
  write(f.docs / "blob.bin", std::string("\x7f" "ELF\0\0\0binary", 13));
  write(f.docs / "big.txt", std::string(3 << 20, 'x'));
  write(f.docs / ".hidden" / "secret.txt", "should not be seen");
  write(f.docs / "broken.pdf", "%PDF-1.4 not really");
  IngestOptions opt;
  opt.max_file_bytes = 2 << 20;
  std::vector<SkippedFile> skipped;
  IngestReport r = ingest(f.coll, {f.docs}, opt, {}, [&](const SkippedFile& s) { skipped.push_back(s); });
  EXPECT_EQ(r.files_new, 4u);
  ASSERT_EQ(r.skipped.size(), 3u);
  ASSERT_EQ(skipped.size(), 3u);
  std::string reasons;
  for (const auto& s : r.skipped) reasons += fs::path(s.path).filename().string() + ": " + s.reason + "\n";
  EXPECT_NE(reasons.find("blob.bin: binary file"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("big.txt: too large"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("broken.pdf: not a readable PDF"), std::string::npos) << reasons;
  EXPECT_EQ(r.chunks_added, 5u);  // a, b, c, and two PDF pages

  // Second run: nothing to do.
  r = ingest(f.coll, {f.docs}, opt);
  EXPECT_EQ(r.files_new + r.files_updated + r.files_deleted, 0u);
  EXPECT_EQ(r.files_unchanged, 4u);
  EXPECT_EQ(r.chunks_added, 0u);

  // Touching without changing content: still no work (hash equal).
  write(f.docs / "a.md", "# A\nalpha bravo\n");
  struct timespec ts[2] = {{0, UTIME_NOW}, {1000, 0}};
  utimensat(AT_FDCWD, (f.docs / "a.md").c_str(), ts, 0);
  r = ingest(f.coll, {f.docs}, opt);
  EXPECT_EQ(r.chunks_added, 0u);

  // Changed file replaced, deleted file dropped.
  write(f.docs / "sub" / "b.txt", "charlie delta\n\nmore text about lima\n");
  fs::remove(f.docs / "c.html");
  r = ingest(f.coll, {f.docs}, opt);
  EXPECT_EQ(r.files_updated, 1u);
  EXPECT_EQ(r.files_deleted, 1u);
  EXPECT_EQ(r.chunks_removed, 2u);
  auto ret = Retriever::open(f.coll, nullptr);
  EXPECT_TRUE(ret->search("echo foxtrot", 5).empty());
  auto hits = ret->search("lima", 5);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(fs::path(hits[0].chunk.file).filename(), "b.txt");
  hits = ret->search("juliett", 5);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].chunk.page, 2);

  // Ingesting another path into the same collection leaves this folder's files alone.
  write(f.tmp / "other" / "o.txt", "oscar papa");
  r = ingest(f.coll, {f.tmp / "other"}, opt);
  EXPECT_EQ(r.files_deleted, 0u);
  EXPECT_EQ(Catalog::open(f.coll / "catalog.db")->files().size(), 4u);  // a, b, d + o
}

TEST(Ingest, UnreadableFileIsSkipped) {
  Fixture f;
  write(f.docs / "ok.txt", "fine");
  write(f.docs / "locked.txt", "private");
  fs::permissions(f.docs / "locked.txt", fs::perms::none);
  if (::access((f.docs / "locked.txt").c_str(), R_OK) == 0) {
    fs::permissions(f.docs / "locked.txt", fs::perms::owner_all);
    GTEST_SKIP() << "skipped: running as root, chmod 000 does not block reads";
  }
  IngestReport r = ingest(f.coll, {f.docs}, IngestOptions{});
  fs::permissions(f.docs / "locked.txt", fs::perms::owner_all);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("cannot read"), std::string::npos);
  EXPECT_EQ(r.files_new, 1u);
}

TEST(Ingest, MissingPathAndBadOptions) {
  Fixture f;
  IngestReport r = ingest(f.coll, {f.tmp / "nope"}, IngestOptions{});
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_EQ(r.skipped[0].reason, "no such file or directory");
  IngestOptions bad;
  bad.chunk.overlap_tokens = 1000;
  EXPECT_THROW(ingest(f.coll, {f.tmp.path()}, bad), Error);
  EXPECT_THROW(collection_dir(f.tmp.path(), "../x"), Error);
  EXPECT_THROW(Retriever::open(f.tmp / "data" / "documents" / "none", nullptr), Error);
}

std::string filler(const std::string& name) {
  return fmt::format("Notes file {}. Nothing else of interest is recorded here.\n\n", name);
}
uint64_t filler_bytes(const std::string& name) { return filler(name).size(); }

// Writes the corpus (each document led by neutral filler so files have several chunks).
void write_corpus(const fs::path& dir) {
  for (const auto& d : testing::corpus()) write(dir / d.name, filler(d.name) + d.text + "\n");
}

void expect_top5(const Retriever& ret, const char* mode) {
  int top1 = 0;
  for (const auto& d : testing::corpus()) {
    const auto hits = ret.search(d.question, 5);
    bool found = false;
    for (size_t i = 0; i < hits.size(); ++i) {
      // The chunk must hold part of the fact, not only the file's filler line.
      if (fs::path(hits[i].chunk.file).filename() == d.name && hits[i].chunk.byte_end > filler_bytes(d.name)) {
        found = true;
        top1 += i == 0;
      }
    }
    std::string got;
    for (const auto& h : hits) got += fmt::format("\n  {} [{}]: {}", fs::path(h.chunk.file).filename().string(), h.score, h.chunk.text);
    EXPECT_TRUE(found) << mode << ": '" << d.question << "' did not retrieve " << d.name << "; got:" << got;
  }
  std::cout << mode << ": top-1 " << top1 << "/" << testing::corpus().size() << "\n";
}

TEST(Retrieval, Bm25FindsSourceChunks) {
  Fixture f;
  write_corpus(f.docs);
  IngestOptions opt;
  opt.chunk = {16, 4};  // small chunks so filler and fact are separate candidates
  ingest(f.coll, {f.docs}, opt);
  auto ret = Retriever::open(f.coll, nullptr);
  EXPECT_FALSE(ret->hybrid());
  expect_top5(*ret, "bm25");
}

TEST(Retrieval, HybridWithEmbeddingModel) {
  ETNA_REQUIRE_SHARED(model_path, "models/tiny-bert-bge-f32.gguf");
  Fixture f;
  write_corpus(f.docs);
  auto emb = engine::Embedder::load(model_path.string());
  IngestOptions opt;
  opt.chunk = {16, 4};
  opt.embedder = emb.get();
  opt.embedder_path = model_path.string();
  IngestReport r = ingest(f.coll, {f.docs}, opt);
  EXPECT_EQ(r.chunks_embedded, r.chunks_added);
  {
    auto ret = Retriever::open(f.coll, emb.get());
    ASSERT_TRUE(ret->hybrid());
    expect_top5(*ret, "hybrid");
    const auto hits = ret->search(testing::corpus()[0].question, 5);
    ASSERT_FALSE(hits.empty());
    bool any_vector = false;
    for (const auto& h : hits) any_vector = any_vector || h.vector_rank > 0;
    EXPECT_TRUE(any_vector);
  }
  auto count_points = [&] {
    auto db = store::Database::open(f.coll / "vectors");
    return db->get(kVectorCollection).count(nullptr);
  };
  EXPECT_EQ(count_points(), r.chunks_added);
  {
    auto db = store::Database::open(f.coll / "vectors");
    auto recs = db->get(kVectorCollection).scroll({}).points;
    ASSERT_FALSE(recs.empty());
    const auto& pl = *recs[0].payload;
    for (const char* key : {"doc", "file", "page", "line_start", "line_end", "byte_start", "byte_end", "text"})
      EXPECT_TRUE(pl.contains(key)) << key;
  }
  // Deleting a file removes its vectors too.
  fs::remove(f.docs / testing::corpus()[0].name);
  r = ingest(f.coll, {f.docs}, opt);
  EXPECT_EQ(r.files_deleted, 1u);
  EXPECT_EQ(count_points(), Catalog::open(f.coll / "catalog.db")->chunk_count());
  // A collection embedded with one model refuses another.
  ETNA_REQUIRE_SHARED(llama_path, "models/tiny-llama-spm-f32.gguf");
  std::unique_ptr<engine::Embedder> other;
  try {
    other = engine::Embedder::load(llama_path.string());
  } catch (const Error&) {
    GTEST_SKIP() << "skipped: llama embedder not available";
  }
  EXPECT_THROW(Retriever::open(f.coll, other.get()), Error);
}

}  // namespace
}  // namespace etna::rag

namespace etna::rag {
namespace {

TEST(Cli, IngestAndSearch) {
  const fs::path bin = etna::test::etna_binary();
  if (!fs::exists(bin)) GTEST_SKIP() << "skipped: the etna binary is not built";
  TempDir tmp;
  write(tmp / "docs" / "volcano.md", "# Etna\n\nMount Etna erupts often on Sicily.\n");
  write(tmp / "docs" / "bread.txt", "Sourdough needs a starter.\n");
  write(tmp / "docs" / "junk.bin", std::string("\0\1\2\3binary", 10));
  const std::string data = " --data " + (tmp / "data").string() + " ";
  const std::string base = bin.string() + " ";
  std::string out;
  ASSERT_EQ(etna::test::run_command(base + "ingest" + data + (tmp / "docs").string() + " --collection c 2>&1", &out), 0) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << "no progress bar when piped";
  EXPECT_NE(out.find("junk.bin: binary file"), std::string::npos) << out;
  EXPECT_NE(out.find("2 new"), std::string::npos) << out;
  ASSERT_EQ(etna::test::run_command(base + "ingest" + data + (tmp / "docs").string() + " --collection c", &out), 0);
  EXPECT_NE(out.find("0 chunks added"), std::string::npos) << out;
  ASSERT_EQ(etna::test::run_command(base + "search" + data + "--collection c --json 'Sicily eruptions'", &out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  // The documents API's fields (POST /api/collections/NAME/search), not names of its own.
  EXPECT_EQ(j["hybrid"], false);
  ASSERT_FALSE(j["hits"].empty());
  EXPECT_EQ(fs::path(j["hits"][0]["file"].get<std::string>()).filename(), "volcano.md");
  EXPECT_EQ(j["hits"][0]["name"], "volcano.md");
  EXPECT_EQ(j["hits"][0]["lines"], nlohmann::json::array({1, 3}));
  for (const char* key : {"id", "file", "name", "page", "lines", "bytes", "heading", "text", "score"})
    EXPECT_TRUE(j["hits"][0].contains(key)) << key;
  EXPECT_NE(etna::test::run_command(base + "search" + data + "--collection missing x 2>&1", &out), 0);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::rag
