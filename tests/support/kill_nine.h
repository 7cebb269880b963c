// The kill -9 harness the store's durability tests share: a forked child writes forever and
// reports each acknowledged point id on a pipe; the parent SIGKILLs it after a random pause,
// collects the ids that were acknowledged (complete lines only) and checks the reopened store.
#pragma once
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>

namespace etna::test {

// Child side: writes the ids of one acknowledged batch, one per line, to out_fd; exits the
// child (status 3) when the pipe is gone.
inline void report_acknowledged(int out_fd, uint64_t first, uint64_t end) {
  std::string line;
  for (uint64_t id = first; id < end; ++id) line += std::to_string(id) + "\n";
  if (::write(out_fd, line.data(), line.size()) != ssize_t(line.size())) _exit(3);
}

// Child side: runs body(); an exception is printed to stderr and ends the child with status 2.
// body should loop forever (writing, then report_acknowledged) until it is killed.
[[noreturn]] inline void run_writer_child(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::string msg = std::string("child error: ") + e.what() + "\n";
    (void)!::write(2, msg.data(), msg.size());
  }
  _exit(2);
}

struct KillNineOptions {
  int rounds = 8;
  unsigned seed = 1;
  unsigned min_pause_us = 30000;    // the child runs at least this long ...
  unsigned extra_pause_us = 200000;  // ... plus a random part of this
};

// Runs the rounds. writer(first_id, out_fd) runs in the child (never returns; use
// run_writer_child). After each kill, check(acked) runs in the parent with every id
// acknowledged so far and returns the next free id (the child of the next round starts there).
// Returns every acknowledged id. Fails the test when a child exits on its own.
inline std::set<uint64_t> kill_nine_rounds(const KillNineOptions& opt, uint64_t first_id,
                                           const std::function<void(uint64_t first_id, int out_fd)>& writer,
                                           const std::function<uint64_t(const std::set<uint64_t>& acked)>& check) {
  std::mt19937 rng(opt.seed);
  std::set<uint64_t> acked;
  uint64_t next = first_id;
  for (int round = 0; round < opt.rounds; ++round) {
    int fds[2];
    if (::pipe(fds) != 0) {
      ADD_FAILURE() << "pipe failed";
      return acked;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork failed";
      return acked;
    }
    if (pid == 0) {
      ::close(fds[0]);
      writer(next, fds[1]);
      _exit(4);
    }
    ::close(fds[1]);
    ::usleep(opt.min_pause_us + rng() % opt.extra_pause_us);
    ::kill(pid, SIGKILL);
    std::string text;
    char buf[4096];
    ssize_t r;
    while ((r = ::read(fds[0], buf, sizeof buf)) > 0) text.append(buf, size_t(r));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status)) {
      ADD_FAILURE() << "writer exited on its own with status " << WEXITSTATUS(status);
      return acked;
    }
    size_t end = text.rfind('\n');
    std::istringstream lines(end == std::string::npos ? "" : text.substr(0, end));
    std::string line;
    uint64_t max_id = next;
    while (std::getline(lines, line)) {
      uint64_t id = std::stoull(line);
      acked.insert(id);
      max_id = std::max(max_id, id + 1);
    }
    next = std::max(max_id, check(acked));
    if (::testing::Test::HasFatalFailure()) return acked;
  }
  return acked;
}

}  // namespace etna::test
