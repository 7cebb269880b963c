// A real `etna serve ARGS --port 0` child process for tests, stdout and stderr in files; the
// port is read from its "listening on" line. Stopped with SIGTERM (or kill()) on destruction.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace etna::test {

class ServeProcess {
 public:
  // `dir` holds out.txt and err.txt; the server's data folder is `data`.
  ServeProcess(const std::filesystem::path& dir, const std::filesystem::path& data, std::vector<std::string> args)
      : out_(dir / "out.txt"), err_(dir / "err.txt") {
    std::filesystem::create_directories(dir);
    args.insert(args.begin(), {etna_binary().string(), "serve", "--port", "0", "--data", data.string()});
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
    // Bounded wait for "listening on http://127.0.0.1:PORT" (or the child's exit).
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 6000 && port_ == 0; ++i) {
      std::smatch m;
      const std::string s = slurp(out_) + slurp(err_);
      if (std::regex_search(s, m, re)) {
        port_ = std::stoi(m[1]);
        break;
      }
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~ServeProcess() { stop(); }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Stops the server (SIGTERM, waited for) and returns its stdout and stderr.
  std::string stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    return slurp(out_) + slurp(err_);
  }
  // What the server has written on stderr so far (its access log, warnings and errors).
  std::string stderr_text() const { return slurp(err_); }

 private:
  static std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace etna::test
