// Raw TCP connections to a server on loopback, for tests whose clients misbehave on purpose
// (slow heads and bodies, floods, hand-written requests). Every connection carries a receive
// and send timeout: a guard against a test hanging forever, never a timing assertion.
#pragma once
#include <optional>
#include <string>

namespace etna::test {

// A connected socket to 127.0.0.1:port with `guard_seconds` receive/send timeouts, or -1.
int connect_loopback(int port, int guard_seconds);
// Sends all of `s` (no SIGPIPE); false when the peer closed or the guard fired first.
bool send_all(int fd, const std::string& s);
// Reads until the peer closes, an error, or the guard fires; returns what was read.
std::string read_all(int fd);

class RawSocket {
 public:
  explicit RawSocket(int port, int guard_seconds = 60);
  ~RawSocket();
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  bool send_text(const std::string& s) const { return send_all(fd_, s); }
  // What was read until the peer closed (or reset); nullopt when the guard fired first.
  std::optional<std::string> read_until_closed() const;
  // What was read until the peer closed, an error or the guard.
  std::string read_all() const { return test::read_all(fd_); }
  // Reads until a whole response head and a body of its Content-Length bytes arrived.
  std::string read_response() const;

 private:
  int fd_ = -1;
};

// One request on a new connection; the whole reply (until the server closes), "" when the
// connection failed.
std::string exchange(int port, const std::string& request, int guard_seconds = 30);

}  // namespace etna::test
