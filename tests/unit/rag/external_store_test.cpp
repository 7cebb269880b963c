// The documents layer with its vectors in an external Qdrant-API store (issue 17): a second
// `etna serve` process, with an API key, acts as the cluster. Ingest, search, delete and
// re-ingest, and a restarted `etna serve --vector-store` must give what the built-in store gives
// for the same documents; a wrong key, an unreachable store, a collection of another dimension
// and one of another catalogue are refused with clear errors.
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/rag/catalog.h"
#include "etna/rag/qdrant_backend.h"
#include "etna/rag/vector_backend.h"
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

// Deleting a collection drops its remote vectors too, but a stale copy of the writer's catalogue
// may not (through the CLI or the documents API), nor may a server pointed at another store.
TEST_F(ExternalStore, OnlyTheWriterDeletesTheRemoteCollection) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  std::string out;
  const std::string ingest = "ingest " + docs() + " --collection c --embedding-model " + quote(model.string());
  ASSERT_EQ(etna(ingest + " --data " + quote(data("writer")) + " --vector-store " + cluster_->url(), &out), 0) << out;
  const fs::path from = dir_ / "writer" / "documents" / "c";
  for (const char* copy : {"replica", "replica2"}) {
    const fs::path to = dir_ / copy / "documents" / "c";
    fs::create_directories(to);
    for (const char* f : {"catalog.db", "catalog.db-wal"})
      if (fs::exists(from / f)) fs::copy_file(from / f, to / f);
  }
  write_file(dir_ / "docs" / "violin.txt", "a new text about cellos and violas\n");
  ASSERT_EQ(etna(ingest + " --data " + quote(data("writer")), &out), 0) << out;
  const uint64_t points = remote_points(cluster_->port(), "etna_docs_c");
  ASSERT_GT(points, 10u);

  EXPECT_NE(etna("collections delete c --data " + quote(data("replica")), &out), 0) << out;
  EXPECT_NE(out.find("written by a newer copy of this catalogue"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir_ / "replica" / "documents" / "c" / "catalog.db"));
  {
    test::ServeProcess front(dir_ / "front", dir_ / "replica2", {"--no-model", "--quiet", "--vector-store-key", kKey});
    ASSERT_GT(front.port(), 0) << front.stop();
    httplib::Client c("127.0.0.1", front.port());
    auto r = c.Delete("/api/collections/c");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409) << r->body;
    EXPECT_NE(r->body.find("newer copy"), std::string::npos) << r->body;
  }
  {
    // Another store than the one recorded: refused, not a delete in the wrong place.
    test::ServeProcess front(dir_ / "front2", dir_ / "writer",
                             {"--no-model", "--quiet", "--vector-store", "http://127.0.0.1:9"});
    ASSERT_GT(front.port(), 0) << front.stop();
    httplib::Client c("127.0.0.1", front.port());
    auto files = c.Get("/api/collections/c/files");
    ASSERT_TRUE(files);
    ASSERT_EQ(files->status, 200) << files->body;
    const std::string path = json::parse(files->body)["files"][0]["path"].get<std::string>();
    auto r = c.Delete(("/api/collections/c/files?path=" + httplib::detail::encode_query_param(path)).c_str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(r->body.find("keeps its vectors in " + cluster_->url()), std::string::npos) << r->body;
  }
  EXPECT_EQ(remote_points(cluster_->port(), "etna_docs_c"), points);

  ASSERT_EQ(etna("collections delete c --data " + quote(data("writer")), &out), 0) << out;
  EXPECT_NE(out.find("external store"), std::string::npos) << out;
  httplib::Client cl("127.0.0.1", cluster_->port());
  auto gone = cl.Get("/collections/etna_docs_c", httplib::Headers{{"api-key", kKey}});
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404) << gone->body;
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


// A store whose generation write is applied but then reported failed (a timeout after the server
// did it): the writer must not be locked out of its own store.
class FlakyGenerationStore final : public VectorBackend {
 public:
  uint64_t stored = 0;
  bool fail_after_write = true;
  std::string where() const override { return "the test store"; }
  bool exists() override { return true; }
  void check(const VectorMeta&) override {}
  void ensure(const VectorMeta&) override {}
  void drop(const std::string&) override {}
  void upsert(const std::vector<ChunkVector>&) override {}
  void remove(const std::vector<int64_t>&) override {}
  std::vector<VectorHit> nearest(const std::vector<float>&, size_t) override { return {}; }
  std::vector<std::pair<int64_t, std::vector<float>>> fetch(const std::vector<int64_t>&) override { return {}; }
  uint64_t count() override { return 0; }
  uint64_t generation(const std::string&) override { return stored; }
  void set_generation(uint64_t g, const std::string&) override {
    stored = g;
    if (fail_after_write) fail(ErrorKind::unavailable, "timed out");
  }
};

TEST(ExternalStoreClaim, AStoreWriteThatFailsAfterApplyingDoesNotLockTheWriterOut) {
  test::TempDir dir;
  auto cat = Catalog::open(dir / "catalog.db");
  cat->set_meta("catalog_id", "abc");
  FlakyGenerationStore store;
  EXPECT_THROW(claim_vector_store(store, *cat), Error);
  EXPECT_EQ(store.stored, 1u);
  store.fail_after_write = false;
  EXPECT_EQ(claim_vector_store(store, *cat), 2u);  // the catalogue was ahead or level, never behind
  EXPECT_EQ(store.stored, 2u);
  // A copy behind the store is still refused.
  cat->set_meta("store_generation", "1");
  try {
    claim_vector_store(store, *cat);
    ADD_FAILURE() << "a stale catalogue claimed the store";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
  }
}

TEST(ExternalStoreOptions, CredentialsInTheUrlAreRefused) {
  try {
    normalise_store_url("https://user:s3cret@qdrant.example:6333");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("--vector-store-key"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
  }
  EXPECT_EQ(normalise_store_url("https://qdrant.example:6333/a@b/"), "https://qdrant.example:6333/a@b");
}

TEST(ExternalStoreOptions, ChangesGoOnlyToTheRecordedStore) {
  test::TempDir dir;
  const fs::path col = dir / "c";
  fs::create_directories(col);
  auto cat = Catalog::open(col / "catalog.db");
  cat->set_meta("vector_store", "http://127.0.0.1:1");
  VectorStoreOptions o;
  o.url = "http://127.0.0.1:2";
  // No vectors yet: the recorded store (nothing is sent until asked).
  EXPECT_NE(open_recorded_vector_backend(col, *cat, o)->where().find("127.0.0.1:1"), std::string::npos);
  cat->set_meta("embedding_id", "m|8");
  try {
    open_recorded_vector_backend(col, *cat, o);
    ADD_FAILURE() << "opened another store than the recorded one";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("keeps its vectors in http://127.0.0.1:1"), std::string::npos) << e.what();
  }
  o.url = "http://127.0.0.1:1/";
  EXPECT_NO_THROW(open_recorded_vector_backend(col, *cat, o));
  o.url.clear();
  EXPECT_NO_THROW(open_recorded_vector_backend(col, *cat, o));
}

// An in-process HTTP server answering every GET with `get` and every POST with `post` (HTTP 200).
class ExternalStoreOddAnswers : public ::testing::Test {
 protected:
  void start(std::string get, std::string post = "") {
    get_ = std::move(get);
    post_ = post.empty() ? get_ : std::move(post);
    server_.Get(".*", [this](const httplib::Request&, httplib::Response& r) { r.set_content(get_, "application/json"); });
    server_.Post(".*", [this](const httplib::Request&, httplib::Response& r) { r.set_content(post_, "application/json"); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void TearDown() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::unique_ptr<VectorBackend> open(size_t max_bytes = size_t{256} << 20) {
    VectorStoreOptions o;
    o.url = url();
    o.api_key = kKey;
    o.retries = 0;
    o.max_response_bytes = max_bytes;
    return open_qdrant_backend(o, "etna_docs_c");
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // What `f` throws: an etna::Error naming the store, never the key.
  template <class F>
  std::string error_of(F&& f) {
    try {
      f();
    } catch (const Error& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(url()), std::string::npos) << w;
      EXPECT_EQ(w.find(kKey), std::string::npos) << w;
      return w;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not an etna::Error: " << e.what();
      return "";
    }
    ADD_FAILURE() << "nothing thrown";
    return "";
  }
  httplib::Server server_;
  std::string get_, post_;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(ExternalStoreOddAnswers, ANonJsonAnswerIsAnEtnaError) {
  start("<html>hello</html>");
  EXPECT_NE(error_of([&] { open()->exists(); }).find("unexpected answer"), std::string::npos);
  EXPECT_NE(error_of([&] { open()->nearest({1, 0}, 3); }).find("unexpected answer"), std::string::npos);
}

TEST_F(ExternalStoreOddAnswers, AnswersOfTheWrongShapeAreEtnaErrors) {
  start(R"({"result": {"config": 7}})", R"({"result": {"points": [{"id": 1, "score": "high"}], "count": -1}})");
  auto b = open();
  EXPECT_NE(error_of([&] { b->nearest({1, 0}, 3); }).find("/points/query"), std::string::npos);
  EXPECT_NE(error_of([&] { b->count(); }).find("/points/count"), std::string::npos);
  EXPECT_NE(error_of([&] { b->fetch({1}); }).find("/points"), std::string::npos);
  EXPECT_FALSE(error_of([&] { b->check({"m|2", 2, "abc"}); }).empty());
}

TEST_F(ExternalStoreOddAnswers, AMetaRecordOfTheWrongTypesIsNotAnotherCatalogues) {
  start(R"({"result": {"config": {}}})",
        R"({"result": [{"id": 0, "payload": {"etna_meta": {"catalog": 5, "model": [], "generation": "x"}}}]})");
  auto b = open();
  EXPECT_EQ(b->generation("abc"), 0u);
  EXPECT_NO_THROW(b->drop("abc"));  // not this catalogue's: left alone
}

TEST_F(ExternalStoreOddAnswers, AnOverlongAnswerIsCut) {
  start(std::string(R"({"result": {"pad": ")") + std::string(64 << 10, 'x') + R"("}})");
  const std::string w = error_of([&] { open(4096)->exists(); });
  EXPECT_NE(w.find("over 4096 bytes"), std::string::npos) << w;
  EXPECT_TRUE(open()->exists());  // under the default limit
}

}  // namespace
}  // namespace etna::rag
