#include "etna/server/head_gate.h"

#include <algorithm>
#include <cctype>
#include <string_view>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etna/base/error.h"
#include "etna/base/log.h"

namespace etna::server {

Connection::~Connection() {
  if (fd >= 0) ::close(fd);
}

namespace {

using Clock = std::chrono::steady_clock;

// End of the head (just past its blank line) in `s`, or npos. Lines may end in CRLF or LF.
std::size_t head_end(const std::string& s, std::size_t limit) {
  const std::size_t n = std::min(s.size(), limit);
  for (std::size_t i = 0; i < n; ++i) {
    if (s[i] != '\n') continue;
    if (i + 1 < s.size() && s[i + 1] == '\n') return i + 2;
    if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') return i + 3;
  }
  return std::string::npos;
}

// The path of a request line ("GET /a/b?q HTTP/1.1" -> "/a/b"), for the error body's format.
std::string request_path(const std::string& head) {
  auto sp = head.find(' ');
  if (sp == std::string::npos) return "/";
  auto end = head.find_first_of(" ?\r\n", sp + 1);
  std::string path = head.substr(sp + 1, end == std::string::npos ? std::string::npos : end - sp - 1);
  return path.empty() || path[0] != '/' ? "/" : path;
}

void send_best_effort(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
}

}  // namespace

static bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::size_t gated_body_length(std::string_view head, const HeadLimits& limits) {
  std::size_t length = 0;
  bool has_length = false;
  std::size_t pos = head.find('\n');
  while (pos != std::string_view::npos && pos + 1 < head.size()) {
    const std::size_t start = pos + 1;
    const std::size_t end = head.find('\n', start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    pos = end;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (iequals(name, "transfer-encoding") || iequals(name, "expect")) return 0;
    if (iequals(name, "content-length")) {
      if (has_length || value.empty() || value.size() > 12) return 0;  // odd: the parser decides
      std::size_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') return 0;
        v = v * 10 + static_cast<std::size_t>(ch - '0');
      }
      length = v;
      has_length = true;
    }
  }
  return length <= limits.max_gated_body_bytes ? length : 0;
}

HeadState absorb_head(Connection& c, const HeadLimits& limits) {
  // Read without blocking until the socket is drained, the head limit is passed, or the head and
  // its gated body are in.
  bool eof = false;
  char buf[8192];
  for (;;) {
    std::size_t want;
    const std::size_t end = head_end(c.pending, limits.max_head_bytes + 3);
    if (end == std::string::npos) {
      if (c.pending.size() > limits.max_head_bytes) break;
      want = std::min(sizeof buf, limits.max_head_bytes + 1 - c.pending.size() + 3);
    } else {
      const std::size_t total = end + gated_body_length(std::string_view(c.pending).substr(0, end), limits);
      if (c.pending.size() >= total) break;
      want = std::min(sizeof buf, total - c.pending.size());
    }
    ssize_t n = ::recv(c.fd, buf, want, MSG_DONTWAIT);
    if (n > 0) {
      c.pending.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) eof = true;
    else if (errno == EINTR) continue;
    else if (errno != EAGAIN && errno != EWOULDBLOCK) eof = true;
    break;
  }
  return judge_head(c.pending, limits, eof);
}

HeadState judge_head(const std::string& bytes, const HeadLimits& limits, bool eof) {
  const std::size_t end = head_end(bytes, limits.max_head_bytes + 3);
  if (end == std::string::npos) {
    if (bytes.size() > limits.max_head_bytes) return HeadState::too_large;
    return eof ? HeadState::closed : HeadState::incomplete;
  }
  // Lines in the head: the request line, the headers, the blank line.
  const std::size_t lines = static_cast<std::size_t>(std::count(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
  if (lines > limits.max_header_count + 2) return HeadState::too_many_headers;
  if (!eof && bytes.size() < end + gated_body_length(std::string_view(bytes).substr(0, end), limits))
    return HeadState::body_incomplete;
  return HeadState::complete;
}

std::string head_refusal_message(HeadState state, const HeadLimits& limits) {
  if (state == HeadState::too_large) return fmt::format("the request head exceeds {} bytes", limits.max_head_bytes);
  if (state == HeadState::too_many_headers) return fmt::format("the request has more than {} headers", limits.max_header_count);
  if (state == HeadState::body_incomplete)
    return fmt::format("the request body did not arrive within {} ms", limits.head_timeout.count());
  return fmt::format("the request head did not arrive within {} ms", limits.head_timeout.count());
}

struct HeadGate::Waiting {
  std::unique_ptr<Connection> c;
  Clock::time_point deadline;
  bool started = false;  // some of the head has arrived (the head deadline runs)
  bool body = false;     // the head is whole, its gated body is awaited
  bool fresh = true;     // just added: what it already holds is judged without waiting for bytes
};

HeadGate::HeadGate(HeadLimits limits, Ready ready, Refusal refusal)
    : limits_(limits), ready_(std::move(ready)), refusal_(std::move(refusal)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) fail(ErrorKind::io, "cannot create the HTTP head gate's event descriptor");
  thread_ = std::thread([this] { run(); });
}

HeadGate::~HeadGate() {
  stop();
  ::close(wake_fd_);
}

void HeadGate::add(std::unique_ptr<Connection> c) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;  // c closes here
    incoming_.push_back(std::move(c));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void HeadGate::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void HeadGate::run() {
  std::vector<Waiting> waiting;
  std::vector<pollfd> fds;
  auto refuse = [this](Waiting& w, int status, const std::string& message) {
    send_best_effort(w.c->fd, refusal_(status, message, request_path(w.c->pending)));
    log::debug("http: refused a request head: {} {}", status, message);
  };
  for (;;) {
    const auto now = Clock::now();
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        incoming_.clear();
        return;  // `waiting` closes its connections
      }
      for (auto& c : incoming_) {
        Waiting w;
        w.started = !c->pending.empty();
        w.deadline = now + (w.started || c->served == 0 ? limits_.head_timeout : limits_.idle_timeout);
        w.c = std::move(c);
        waiting.push_back(std::move(w));
      }
      incoming_.clear();
    }
    // Too many waiting: the most overdue ones go (a flood of idle connections cannot grow it).
    while (waiting.size() > limits_.max_waiting) {
      auto oldest = std::min_element(waiting.begin(), waiting.end(),
                                     [](const Waiting& a, const Waiting& b) { return a.deadline < b.deadline; });
      waiting.erase(oldest);
    }
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    auto first_deadline = now + std::chrono::seconds(1);
    for (const auto& w : waiting) {
      fds.push_back(pollfd{w.c->fd, POLLIN, 0});
      first_deadline = std::min(first_deadline, w.deadline);
    }
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(first_deadline - now).count();
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait_ms + 1, 0, 1000)));
    if (n < 0 && errno != EINTR) {
      log::error("http: head gate poll failed ({}); closing waiting connections", errno);
      waiting.clear();
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
    }
    const auto after = Clock::now();
    std::vector<Waiting> keep;
    keep.reserve(waiting.size());
    for (std::size_t i = 0; i < waiting.size(); ++i) {
      Waiting& w = waiting[i];
      if (fds[i + 1].revents != 0 || w.fresh) {
        w.fresh = false;
        const HeadState state = absorb_head(*w.c, limits_);
        switch (state) {
          case HeadState::complete: ready_(std::move(w.c)); continue;
          case HeadState::closed: continue;
          case HeadState::too_large:
          case HeadState::too_many_headers:
            refuse(w, 431, head_refusal_message(state, limits_));
            continue;
          case HeadState::body_incomplete:
            w.body = true;
            [[fallthrough]];
          case HeadState::incomplete:
            if (!w.started && !w.c->pending.empty()) {
              w.started = true;
              w.deadline = after + limits_.head_timeout;
            }
            break;
        }
      }
      if (after >= w.deadline) {
        if (w.started)
          refuse(w, 408, head_refusal_message(w.body ? HeadState::body_incomplete : HeadState::incomplete, limits_));
        continue;  // an idle connection just closes
      }
      keep.push_back(std::move(w));
    }
    waiting.swap(keep);
  }
}

}  // namespace etna::server
