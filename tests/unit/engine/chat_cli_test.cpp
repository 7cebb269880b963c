// `etna chat` and `etna ask` on a real terminal: the binary runs on a pseudo-terminal (forkpty),
// so Ctrl-C is the byte 0x03 typed into it and the line discipline turns it into SIGINT, as for
// a user (issue 16, items 21 and 22).
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::engine {
namespace {

namespace fs = std::filesystem;

// A child process on a pseudo-terminal. Reads wait at most `kWaitMs` for the next bytes, so a
// broken binary fails the test instead of hanging it (a safety net, not a speed assertion).
class PtyProcess {
 public:
  static constexpr int kWaitMs = 120000;

  explicit PtyProcess(const std::vector<std::string>& argv) {
    struct winsize ws {};
    ws.ws_col = 200;
    ws.ws_row = 50;
    pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0; }
  void type(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), static_cast<ssize_t>(s.size())); }
  // Reads until `needle` appears in the output after `from` (true) or the child ends (false).
  bool read_until(const std::string& needle, size_t from = 0) {
    while (out_.find(needle, from) == std::string::npos)
      if (!read_some()) return false;
    return true;
  }
  // Reads until the output holds at least n bytes (true) or the child ends (false).
  bool read_to_size(size_t n) {
    while (out_.size() < n)
      if (!read_some()) return false;
    return true;
  }
  // Reads until the child closes the terminal, then returns its exit status.
  int wait_exit() {
    while (read_some()) {
    }
    int st = 0;
    waitpid(pid_, &st, 0);
    exited_ = true;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  const std::string& output() const { return out_; }

 private:
  bool read_some() {
    struct pollfd p {fd_, POLLIN, 0};
    if (poll(&p, 1, kWaitMs) <= 0) {
      ADD_FAILURE() << "no output for " << kWaitMs / 1000 << " s; so far:\n" << out_;
      return false;
    }
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;  // EIO: the child closed the terminal
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }
  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string out_;
};

TEST(ChatCli, CtrlCStopsTheReplyNotTheProgramAndCommandsStayLocal) {
  // Random weights: the reply practically never ends by itself, so it is still running when
  // Ctrl-C arrives; the context is large so it cannot end by filling up first.
  ETNA_REQUIRE_SHARED(model, "models/tiny-llama-spm-f32.gguf");
  test::TempDir dir;
  const fs::path saved = dir / "conversation.json";
  PtyProcess p({test::etna_binary().string(), "chat", "-m", model.string(), "--ctx", "32768", "-n", "-1",
                "--temp", "0", "-t", "1"});
  ASSERT_TRUE(p.started());
  ASSERT_TRUE(p.read_until("> "));
  p.type("/help\n");
  ASSERT_TRUE(p.read_until("/save FILE"));
  p.type("/system You are terse.\n");
  ASSERT_TRUE(p.read_until("(system message set)"));
  size_t mark = p.output().size();
  p.type("Tell me a very long story\n");
  // Wait for the echo of the line, then for reply text after it.
  ASSERT_TRUE(p.read_until("story\r\n", mark));
  mark = p.output().find("story\r\n", mark) + 7;
  ASSERT_TRUE(p.read_to_size(mark + 40)) << "the reply has begun";
  p.type("\x03");
  ASSERT_TRUE(p.read_until("[stopped]", mark)) << p.output();
  ASSERT_TRUE(p.read_until("> ", p.output().find("[stopped]", mark)));
  // The program is still there and the conversation goes on.
  p.type("/save " + saved.string() + "\n");
  ASSERT_TRUE(p.read_until("(saved 3 messages"));
  p.type("/exit\n");
  EXPECT_EQ(p.wait_exit(), 0) << p.output();

  std::ifstream in(saved);
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["messages"].size(), 3u) << j.dump(2);
  EXPECT_EQ(j["messages"][0]["role"], "system");
  EXPECT_EQ(j["messages"][0]["content"], "You are terse.");
  EXPECT_EQ(j["messages"][1]["role"], "user");
  EXPECT_EQ(j["messages"][1]["content"], "Tell me a very long story");
  EXPECT_EQ(j["messages"][2]["role"], "assistant");
  EXPECT_FALSE(j["messages"][2]["content"].get<std::string>().empty());
  // No command reached the model as a message.
  for (const auto& m : j["messages"]) EXPECT_NE(m["content"].get<std::string>().rfind("/", 0), 0u) << m.dump();
}

TEST(ChatCli, ClearAndUnknownCommands) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  const fs::path saved = dir / "c.json";
  PtyProcess p({test::etna_binary().string(), "chat", "-m", model.string(), "-n", "8", "--temp", "0"});
  ASSERT_TRUE(p.started());
  ASSERT_TRUE(p.read_until("> "));
  p.type("/bogus\n");
  ASSERT_TRUE(p.read_until("unknown command /bogus"));
  p.type("Once upon a time\n");
  ASSERT_TRUE(p.read_until("> ", p.output().find("Once upon a time") + 16));
  p.type("/clear\n");
  ASSERT_TRUE(p.read_until("(conversation cleared)"));
  p.type("/save " + saved.string() + "\n");
  ASSERT_TRUE(p.read_until("(saved 0 messages"));
  p.type("\x04");  // Ctrl-D at the prompt quits
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
}

// `etna ask` on a terminal says what it is doing before the answer's first token.
TEST(AskCli, ShowsRetrievalAndPromptProgressOnATerminal) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  fs::create_directories(dir / "docs");
  {
    std::ofstream f(dir / "docs" / "garden.txt");
    f << "The garden gate is painted green. Tomatoes are watered every morning.\n";
  }
  std::string out;
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " ingest " + (dir / "docs").string() +
                                  " --collection g --data " + (dir / "data").string(),
                              &out, true),
            0)
      << out;
  PtyProcess p({test::etna_binary().string(), "ask", "When are the tomatoes watered?", "--collection", "g", "--data",
                (dir / "data").string(), "-m", model.string(), "-n", "16", "--temp", "0"});
  ASSERT_TRUE(p.started());
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
  const std::string& o = p.output();
  const size_t searching = o.find("searching collection 'g'");
  const size_t retrieved = o.find("1 passage(s) retrieved (BM25)");
  const size_t prompt = o.find("reading the prompt: ");
  EXPECT_NE(searching, std::string::npos) << o;
  EXPECT_NE(retrieved, std::string::npos) << o;
  ASSERT_NE(prompt, std::string::npos) << o;
  EXPECT_LT(searching, retrieved);
  EXPECT_LT(retrieved, prompt);
  EXPECT_NE(o.find("tokens", prompt), std::string::npos);
  // Piped, the same command prints no progress (stderr is not a terminal).
  ASSERT_EQ(test::run_command(test::etna_binary().string() + " ask 'When are the tomatoes watered?' --collection g --data " +
                                  (dir / "data").string() + " -m " + model.string() + " -n 16 --temp 0",
                              &out, true),
            0)
      << out;
  EXPECT_EQ(out.find("reading the prompt"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::engine
