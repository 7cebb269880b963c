// The head gate: connections wait here, on one poll() thread, until a whole HTTP request head
// (request line and headers, up to the blank line) has arrived, and with it the whole body when
// the head announces a small one (Content-Length up to max_gated_body_bytes). Only then does a
// worker thread take the connection, so clients that send slowly (slowloris) or not at all cannot
// occupy the worker pool, and a head has a deadline, a size limit and a header-count limit.
// Larger or chunked bodies are read on the worker, at a minimum rate (http_server.cpp).
//
// cpp-httplib 0.11 reads a head line by line on a worker with a per-read timeout only, and keeps
// every header; it has no setting for any of this, so HttpServer wraps it (http_server.cpp).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace etna::server {

struct HeadLimits {
  std::chrono::milliseconds head_timeout{10000};  // first byte of a head -> its blank line
  std::chrono::milliseconds idle_timeout{5000};   // a kept-alive connection waiting for its next request
  std::size_t max_head_bytes = 32 * 1024;        // request line and headers together
  std::size_t max_header_count = 100;
  // A body announced by Content-Length up to this size is awaited in the gate too, within the
  // same deadline (not with Transfer-Encoding or Expect: 100-continue, whose client waits for us).
  std::size_t max_gated_body_bytes = 64 * 1024;
  std::size_t max_waiting = 1024;                // connections in the gate; the most overdue goes first
};

// One client connection: the socket (closed on destruction) and bytes read but not yet consumed.
struct Connection {
  explicit Connection(int fd) : fd(fd) {}
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  int fd;
  std::string pending;  // bytes received ahead of the parser (the head, maybe more)
  int served = 0;       // requests answered on this connection
};

// complete: the head is whole, and so is its gated body if it has one. body_incomplete: the head
// is whole, its gated body not yet.
enum class HeadState { complete, incomplete, body_incomplete, closed, too_large, too_many_headers };

// Whether `bytes` start with a complete head within the limits (and its gated body); `eof`: no
// more bytes will come (a short body then counts as complete: the parser answers it).
HeadState judge_head(const std::string& bytes, const HeadLimits& limits, bool eof);

// The length of the body the gate awaits for this complete head (0: none, or too large, chunked
// or expecting 100-continue: those are read on the worker).
std::size_t gated_body_length(std::string_view head, const HeadLimits& limits);

// The message of a 431 (too_large, too_many_headers) or 408 (incomplete at the deadline).
std::string head_refusal_message(HeadState state, const HeadLimits& limits);

// Reads what the socket has without blocking (at most up to the head limit and the gated body)
// and says whether `c.pending` now starts with a complete head (and gated body).
HeadState absorb_head(Connection& c, const HeadLimits& limits);

class HeadGate {
 public:
  // `ready` gets each connection whose head is complete (on the gate thread; it must not block).
  // `refusal` builds the response for a refused head: (status, message, request path) -> bytes.
  using Ready = std::function<void(std::unique_ptr<Connection>)>;
  using Refusal = std::function<std::string(int status, const std::string& message, const std::string& path)>;

  HeadGate(HeadLimits limits, Ready ready, Refusal refusal);
  ~HeadGate();  // stop()
  HeadGate(const HeadGate&) = delete;
  HeadGate& operator=(const HeadGate&) = delete;

  // Takes the connection: it reaches `ready` once its head is complete, or is refused or closed.
  // After stop(), closes it at once.
  void add(std::unique_ptr<Connection> c);

  // Closes every waiting connection and joins the gate thread; later add()s close at once.
  void stop();

  const HeadLimits& limits() const { return limits_; }

 private:
  struct Waiting;
  void run();

  HeadLimits limits_;
  Ready ready_;
  Refusal refusal_;
  int wake_fd_ = -1;  // eventfd: add() and stop() wake the poll
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> incoming_;  // REQUIRES: mutex_ held
  bool stopping_ = false;                              // REQUIRES: mutex_ held
  std::thread thread_;
};

}  // namespace etna::server
