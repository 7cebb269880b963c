// The model library, licences and pull through the real `etna` binary and `etna serve`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "unit/hub/hub_server.h"
#include "unit/hub/test_models.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// Runs etna with `args`; returns the exit status, output in *out (stdout + stderr).
int etna(const std::string& args, std::string* out) {
  return test::run_command(test::etna_binary().string() + " " + args, out, true);
}

// A child process with its stdout read line by line.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      close(fds[0]);
      std::vector<char*> a;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  // Reads until `needle` appears (returns true) or the child closes its output (false).
  bool read_until(const std::string& needle) {
    char buf[4096];
    while (output_.find(needle) == std::string::npos) {
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      output_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  int stop(int sig) {
    kill(pid_, sig);
    int status = 0;
    char buf[4096];
    while (read(fd_, buf, sizeof buf) > 0) output_.append(buf);  // drain
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int wait_exit() {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd_, buf, sizeof buf)) > 0) output_.append(buf, static_cast<size_t>(n));
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string output_;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string apache = test::licensed_gguf("apache-2.0");
    if (apache.empty()) GTEST_SKIP() << "skipped: ../shared not found";
    test::write_file(dir_ / "apache.gguf", apache);
    test::write_file(dir_ / "nc.gguf", test::licensed_gguf("cc-by-nc-4.0"));
    test::write_file(dir_ / "llama.gguf", test::licensed_gguf("llama3.2"));
    data_ = " --data " + (dir_ / "data").string();
  }
  std::string path(const char* name) { return (dir_ / name).string(); }
  test::TempDir dir_;
  std::string data_;
};

TEST_F(CliTest, UseCommercialRefusesNonCommercialAcceptsApache) {
  std::string out;
  EXPECT_NE(etna("run -m " + path("nc.gguf") + " -p Once -n 2 --temp 0 --use commercial" + data_, &out), 0);
  EXPECT_NE(out.find("refused for commercial use"), std::string::npos) << out;
  EXPECT_NE(out.find("NonCommercial"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
  // --accept-licence cannot override a licence that forbids the use.
  EXPECT_NE(etna("run -m " + path("nc.gguf") + " -p Once -n 2 --use commercial --accept-licence" + data_, &out), 0);
  EXPECT_EQ(etna("run -m " + path("nc.gguf") + " -p Once -n 2 --temp 0 --use research" + data_, &out), 0) << out;
  EXPECT_EQ(etna("run -m " + path("nc.gguf") + " -p Once -n 2 --temp 0" + data_, &out), 0) << out;  // personal
  EXPECT_EQ(etna("run -m " + path("apache.gguf") + " -p Once -n 2 --temp 0 --use commercial" + data_, &out), 0) << out;
  EXPECT_NE(etna("run -m " + path("apache.gguf") + " -p Once -n 2 --use business" + data_, &out), 0);
  // The config route: $ETNA_USE.
  EXPECT_NE(test::run_command("ETNA_USE=commercial " + test::etna_binary().string() + " run -m " + path("nc.gguf") +
                                  " -p Once -n 2" + data_, &out, true),
            0);
}

TEST_F(CliTest, ConditionalLicenceNeedsAcceptanceWhichIsRecorded) {
  std::string out;
  EXPECT_NE(etna("run -m " + path("llama.gguf") + " -p Once -n 2 --use commercial" + data_, &out), 0);
  EXPECT_NE(out.find("700 million monthly active users"), std::string::npos) << out;
  EXPECT_NE(out.find("--accept-licence"), std::string::npos) << out;
  EXPECT_EQ(etna("run -m " + path("llama.gguf") + " -p Once -n 2 --temp 0 --use commercial --accept-licence" + data_, &out), 0) << out;
  EXPECT_NE(out.find("recorded your acceptance"), std::string::npos) << out;
  // Recorded: the same use now works without the flag, by path or by library name.
  EXPECT_EQ(etna("run -m " + path("llama.gguf") + " -p Once -n 2 --temp 0 --use commercial" + data_, &out), 0) << out;
  EXPECT_EQ(etna("run -m llama -p Once -n 2 --temp 0 --use commercial" + data_, &out), 0) << out;
  ASSERT_EQ(etna("show llama --json" + data_, &out), 0) << out;
  json j = json::parse(out);
  ASSERT_EQ(j["library"]["accepted"].size(), 1u);
  EXPECT_EQ(j["library"]["accepted"][0]["use"], "commercial");
  EXPECT_EQ(j["library"]["accepted"][0]["licence"], "llama3.2");
  EXPECT_FALSE(j["library"]["last_used"].get<std::string>().empty());
}

TEST_F(CliTest, InfoListShowImportRemove) {
  std::string out;
  ASSERT_EQ(etna("info " + path("nc.gguf"), &out), 0) << out;
  EXPECT_NE(out.find("Creative Commons Attribution-NonCommercial 4.0 (cc-by-nc-4.0)"), std::string::npos) << out;
  EXPECT_NE(out.find("commercial use   no: NonCommercial"), std::string::npos) << out;
  ASSERT_EQ(etna("info " + test::shared_file("models/stories260K.gguf").string(), &out), 0);
  EXPECT_NE(out.find("unknown: read the model card"), std::string::npos) << out;

  ASSERT_EQ(etna("import " + path("apache.gguf") + " --name tiny" + data_, &out), 0) << out;
  EXPECT_NE(etna("import " + path("apache.gguf") + " --name tiny" + data_, &out), 0);  // taken
  ASSERT_EQ(etna("import " + path("nc.gguf") + data_, &out), 0) << out;
  ASSERT_EQ(etna("list" + data_, &out), 0) << out;
  EXPECT_NE(out.find("tiny"), std::string::npos);
  EXPECT_NE(out.find("apache-2.0: commercial ok"), std::string::npos) << out;
  EXPECT_NE(out.find("cc-by-nc-4.0: non-commercial"), std::string::npos) << out;
  ASSERT_EQ(etna("list --json" + data_, &out), 0) << out;
  json arr = json::parse(out);
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_EQ(arr[0]["name"], "nc");
  EXPECT_EQ(arr[0]["licence"]["commercial"], "no");
  ASSERT_EQ(etna("show tiny" + data_, &out), 0) << out;
  EXPECT_NE(out.find("import: " + fs::absolute(path("apache.gguf")).string()), std::string::npos) << out;
  EXPECT_NE(out.find("architecture       llama\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Apache License 2.0"), std::string::npos) << out;
  // A library name works wherever -m does.
  EXPECT_EQ(etna("tokenize -m tiny" + data_ + " -- hello", &out), 0) << out;
  EXPECT_NE(etna("run -m nosuch -p x -n 1" + data_, &out), 0);
  EXPECT_NE(out.find("neither a file nor a model in the library"), std::string::npos) << out;

  ASSERT_EQ(etna("rm tiny" + data_, &out), 0) << out;
  EXPECT_TRUE(fs::exists(path("apache.gguf")));
  EXPECT_NE(etna("show tiny" + data_, &out), 0);
  EXPECT_NE(etna("rm tiny" + data_, &out), 0);

  // --scan lists other tools' folders read-only.
  fs::create_directories(dir_ / "lms" / "pub");
  fs::copy_file(path("apache.gguf"), dir_ / "lms" / "pub" / "found-Q8_0.gguf");
  ASSERT_EQ(test::run_command("ETNA_SCAN_DIRS=" + (dir_ / "lms").string() + " " + test::etna_binary().string() +
                                  " list --scan" + data_, &out, true),
            0);
  EXPECT_NE(out.find("found-Q8_0"), std::string::npos) << out;
  EXPECT_NE(out.find("found elsewhere"), std::string::npos) << out;
}

TEST_F(CliTest, PullThroughTheBinary) {
  test::HubServer hub;
  hub.add("org/tiny-GGUF", "tiny-Q8_0.gguf", {test::read_file(path("nc.gguf")), "", true, 1, false});
  hub.add("org/tiny-GGUF", "tiny-Q4_0.gguf", {test::read_file(path("apache.gguf")), "", true, 0, false});
  const std::string env = "ETNA_PULL_RETRY_MS=10 ";
  const std::string bin = test::etna_binary().string();
  std::string out;
  EXPECT_NE(test::run_command(env + bin + " pull org/tiny-GGUF:Q8_0 --offline --endpoint " + hub.endpoint() + data_, &out, true), 0);
  EXPECT_NE(out.find("offline"), std::string::npos) << out;
  EXPECT_EQ(hub.downloads(), 0);
  ASSERT_EQ(test::run_command(env + bin + " pull org/tiny-GGUF:q8_0 --endpoint " + hub.endpoint() + data_, &out, true), 0) << out;
  EXPECT_NE(out.find("pulled tiny-Q8_0"), std::string::npos) << out;
  EXPECT_NE(out.find("retrying"), std::string::npos) << "the cut connection was retried: " << out;
  EXPECT_NE(out.find("100%"), std::string::npos) << "plain progress lines off a terminal: " << out;
  EXPECT_NE(out.find("cc-by-nc-4.0"), std::string::npos) << out;
  // The pulled model by name, under the licence rules.
  EXPECT_NE(etna("run -m tiny-Q8_0 -p Once -n 2 --use commercial" + data_, &out), 0);
  EXPECT_EQ(etna("run -m tiny-Q8_0 -p Once -n 2 --temp 0 --use research" + data_, &out), 0) << out;
  // HF_ENDPOINT as the ecosystem uses it.
  ASSERT_EQ(test::run_command(env + "HF_ENDPOINT=" + hub.endpoint() + " " + bin + " pull org/tiny-GGUF:Q4_0" + data_, &out, true), 0) << out;
  EXPECT_NE(test::run_command(env + bin + " pull org/missing --endpoint " + hub.endpoint() + data_, &out, true), 0);
  EXPECT_NE(out.find("404"), std::string::npos) << out;
}

TEST_F(CliTest, CtrlCLeavesAResumablePart) {
  test::HubServer hub;
  const std::string content = test::read_file(path("apache.gguf"));
  hub.add("org/slow", "slow-Q8_0.gguf", {content, "", true, 0, true});
  Child pull({test::etna_binary().string(), "pull", "org/slow", "--endpoint", hub.endpoint(), "--data", (dir_ / "data").string()});
  while (!hub.stalled()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const fs::path part = dir_ / "data" / "models" / "slow-Q8_0" / "slow-Q8_0.gguf.part";
  // The half that arrived is on disk before the interrupt (the stalled server sends no more).
  for (int i = 0; i < 500 && (!fs::exists(part) || fs::file_size(part) < content.size() / 2); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int code = pull.stop(SIGINT);
  hub.release();
  EXPECT_NE(code, 0);
  EXPECT_NE(pull.output().find("interrupted"), std::string::npos) << pull.output();
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), content.size() / 2);
  std::string out;
  ASSERT_EQ(etna("pull org/slow --endpoint " + hub.endpoint() + data_, &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  EXPECT_EQ(test::read_file(dir_ / "data" / "models" / "slow-Q8_0" / "slow-Q8_0.gguf"), content);
}

// `etna serve`: the licence check at start-up, /v1/models' licence field, and the Models API.
TEST_F(CliTest, ServeEnforcesUseAndServesTheLibrary) {
  {
    Child refused({test::etna_binary().string(), "serve", "-m", path("nc.gguf"), "--use", "commercial", "--port", "0",
                   "--data", (dir_ / "data").string()});
    EXPECT_NE(refused.wait_exit(), 0);
    EXPECT_NE(refused.output().find("refused for commercial use"), std::string::npos) << refused.output();
    EXPECT_EQ(refused.output().find("listening"), std::string::npos) << refused.output();
  }
  test::HubServer hub;
  hub.add("org/tiny-GGUF", "tiny-Q8_0.gguf", {test::read_file(path("nc.gguf")), "", true, 0, false});
  hub.gate("org/gated", "t");
  setenv("HF_ENDPOINT", hub.endpoint().c_str(), 1);
  Child serve({test::etna_binary().string(), "serve", "-m", path("apache.gguf"), "--use", "commercial", "--port", "0",
               "--data", (dir_ / "data").string()});
  unsetenv("HF_ENDPOINT");
  ASSERT_TRUE(serve.read_until("OpenAI-compatible API at")) << serve.output();
  const auto pos = serve.output().find("listening on http://127.0.0.1:");
  ASSERT_NE(pos, std::string::npos);
  const int port = std::stoi(serve.output().substr(pos + 30));
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  json models = json::parse(r->body);
  EXPECT_EQ(models["data"][0]["licence"]["id"], "apache-2.0");
  EXPECT_EQ(models["data"][0]["licence"]["commercial"], "yes");

  r = c.Post("/api/models/pull", R"({"model":"org/tiny-GGUF:Q8_0"})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  const std::string job = json::parse(r->body)["job"];
  json j;
  for (int i = 0; i < 3000; ++i) {
    j = json::parse(c.Get(("/api/pulls/" + job).c_str())->body);
    if (j["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(j["state"], "done") << j.dump();
  EXPECT_EQ(j["model"], "tiny-Q8_0");
  EXPECT_EQ(j["done"], j["total"]);
  r = c.Get("/api/models");
  json lib = json::parse(r->body);
  ASSERT_EQ(lib["models"].size(), 1u);
  EXPECT_EQ(lib["models"][0]["licence"]["id"], "cc-by-nc-4.0");
  EXPECT_FALSE(lib["models"][0]["served"].get<bool>());
  // A gated repository fails the job with the token message.
  r = c.Post("/api/models/pull", R"({"model":"org/gated"})", "application/json");
  const std::string gated = json::parse(r->body)["job"];
  for (int i = 0; i < 3000; ++i) {
    j = json::parse(c.Get(("/api/pulls/" + gated).c_str())->body);
    if (j["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(j["state"], "failed");
  EXPECT_NE(j["error"].get<std::string>().find("HF_TOKEN"), std::string::npos) << j.dump();
  EXPECT_EQ(c.Post("/api/models/pull", R"({"model":"not a ref"})", "application/json")->status, 400);
  EXPECT_EQ(c.Delete("/api/models/tiny-Q8_0")->status, 200);
  EXPECT_EQ(c.Delete("/api/models/tiny-Q8_0")->status, 404);
  EXPECT_EQ(json::parse(c.Get("/api/models")->body)["models"].size(), 0u);
  EXPECT_EQ(serve.stop(SIGTERM), 0) << serve.output();
}

}  // namespace
}  // namespace etna::hub
