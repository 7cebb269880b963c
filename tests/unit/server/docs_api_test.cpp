// The documents API through a real HttpServer and httplib::Client: collections, multipart uploads
// as jobs, file listing and deletion, search, server-folder ingestion limited to allowed folders,
// and ask (streamed and not) with stories260K.
#include "etna/server/docs_api.h"

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/openai_api.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using etna::test::TempDir;

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

class DocsServer {
 public:
  DocsServer(const fs::path& data, std::vector<fs::path> allowed = {}, OpenAIService* models = nullptr,
             const std::string& embedding_model_path = "") {
    ServerOptions opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.idle_timeout = std::chrono::milliseconds(1000);
    server_ = std::make_unique<HttpServer>(opt);
    DocsOptions d;
    d.data_dir = data;
    d.allowed_ingest_dirs = std::move(allowed);
    d.embedding_model_path = embedding_model_path;
    docs_ = std::make_unique<DocsService>(d, models);
    register_docs_routes(*server_, *docs_);
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~DocsServer() {
    server_->stop();
    thread_.join();
    docs_.reset();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(300, 0);
    c.set_connection_timeout(30, 0);
    return c;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<DocsService> docs_;
  std::thread thread_;
};

json body_of(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no response";
  if (!r) return json();
  return json::parse(r->body, nullptr, /*allow_exceptions=*/false);
}

// Polls the job until it is no longer running (bounded, so a stuck job fails instead of hanging).
json wait_job(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 6000; ++i) {
    auto r = c.Get("/api/jobs/" + id);
    if (!r || r->status != 200) return json();
    json j = json::parse(r->body);
    if (j["state"] != "running") return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "job " << id << " did not finish";
  return json();
}

const char* kNotes =
    "Zebra crossings were introduced in 1951.\n"
    "Pedestrians have priority on a zebra crossing once they step onto it.\n\n"
    "Pelican crossings use lights instead.\n";
const char* kGuide =
    "# Boiler guide\n\nThe boiler must be serviced every spring by a certified technician.\n\n"
    "## Pressure\n\nKeep the pressure gauge between one and two bar.\n";

// How many "path"/"file" strings in `j` name the server's data folder.
int sr_files_absolute_paths(const json& j, const fs::path& data) {
  int n = 0;
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it->is_string() && (it.key() == "path" || it.key() == "file"))
        n += it->get<std::string>().find(data.string()) != std::string::npos;
      else
        n += sr_files_absolute_paths(*it, data);
    }
  } else if (j.is_array()) {
    for (const auto& x : j) n += sr_files_absolute_paths(x, data);
  }
  return n;
}

httplib::MultipartFormDataItems upload_items() {
  return {{"file", kNotes, "notes.txt", "text/plain"}, {"file", kGuide, "guide.md", "text/markdown"}};
}

TEST(DocsApi, SafeUploadNames) {
  EXPECT_EQ(safe_upload_name("report.pdf"), "report.pdf");
  EXPECT_EQ(safe_upload_name("dir/sub/report.pdf"), "report.pdf");
  EXPECT_EQ(safe_upload_name("C:\\Users\\me\\notes.txt"), "notes.txt");
  EXPECT_EQ(safe_upload_name("résumé 2024.txt"), "résumé 2024.txt");
  for (const std::string& bad : std::vector<std::string>{"", "..", "../x.txt", "a/../../x.txt", "..\\x.txt", "dir/", ".", ".hidden",
                                std::string("a\x01.txt"), std::string("a\nb.txt"), std::string("\xff\xfe.txt"),
                                std::string(300, 'a')}) {
    EXPECT_THROW(safe_upload_name(bad), Error) << bad;
  }
}

TEST(DocsApi, CreateUploadListSearchDeleteFile) {
  TempDir data;
  DocsServer s(data.path());
  auto c = s.client();

  auto created = c.Put("/api/collections/manuals");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(body_of(created)["name"], "manuals");
  EXPECT_EQ(c.Put("/api/collections/manuals")->status, 409);
  json list = body_of(c.Get("/api/collections"));
  ASSERT_EQ(list["collections"].size(), 1u);
  EXPECT_EQ(list["collections"][0]["name"], "manuals");
  EXPECT_EQ(list["collections"][0]["files"], 0);

  auto up = c.Post("/api/collections/manuals/files", upload_items());
  ASSERT_TRUE(up);
  ASSERT_EQ(up->status, 202) << up->body;
  const std::string job_id = body_of(up)["job"];
  const json job = wait_job(c, job_id);
  ASSERT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["report"]["files_new"], 2);
  EXPECT_GT(job["report"]["chunks_added"].get<int>(), 0);
  EXPECT_EQ(job["files_done"], 2);
  EXPECT_TRUE(job["report"]["skipped"].empty());

  json files = body_of(c.Get("/api/collections/manuals/files"))["files"];
  ASSERT_EQ(files.size(), 2u);
  std::map<std::string, json> by_name;
  for (const auto& f : files) by_name[f["name"]] = f;
  ASSERT_TRUE(by_name.count("notes.txt") && by_name.count("guide.md"));
  EXPECT_EQ(by_name["notes.txt"]["size"], std::string(kNotes).size());
  EXPECT_EQ(by_name["guide.md"]["format"], "markdown");
  EXPECT_GT(by_name["guide.md"]["chunks"].get<int>(), 0);
  const std::string notes_path = by_name["notes.txt"]["path"];
  // Issue 16 item 15: API clients see an upload relative to its collection, not the server's
  // absolute path to its data folder.
  EXPECT_EQ(notes_path, "uploads/notes.txt");
  EXPECT_TRUE(fs::exists(data.path() / "documents/manuals" / notes_path));
  EXPECT_EQ(sr_files_absolute_paths(body_of(c.Get("/api/collections/manuals/files")), data.path()), 0);

  auto search = c.Post("/api/collections/manuals/search", R"({"query":"when were zebra crossings introduced","k":3})",
                       "application/json");
  json sr = body_of(search);
  ASSERT_EQ(search->status, 200) << search->body;
  EXPECT_FALSE(sr["hybrid"].get<bool>());
  ASSERT_FALSE(sr["hits"].empty());
  const json hit = sr["hits"][0];
  EXPECT_EQ(hit["name"], "notes.txt");
  EXPECT_NE(hit["text"].get<std::string>().find("1951"), std::string::npos);
  for (const char* k : {"id", "file", "name", "page", "lines", "bytes", "heading", "text", "score"})
    EXPECT_TRUE(hit.contains(k)) << k;
  EXPECT_EQ(hit["file"], "uploads/notes.txt");

  json chunk = body_of(c.Get("/api/collections/manuals/chunks/" + std::to_string(hit["id"].get<int64_t>())));
  EXPECT_EQ(chunk["text"], hit["text"]);
  EXPECT_EQ(c.Get("/api/collections/manuals/chunks/999999")->status, 404);

  // Deleting a file removes its chunks (and the uploaded copy).
  auto del = c.Delete("/api/collections/manuals/files?path=" + url_encode(notes_path));
  ASSERT_TRUE(del);
  ASSERT_EQ(del->status, 200) << del->body;
  EXPECT_EQ(body_of(del)["chunks_removed"], by_name["notes.txt"]["chunks"]);
  EXPECT_FALSE(fs::exists(data.path() / "documents/manuals" / notes_path));
  json after = body_of(c.Post("/api/collections/manuals/search", R"({"query":"zebra crossings 1951"})", "application/json"));
  for (const auto& h : after["hits"]) EXPECT_NE(h["name"], "notes.txt");
  EXPECT_EQ(body_of(c.Get("/api/collections/manuals/files"))["files"].size(), 1u);
  EXPECT_EQ(c.Delete("/api/collections/manuals/files?path=" + url_encode(notes_path))->status, 404);

  // The same name with other content is kept beside the first as "guide (2).md", never replacing
  // it silently (issue 16, item 20); ?wait=true answers when done.
  httplib::MultipartFormDataItems again = {{"file", std::string(kGuide) + "\nDrain the radiators in autumn.\n", "guide.md", "text/markdown"}};
  auto up2 = c.Post("/api/collections/manuals/files?wait=true", again);
  ASSERT_TRUE(up2);
  ASSERT_EQ(up2->status, 200) << up2->body;
  json j2 = body_of(up2);
  EXPECT_EQ(j2["state"], "done");
  EXPECT_EQ(j2["report"]["files_new"], 1) << j2.dump();
  ASSERT_EQ(j2["uploads"].size(), 1u) << j2.dump();
  EXPECT_EQ(j2["uploads"][0]["name"], "guide.md");
  EXPECT_EQ(j2["uploads"][0]["stored"], "guide (2).md");
  json found = body_of(c.Post("/api/collections/manuals/search", R"({"query":"drain radiators autumn"})", "application/json"));
  ASSERT_FALSE(found["hits"].empty());
  EXPECT_NE(found["hits"][0]["text"].get<std::string>().find("radiators"), std::string::npos);
  EXPECT_EQ(found["hits"][0]["name"], "guide (2).md");
  EXPECT_EQ(body_of(c.Get("/api/collections"))["collections"][0]["files"], 2);
  // The same content again is the same file: nothing new is stored.
  auto up3 = c.Post("/api/collections/manuals/files?wait=true", again);
  ASSERT_EQ(up3->status, 200) << up3->body;
  EXPECT_EQ(body_of(up3)["uploads"][0]["stored"], "guide (2).md");
  EXPECT_EQ(body_of(up3)["report"]["files_new"], 0);
  EXPECT_EQ(body_of(c.Get("/api/collections"))["collections"][0]["files"], 2);

  auto gone = c.Delete("/api/collections/manuals");
  ASSERT_EQ(gone->status, 200);
  EXPECT_EQ(body_of(gone)["deleted"], true);
  EXPECT_EQ(c.Get("/api/collections/manuals/files")->status, 404);
  EXPECT_TRUE(body_of(c.Get("/api/collections"))["collections"].empty());
}

TEST(DocsApi, BadInputGetsClearErrors) {
  TempDir data;
  DocsServer s(data.path());
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/docs")->status, 201);
  auto bad_name = c.Put("/api/collections/.hidden");
  EXPECT_EQ(bad_name->status, 400);
  EXPECT_TRUE(body_of(bad_name)["error"].contains("message"));
  EXPECT_EQ(c.Put("/api/collections/" + std::string(200, 'a'))->status, 400);

  for (const std::string& name : std::vector<std::string>{"../escape.txt", "a/../../b.txt", ".env", std::string("x\x01y.txt")}) {
    httplib::MultipartFormDataItems items = {{"file", "hello", name, "text/plain"}};
    auto r = c.Post("/api/collections/docs/files", items);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << name << ": " << r->body;
  }
  EXPECT_FALSE(fs::exists(data.path() / "documents" / "escape.txt"));
  EXPECT_FALSE(fs::exists(data.path() / "documents" / "docs" / "escape.txt"));
  httplib::MultipartFormDataItems wrong_part = {{"attachment", "hello", "a.txt", "text/plain"}};
  EXPECT_EQ(c.Post("/api/collections/docs/files", wrong_part)->status, 400);
  EXPECT_EQ(c.Post("/api/collections/docs/files", "plain body", "text/plain")->status, 400);

  // Unknown collections and jobs.
  EXPECT_EQ(c.Get("/api/collections/nope/files")->status, 404);
  EXPECT_EQ(c.Post("/api/collections/nope/search", R"({"query":"x"})", "application/json")->status, 404);
  EXPECT_EQ(c.Post("/api/collections/nope/files", upload_items())->status, 404);
  EXPECT_EQ(c.Delete("/api/collections/nope")->status, 404);
  EXPECT_EQ(c.Get("/api/jobs/0123456789abcdef")->status, 404);

  // Bad bodies.
  EXPECT_EQ(c.Post("/api/collections/docs/search", R"({"k":3})", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/collections/docs/search", R"({"query":"x","k":0})", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/collections/docs/search", R"([1,2])", "application/json")->status, 400);
  EXPECT_EQ(c.Delete("/api/collections/docs/files")->status, 400);
  // Without a chat model, ask is unavailable.
  auto ask = c.Post("/api/collections/docs/ask", R"({"question":"what?"})", "application/json");
  EXPECT_EQ(ask->status, 503);
  EXPECT_NE(body_of(ask)["error"]["message"].get<std::string>().find("chat model"), std::string::npos);
}

TEST(DocsApi, ServerFolderIngestOnlyInsideAllowedFolders) {
  TempDir data, allowed, outside;
  write_file(allowed / "sub/a.txt", "The lighthouse keeper logs the weather at dawn.\n");
  write_file(allowed / "sub/b.md", "# Tides\n\nHigh tide comes twice a day.\n");
  write_file(outside / "secret.txt", "Not for the server.\n");
  fs::create_symlink(outside.path(), allowed / "link");
  DocsServer s(data.path(), {allowed.path()});
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/coast")->status, 201);

  auto ok = c.Post("/api/collections/coast/ingest?wait=true", json{{"path", (allowed / "sub").string()}}.dump(), "application/json");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(body_of(ok)["report"]["files_new"], 2);
  json hits = body_of(c.Post("/api/collections/coast/search", R"({"query":"lighthouse keeper"})", "application/json"));
  ASSERT_FALSE(hits["hits"].empty());
  EXPECT_EQ(hits["hits"][0]["name"], "a.txt");

  for (const fs::path& p : {outside.path(), outside / "secret.txt", allowed / "sub/../../" / outside.path().filename(),
                            allowed / "link", allowed / "link/secret.txt"}) {
    auto r = c.Post("/api/collections/coast/ingest", json{{"path", p.string()}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << p << ": " << r->body;
  }
  EXPECT_EQ(c.Post("/api/collections/coast/ingest", R"({"path":"relative/dir"})", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/collections/coast/ingest", json{{"path", (allowed / "missing").string()}}.dump(), "application/json")->status, 404);
  EXPECT_EQ(body_of(c.Get("/api/collections/coast/files"))["files"].size(), 2u);

  // A server without --allow-ingest refuses every folder.
  TempDir data2;
  DocsServer closed(data2.path());
  auto c2 = closed.client();
  ASSERT_EQ(c2.Put("/api/collections/coast")->status, 201);
  EXPECT_EQ(c2.Post("/api/collections/coast/ingest", json{{"path", (allowed / "sub").string()}}.dump(), "application/json")->status, 403);
}

TEST(DocsApi, EmbeddingModelMakesUploadsHybrid) {
  ETNA_REQUIRE_SHARED(emb, "models/tiny-bert-bge-f32.gguf");
  TempDir data;
  OpenAIOptions oo;
  oo.embedding_model_path = emb.string();
  OpenAIService models(oo);
  models.load();
  ASSERT_NE(models.shared_embedder(), nullptr);
  DocsServer s(data.path(), {}, &models, emb.string());
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/mixed")->status, 201);
  auto up = c.Post("/api/collections/mixed/files?wait=true", upload_items());
  ASSERT_EQ(up->status, 200) << up->body;
  const json job = body_of(up);
  ASSERT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["report"]["chunks_embedded"], job["report"]["chunks_added"]);
  EXPECT_GT(job["report"]["chunks_embedded"].get<int>(), 0);
  json sr = body_of(c.Post("/api/collections/mixed/search", R"({"query":"zebra crossings","k":2})", "application/json"));
  EXPECT_TRUE(sr["hybrid"].get<bool>());
  ASSERT_FALSE(sr["hits"].empty());
  EXPECT_EQ(body_of(c.Get("/api/collections"))["collections"][0]["embedding_model"], "tiny-bert-bge-f32");
  // Deleting a file removes its vectors too: vector search no longer returns it.
  std::string notes_path;
  const json listed = body_of(c.Get("/api/collections/mixed/files"));
  for (const auto& f : listed["files"])
    if (f["name"] == "notes.txt") notes_path = f["path"];
  ASSERT_FALSE(notes_path.empty());
  auto del = c.Delete("/api/collections/mixed/files?path=" + url_encode(notes_path));
  ASSERT_EQ(del->status, 200) << del->body;
  json after = body_of(c.Post("/api/collections/mixed/search", R"({"query":"zebra crossings","k":5})", "application/json"));
  EXPECT_TRUE(after["hybrid"].get<bool>());
  ASSERT_FALSE(after["hits"].empty());  // the guide still matches by vector similarity
  for (const auto& h : after["hits"]) EXPECT_EQ(h["name"], "guide.md");
  // No chat model: ask is unavailable even though embeddings are.
  EXPECT_EQ(c.Post("/api/collections/mixed/ask", R"({"question":"what?"})", "application/json")->status, 503);
}

// Parses a text/event-stream body into (event, data) pairs.
std::vector<std::pair<std::string, json>> parse_sse(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  std::string event;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    if (nl == std::string::npos) nl = body.size();
    const std::string line = body.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("event: ", 0) == 0) event = line.substr(7);
    else if (line.rfind("data: ", 0) == 0) out.emplace_back(event, json::parse(line.substr(6)));
  }
  return out;
}

TEST(DocsApi, AskStreamedAndNotWithStories) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  TempDir data;
  OpenAIOptions oo;
  oo.model_path = model.string();
  oo.n_parallel = 2;
  OpenAIService models(oo);
  models.load();
  DocsServer s(data.path(), {}, &models);
  auto c = s.client();
  ASSERT_EQ(c.Put("/api/collections/stories")->status, 201);
  httplib::MultipartFormDataItems items = {
      {"file", "Lily had a red ball. She played with the ball in the park every day.\n", "lily.txt", "text/plain"},
      {"file", "Tom liked to eat cake. His mom baked a big cake for him.\n", "tom.txt", "text/plain"}};
  auto up = c.Post("/api/collections/stories/files?wait=true", items);
  ASSERT_EQ(up->status, 200) << up->body;

  const std::string req = R"({"question":"What did Lily play with in the park?","k":2,"max_tokens":24,"temperature":0,"stream":false})";
  auto r1 = c.Post("/api/collections/stories/ask", req, "application/json");
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->status, 200) << r1->body;
  const json a1 = body_of(r1);
  ASSERT_TRUE(a1["answer"].is_string());
  ASSERT_TRUE(a1["citations"].is_array());
  ASSERT_TRUE(a1["unmatched"].is_array());
  ASSERT_FALSE(a1["retrieved"].empty());
  EXPECT_EQ(a1["retrieved"][0]["n"], 1);
  EXPECT_EQ(a1["retrieved"][0]["name"], "lily.txt");
  EXPECT_FALSE(a1["answer"].get<std::string>().empty());
  // Every citation refers to a retrieved source; every unmatched number does not.
  for (const auto& ci : a1["citations"]) {
    const int n = ci["n"];
    ASSERT_GE(n, 1);
    ASSERT_LE(static_cast<size_t>(n), a1["retrieved"].size());
    EXPECT_EQ(ci["file"], a1["retrieved"][n - 1]["file"]);
  }
  for (const auto& u : a1["unmatched"]) EXPECT_TRUE(u.get<int>() < 1 || u.get<size_t>() > a1["retrieved"].size());

  // Greedy: the same request gives the same answer.
  const json a2 = body_of(c.Post("/api/collections/stories/ask", req, "application/json"));
  EXPECT_EQ(a2["answer"], a1["answer"]);

  json stream_req = json::parse(req);
  stream_req["stream"] = true;
  auto rs = c.Post("/api/collections/stories/ask", stream_req.dump(), "application/json");
  ASSERT_TRUE(rs);
  ASSERT_EQ(rs->status, 200);
  EXPECT_NE(rs->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  const auto events = parse_sse(rs->body);
  ASSERT_GE(events.size(), 2u) << rs->body;
  EXPECT_EQ(events.front().first, "sources");
  EXPECT_EQ(events.front().second["retrieved"], a1["retrieved"]);
  EXPECT_EQ(events.back().first, "done") << rs->body;
  std::string streamed;
  for (size_t i = 1; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i].first, "delta");
    streamed += events[i].second["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, events.back().second["answer"]);
  EXPECT_EQ(events.back().second["answer"], a1["answer"]);
  EXPECT_EQ(events.back().second["citations"], a1["citations"]);

  EXPECT_EQ(c.Post("/api/collections/stories/ask", R"({"question":""})", "application/json")->status, 400);
  EXPECT_EQ(c.Post("/api/collections/nope/ask", R"({"question":"x"})", "application/json")->status, 404);
}

}  // namespace
}  // namespace etna::server
