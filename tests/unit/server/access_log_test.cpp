// `etna serve` writes one access-log line per request on stderr (method, path, status, tokens,
// time) unless --quiet (issue 16, item 23). Drives the real binary on 127.0.0.1, port 0.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "support/test_support.h"

namespace etna::server {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `etna serve ARGS --port 0` with stdout and stderr in files; stopped with SIGTERM.
class ServeProcess {
 public:
  ServeProcess(const fs::path& dir, std::vector<std::string> args) : out_(dir / "out.txt"), err_(dir / "err.txt") {
    args.insert(args.begin(), {test::etna_binary().string(), "serve", "--port", "0", "--data", (dir / "data").string()});
    pid_ = fork();
    if (pid_ == 0) {
      const int o = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(o, 1);
      dup2(e, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // Wait (bounded) for "listening on http://127.0.0.1:PORT".
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 6000 && port_ == 0; ++i) {
      std::smatch m;
      const std::string s = slurp(out_) + slurp(err_);
      if (std::regex_search(s, m, re)) port_ = std::stoi(m[1]);
      else std::this_thread::sleep_for(std::chrono::milliseconds(20));
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
    }
  }
  ~ServeProcess() { stop(); }
  int port() const { return port_; }
  // Stops the server and returns its stderr.
  std::string stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    return slurp(err_);
  }

 private:
  fs::path out_, err_;
  pid_t pid_ = -1;
  int port_ = 0;
};

TEST(AccessLog, OneLinePerRequestWithStatusTokensAndTime) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  ServeProcess s(dir.path(), {"-m", model.string()});
  ASSERT_GT(s.port(), 0) << s.stop();
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(300, 0);
  // The server listens while the model loads (/health answers 503 until then).
  for (int i = 0; i < 6000; ++i) {
    auto h = c.Get("/health");
    if (h && h->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto r = c.Post("/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})",
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(c.Get("/collections")->status, 200);
  EXPECT_EQ(c.Get("/no/such/route")->status, 404);
  EXPECT_GT(r->body.size(), 0u);
  const std::string err = s.stop();
  EXPECT_TRUE(std::regex_search(err, std::regex("POST /v1/completions 200 tokens [0-9]+\\+4 [0-9.]+ ms"))) << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("GET /collections 200 tokens - [0-9.]+ ms"))) << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("GET /no/such/route 404 tokens - "))) << err;
}

TEST(AccessLog, QuietSilencesIt) {
  test::TempDir dir;
  ServeProcess s(dir.path(), {"--no-model", "--quiet"});
  ASSERT_GT(s.port(), 0) << s.stop();
  httplib::Client c("127.0.0.1", s.port());
  ASSERT_EQ(c.Get("/collections")->status, 200);
  const std::string err = s.stop();
  EXPECT_EQ(err.find("GET /collections"), std::string::npos) << err;
}

}  // namespace
}  // namespace etna::server
