// The documents layer with its vectors in an external Qdrant-API store (issue 17): a second
// `etna serve` process, with an API key, acts as the cluster. Ingest, search, delete and
// re-ingest, and a restarted `etna serve --vector-store` must give what the built-in store gives
// for the same documents; a wrong key, an unreachable store, a collection of another dimension
// and one of another catalogue are refused with clear errors.
#include <cmath>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/serve_process.h"
#include "support/test_support.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kKey = "cluster-secret-7f3a";

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// `etna ARGS` with the cluster's key in the environment (not on the command line).
int etna(const std::string& args, std::string* out, const std::string& key = kKey) {
  return test::run_command("ETNA_VECTOR_STORE_KEY=" + quote(key) + " " + quote(test::etna_binary().string()) + " " +
                               args,
                           out, /*merge_stderr=*/true);
}

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// A few documents on distinct subjects, several chunks each.
void write_corpus(const fs::path& dir) {
  const char* topics[][2] = {
      {"volcano.txt", "magma lava eruption crater basalt ash caldera vent pumice tephra"},
      {"bread.txt", "flour yeast dough oven crust knead loaf sourdough rye bake"},
      {"orbit.txt", "satellite orbit perigee apogee thrust rocket launch gravity payload inclination"},
      {"violin.txt", "violin bow string rosin bridge scroll luthier spruce maple fingerboard"},
      {"river.txt", "river delta estuary meander floodplain silt tributary watershed current bank"},
  };
  for (const auto& t : topics) {
    std::string text;
    std::istringstream words(t[1]);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    for (int p = 0; p < 8; ++p) {
      for (int s = 0; s < 40; ++s) text += w[(s * 7 + p * 3) % w.size()] + (s % 10 == 9 ? ". " : " ");
      text += "\n\n";
    }
    write_file(dir / t[0], text);
  }
}

json search_json(const std::string& data, const std::string& query, const std::string& extra, std::string* out) {
  const int rc = etna("search " + quote(query) + " --collection c --json -k 8 --data " + quote(data) + " " + extra, out);
  if (rc != 0) return json();
  return json::parse(*out, nullptr, false);
}

// Same hits in the same order with the same scores (within float noise).
void expect_same_hits(const json& a, const json& b, const std::string& what) {
  ASSERT_TRUE(a.is_object() && b.is_object()) << what;
  EXPECT_EQ(a["hybrid"], b["hybrid"]) << what;
  ASSERT_EQ(a["hits"].size(), b["hits"].size()) << what;
  for (size_t i = 0; i < a["hits"].size(); ++i) {
    const json &x = a["hits"][i], &y = b["hits"][i];
    EXPECT_NEAR(x["score"].get<double>(), y["score"].get<double>(), 1e-5) << what << " rank " << i;
    // Equal scores may come in either order; distinct ones must name the same chunk.
    if (std::abs(x["score"].get<double>() - y["score"].get<double>()) < 1e-9) {
      EXPECT_EQ(x["file"], y["file"]) << what << " rank " << i;
      EXPECT_EQ(x["lines"], y["lines"]) << what << " rank " << i;
    }
  }
}

uint64_t remote_points(int port, const std::string& collection) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/collections/" + collection, httplib::Headers{{"api-key", kKey}});
  if (!r || r->status != 200) return 0;
  return json::parse(r->body)["result"]["points_count"].get<uint64_t>();
}

class ExternalStore : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<test::ServeProcess>(dir_ / "cluster", dir_ / "cluster-data",
                                                    std::vector<std::string>{"--no-model", "--quiet", "--api-key", kKey});
    ASSERT_GT(cluster_->port(), 0) << cluster_->stop();
    write_corpus(dir_ / "docs");
  }
  std::string data(const std::string& name) const { return (dir_ / name).string(); }
  std::string docs() const { return quote((dir_ / "docs").string()); }
  test::TempDir dir_;
  std::unique_ptr<test::ServeProcess> cluster_;
};

TEST_F(ExternalStore, DocumentsFlowMatchesTheBuiltinStore) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  const std::string m = " --embedding-model " + quote(model.string());
  const std::string remote = " --vector-store " + cluster_->url();
  std::string out;
  ASSERT_EQ(etna("ingest " + docs() + " --collection c" + m + " --data " + quote(data("local")), &out), 0) << out;
  ASSERT_EQ(etna("ingest " + docs() + " --collection c" + m + " --data " + quote(data("remote")) + remote, &out), 0)
      << out;
  // The catalogue is local, the vectors are not.
  EXPECT_TRUE(fs::exists(dir_ / "remote" / "documents" / "c" / "catalog.db"));
  EXPECT_FALSE(fs::exists(dir_ / "remote" / "documents" / "c" / "vectors"));
  const uint64_t points = remote_points(cluster_->port(), "etna_docs_c");
  EXPECT_GT(points, 10u);  // every chunk, plus Etna's record

  const std::vector<std::string> queries = {"lava eruption crater", "sourdough loaf", "rocket thrust orbit",
                                            "spruce violin bridge", "meander silt"};
  for (const auto& q : queries) {
    std::string lo, ro;
    const json l = search_json(data("local"), q, "", &lo);
    const json r = search_json(data("remote"), q, "", &ro);  // the store recorded in the catalogue
    ASSERT_TRUE(r.is_object()) << ro;
    EXPECT_TRUE(r["hybrid"].get<bool>()) << ro;
    expect_same_hits(l, r, q);
    const json rrf_l = search_json(data("local"), q, "--fusion rrf", &lo);
    const json rrf_r = search_json(data("remote"), q, "--fusion rrf" + remote, &ro);
    expect_same_hits(rrf_l, rrf_r, q + " (rrf)");
  }

  // A file deleted, then both re-ingested: its chunks leave the cluster too.
  fs::remove(dir_ / "docs" / "bread.txt");
  ASSERT_EQ(etna("ingest " + docs() + " --collection c --data " + quote(data("local")), &out), 0) << out;
  ASSERT_EQ(etna("ingest " + docs() + " --collection c --data " + quote(data("remote")), &out), 0) << out;
  EXPECT_NE(out.find("1 deleted"), std::string::npos) << out;
  EXPECT_LT(remote_points(cluster_->port(), "etna_docs_c"), points);
  std::string lo, ro;
  const json after_l = search_json(data("local"), "sourdough loaf rye", "", &lo);
  const json after_r = search_json(data("remote"), "sourdough loaf rye", "", &ro);
  expect_same_hits(after_l, after_r, "after the delete");
  for (const auto& h : after_r["hits"]) EXPECT_EQ(h["name"].get<std::string>().find("bread"), std::string::npos);

  // The documents API of a (restarted) `etna serve --vector-store` answers as the CLI does.
  const std::string body = R"({"query": "rocket thrust orbit", "k": 8})";
  json first;
  for (int run = 0; run < 2; ++run) {
    test::ServeProcess front(dir_ / ("front" + std::to_string(run)), dir_ / "remote",
                             {"--quiet", "--vector-store", cluster_->url(), "--vector-store-key", kKey,
                              "--embedding-model=" + model.string()});
    ASSERT_GT(front.port(), 0) << front.stop();
    httplib::Client c("127.0.0.1", front.port());
    c.set_read_timeout(120, 0);
    // The server listens while the embedding model loads (/health answers 503 until then).
    for (int i = 0; i < 6000; ++i) {
      auto h = c.Get("/health");
      if (h && h->status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    auto r = c.Post("/api/collections/c/search", body, "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body << front.stop();
    const json j = json::parse(r->body);
    EXPECT_TRUE(j["hybrid"].get<bool>()) << r->body;
    if (run == 0) first = j;
    else expect_same_hits(first, j, "after a restart");
  }
  const json cli = search_json(data("remote"), "rocket thrust orbit", "", &ro);
  ASSERT_EQ(cli["hits"].size(), first["hits"].size());
  for (size_t i = 0; i < cli["hits"].size(); ++i) EXPECT_EQ(cli["hits"][i]["id"], first["hits"][i]["id"]) << i;

  // A wrong key: refused, saying so, without echoing any key.
  EXPECT_NE(etna("search lava --collection c --data " + quote(data("remote")), &out, "not-the-key"), 0);
  EXPECT_NE(out.find("refused the API key"), std::string::npos) << out;
  EXPECT_NE(out.find(cluster_->url()), std::string::npos) << out;
  EXPECT_EQ(out.find("not-the-key"), std::string::npos) << out;
  EXPECT_EQ(out.find(kKey), std::string::npos) << out;

  // Another data folder's collection of the same name is not overwritten.
  const uint64_t kept = remote_points(cluster_->port(), "etna_docs_c");
  EXPECT_NE(etna("ingest " + docs() + " --collection c" + m + " --data " + quote(data("other")) + remote, &out), 0);
  EXPECT_NE(out.find("another catalogue"), std::string::npos) << out;
  EXPECT_EQ(remote_points(cluster_->port(), "etna_docs_c"), kept);

  // The cluster gone: a clear error naming it, not a hang or BM25 results passed off as hybrid.
  cluster_->stop();
  EXPECT_NE(etna("search lava --collection c --data " + quote(data("remote")), &out), 0);
  EXPECT_NE(out.find("unreachable"), std::string::npos) << out;
  EXPECT_NE(out.find(cluster_->url()), std::string::npos) << out;
}

TEST_F(ExternalStore, AskAnswersFromRemoteVectors) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  ETNA_REQUIRE_SHARED(chat, "models/stories260K.gguf");
  std::string out;
  ASSERT_EQ(etna("ingest " + docs() + " --collection c --embedding-model " + quote(model.string()) + " --data " +
                     quote(data("remote")) + " --vector-store " + cluster_->url(),
                 &out),
            0)
      << out;
  ASSERT_EQ(etna("ask " + quote("what comes out of a crater?") + " --collection c --json -n 8 -m " + quote(chat.string()) +
                     " --data " + quote(data("remote")),
                 &out),
            0)
      << out;
  const json j = json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  ASSERT_FALSE(j["retrieved"].empty()) << out;
}

// A replica reads a copy of the writer's catalogue; once the writer has moved on, the copy may
// still search but not write (its chunk ids would overwrite the writer's).
TEST_F(ExternalStore, ACopiedCatalogueSearchesButAStaleOneCannotWrite) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  std::string out;
  const std::string ingest = "ingest " + docs() + " --collection c --embedding-model " + quote(model.string());
  ASSERT_EQ(etna(ingest + " --data " + quote(data("writer")) + " --vector-store " + cluster_->url(), &out), 0) << out;
  const fs::path from = dir_ / "writer" / "documents" / "c", to = dir_ / "replica" / "documents" / "c";
  fs::create_directories(to);
  for (const char* f : {"catalog.db", "catalog.db-wal"})
    if (fs::exists(from / f)) fs::copy_file(from / f, to / f);
  std::string wo, ro;
  expect_same_hits(search_json(data("writer"), "violin rosin", "", &wo), search_json(data("replica"), "violin rosin", "", &ro),
                   "replica");
  EXPECT_EQ(search_json(data("replica"), "violin rosin", "", &ro)["hybrid"], true) << ro;

  write_file(dir_ / "docs" / "violin.txt", "a new text about cellos and violas\n");
  ASSERT_EQ(etna(ingest + " --data " + quote(data("writer")), &out), 0) << out;
  EXPECT_NE(etna(ingest + " --data " + quote(data("replica")), &out), 0) << out;
  EXPECT_NE(out.find("written by a newer copy of this catalogue"), std::string::npos) << out;
  // The writer's vectors are intact: its search still matches the built-in store's.
  ASSERT_EQ(etna(ingest + " --data " + quote(data("local")), &out), 0) << out;
  expect_same_hits(search_json(data("local"), "cellos violas", "", &wo), search_json(data("writer"), "cellos violas", "", &ro),
                   "writer after the refused replica");
}

TEST_F(ExternalStore, ACollectionOfAnotherDimensionIsRefused) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  httplib::Client c("127.0.0.1", cluster_->port());
  auto r = c.Put("/collections/etna_docs_d", httplib::Headers{{"api-key", kKey}},
                 R"({"vectors": {"dense": {"size": 8, "distance": "Cosine"}}})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::string out;
  EXPECT_NE(etna("ingest " + docs() + " --collection d --embedding-model " + quote(model.string()) + " --data " +
                     quote(data("x")) + " --vector-store " + cluster_->url(),
                 &out),
            0);
  EXPECT_NE(out.find("holds vectors of dimension 8"), std::string::npos) << out;
  EXPECT_NE(out.find("etna_docs_d"), std::string::npos) << out;
  EXPECT_EQ(remote_points(cluster_->port(), "etna_docs_d"), 0u);  // left as it was
}

TEST(ExternalStoreOptions, ABadUrlIsRefused) {
  test::TempDir dir;
  write_file(dir / "docs" / "a.txt", "alpha beta gamma\n");
  std::string out;
  EXPECT_NE(etna("ingest " + quote((dir / "docs").string()) + " --collection c --vector-store ftp://host --data " +
                     quote(dir.path().string()),
                 &out),
            0);
  EXPECT_NE(out.find("give an http:// or https:// URL"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::rag
