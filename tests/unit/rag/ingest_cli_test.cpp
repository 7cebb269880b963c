// `etna ingest`, `etna collections` and `etna search` through the binary: what a newcomer meets in
// the first hour (issue 16, items 20 and 24).
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <zlib.h>

#include "etna/rag/bm25.h"
#include "etna/rag/catalog.h"
#include "etna/rag/loader.h"
#include "support/test_support.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int etna(const std::string& args, std::string* out, bool merge = true) {
  return test::run_command(quote(test::etna_binary().string()) + " " + args, out, merge);
}

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string words(int n, const std::string& stem) {
  std::string s;
  for (int i = 0; i < n; ++i) s += stem + std::to_string(i) + (i % 12 == 11 ? ".\n" : " ");
  return s;
}

TEST(IngestCli, AMissingPathIsAnErrorAndCreatesNoCollection) {
  test::TempDir data;
  std::string out;
  EXPECT_NE(etna("ingest --collection typo /nonexistent/dir --data " + quote(data.path().string()), &out), 0) << out;
  EXPECT_NE(out.find("/nonexistent/dir: no such file or directory"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(data / "documents" / "typo"));
  // One missing path among good ones is refused too, before anything is written.
  write_file(data / "docs" / "a.txt", "alpha beta gamma\n");
  EXPECT_NE(etna("ingest --collection c " + quote((data / "docs").string()) + " /nonexistent/x --data " +
                     quote(data.path().string()),
                 &out),
            0);
  EXPECT_FALSE(fs::exists(data / "documents" / "c"));
}

TEST(IngestCli, ChunkSizeFitsTheEmbeddingModelAndIsRecorded) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  test::TempDir data;
  write_file(data / "docs" / "long.txt", words(900, "word"));
  const std::string d = " --data " + quote(data.path().string()) + " ";
  const std::string docs = quote((data / "docs").string());
  std::string out;
  // Without a model: the default 256 tokens, recorded.
  ASSERT_EQ(etna("ingest " + docs + " --collection c" + d, &out), 0) << out;
  const fs::path cat_path = data / "documents" / "c" / "catalog.db";
  EXPECT_EQ(Catalog::open(cat_path)->meta("chunking").value_or(""), "256/32");
  // Asking for a size the model cannot hold is refused, naming the limit; nothing changes.
  EXPECT_NE(etna("ingest " + docs + " --collection c --chunk-tokens 256 --embedding-model " + quote(model.string()) + d, &out), 0);
  EXPECT_NE(out.find("do not fit the embedding model"), std::string::npos) << out;
  EXPECT_NE(out.find("--chunk-tokens 124 or less"), std::string::npos) << out;
  EXPECT_EQ(Catalog::open(cat_path)->meta("chunking").value_or(""), "256/32");
  // Adding the model without a size: every chunk is cut again at the model's limit (not left at
  // 256 to be truncated when embedded), and the catalogue records the size used.
  ASSERT_EQ(etna("ingest " + docs + " --collection c --embedding-model " + quote(model.string()) + d, &out), 0) << out;
  EXPECT_NE(out.find("chunked again with 124 tokens"), std::string::npos) << out;
  auto cat = Catalog::open(cat_path);
  EXPECT_EQ(cat->meta("chunking").value_or(""), "124/32");
  const int64_t chunks = cat->chunk_count();
  EXPECT_GT(chunks, 7) << "900 words in chunks of at most 124 tokens";
  cat.reset();
  // A later run keeps the recorded size.
  ASSERT_EQ(etna("ingest " + docs + " --collection c" + d, &out), 0) << out;
  EXPECT_NE(out.find("0 chunks added"), std::string::npos) << out;
  EXPECT_EQ(Catalog::open(cat_path)->meta("chunking").value_or(""), "124/32");
  // An explicit size that fits re-chunks and is recorded.
  ASSERT_EQ(etna("ingest " + docs + " --collection c --chunk-tokens 64 --overlap 8" + d, &out), 0) << out;
  EXPECT_EQ(Catalog::open(cat_path)->meta("chunking").value_or(""), "64/8");
  EXPECT_GT(Catalog::open(cat_path)->chunk_count(), chunks);
}

TEST(CollectionsCli, ListAndDeleteWithTheApiFields) {
  test::TempDir data;
  const std::string d = " --data " + quote(data.path().string());
  std::string out;
  ASSERT_EQ(etna("collections" + d, &out), 0) << out;
  EXPECT_NE(out.find("no collections"), std::string::npos) << out;
  write_file(data / "docs" / "a.txt", "alpha beta gamma\n\ndelta epsilon\n");
  write_file(data / "docs" / "b.md", "# B\n\nzeta eta theta\n");
  ASSERT_EQ(etna("ingest " + quote((data / "docs").string()) + " --collection notes" + d, &out), 0) << out;
  ASSERT_EQ(etna("ingest " + quote((data / "docs" / "a.txt").string()) + " --collection other" + d, &out), 0) << out;
  ASSERT_EQ(etna("collections --json" + d, &out, false), 0) << out;
  json j = json::parse(out);
  ASSERT_EQ(j["collections"].size(), 2u) << out;
  EXPECT_EQ(j["collections"][0]["name"], "notes");
  EXPECT_EQ(j["collections"][0]["files"], 2);
  EXPECT_GE(j["collections"][0]["chunks"].get<int>(), 2);
  EXPECT_TRUE(j["collections"][0]["embedding_model"].is_null());
  ASSERT_EQ(etna("collections list" + d, &out), 0) << out;
  EXPECT_NE(out.find("notes"), std::string::npos);
  EXPECT_NE(out.find("(BM25 only)"), std::string::npos) << out;
  ASSERT_EQ(etna("collections delete other" + d, &out), 0) << out;
  EXPECT_FALSE(fs::exists(data / "documents" / "other"));
  EXPECT_TRUE(fs::exists(data / "docs" / "a.txt")) << "the original files stay";
  EXPECT_NE(etna("collections delete other" + d, &out), 0);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
  EXPECT_NE(etna("collections delete ../x" + d, &out), 0);
}

std::string gzip(const std::string& s) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(compressBound(s.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  zs.avail_in = static_cast<uInt>(s.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(IngestCli, GzipTextIsReadDecompressed) {
  test::TempDir data;
  write_file(data / "docs" / "changelog.gz", gzip("The quokka release fixed the marmalade parser.\n"));
  write_file(data / "docs" / "notes.md.gz", gzip("# Notes\n\nThe wombat index is rebuilt nightly.\n"));
  write_file(data / "docs" / "broken.txt.gz", "not gzip at all");
  const std::string d = " --data " + quote(data.path().string());
  std::string out;
  ASSERT_EQ(etna("ingest " + quote((data / "docs").string()) + " --collection z" + d, &out), 0) << out;
  EXPECT_NE(out.find("broken.txt.gz: not valid gzip data"), std::string::npos) << out;
  EXPECT_NE(out.find("2 new"), std::string::npos) << out;
  ASSERT_EQ(etna("search --json --collection z " + quote("quokka marmalade") + d, &out, false), 0) << out;
  json j = json::parse(out);
  ASSERT_FALSE(j["hits"].empty()) << out;
  EXPECT_EQ(j["hits"][0]["name"], "changelog.gz");
  EXPECT_NE(j["hits"][0]["text"].get<std::string>().find("quokka release"), std::string::npos);
  ASSERT_EQ(etna("search --json --collection z wombat" + d, &out, false), 0) << out;
  j = json::parse(out);
  ASSERT_FALSE(j["hits"].empty()) << out;
  EXPECT_EQ(j["hits"][0]["heading"], "Notes") << "read as Markdown";
  // A gzip bomb is bounded by --max-file-mb on the inflated size.
  write_file(data / "bomb" / "zeros.txt.gz", gzip(std::string(3 << 20, 'a')));
  ASSERT_EQ(etna("ingest " + quote((data / "bomb").string()) + " --collection b --max-file-mb 1" + d, &out), 0) << out;
  EXPECT_NE(out.find("inflates to more than"), std::string::npos) << out;
}

TEST(HtmlLoader, TitleRepeatedByTheFirstHeadingIsOneChunk) {
  const Document doc = load_html(
      "<!doctype html><html><head><title>Boiler manual</title></head><body><h1>Boiler manual</h1>"
      "<p>The boiler must be serviced every spring.</p><h2>Pressure</h2><p>One to two bar.</p></body></html>");
  int title_blocks = 0;
  for (const Block& b : doc.blocks)
    if (doc.text.substr(b.begin, b.end - b.begin) == "Boiler manual") ++title_blocks;
  EXPECT_EQ(title_blocks, 1) << doc.text;
  // A different title stays.
  const Document other = load_html("<html><head><title>Site</title></head><body><h1>Page</h1><p>x y z</p></body></html>");
  EXPECT_NE(other.text.find("Site"), std::string::npos);
  EXPECT_NE(other.text.find("Page"), std::string::npos);
}

TEST(Bm25, DotLeaderPagesRankBelowTheTextTheyPointTo) {
  EXPECT_DOUBLE_EQ(leader_fraction("The boiler is serviced every spring... by a technician."), 0.0);
  EXPECT_GT(leader_fraction("Pressure . . . . . . . . . . 12\nServicing ............ 14\n"), 0.5);
  Bm25Index idx;
  idx.add(1, "Contents\nBoiler servicing . . . . . . . . . . . . . . . . . 12\nBoiler pressure . . . . . . . . . . . . . . . . . 14\n"
             "Boiler safety . . . . . . . . . . . . . . . . . . 15\nIndex . . . . . . . . . . . . . . . . . . . . . . 20\n");
  idx.add(2, "Boiler servicing. The boiler must be serviced every spring by a certified technician, who checks the "
             "burner, the flue and the seals, and cleans the heat exchanger; keep the report with the warranty card.");
  idx.add(3, "Garden notes: tomatoes are watered every morning.");
  const auto hits = idx.search("boiler servicing", 3);
  ASSERT_GE(hits.size(), 2u);
  EXPECT_EQ(hits[0].id, 2) << "the passage, not the contents page";
}

// A real PDF with an index of dot leaders (Debian's libtasn1-doc), when installed.
TEST(IngestCli, RealPdfIndexPageRanksBelowTheFunctionsDescription) {
  const fs::path pdf = "/usr/share/doc/libtasn1-doc/libtasn1.pdf";
  if (!fs::exists(pdf)) GTEST_SKIP() << "skipped: " << pdf << " not installed";
  test::TempDir data;
  const std::string d = " --data " + quote(data.path().string());
  std::string out;
  ASSERT_EQ(etna("ingest " + quote(pdf.string()) + " --collection t" + d, &out), 0) << out;
  ASSERT_EQ(etna("search --json -k 3 --collection t asn1_der_coding" + d, &out, false), 0) << out;
  const json j = json::parse(out);
  ASSERT_FALSE(j["hits"].empty());
  EXPECT_LT(leader_fraction(j["hits"][0]["text"].get<std::string>()), 0.1) << j["hits"][0]["text"];
  EXPECT_NE(j["hits"][0]["text"].get<std::string>().find("asn1_der_coding"), std::string::npos);
}

}  // namespace
}  // namespace etna::rag
