#include "etna/server/http_server.h"
#include "etna/server/access_log.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <cctype>
#include <cstring>
#include <optional>
#include <string_view>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "etna/base/json_limits.h"
#include "etna/base/log.h"
#include "etna/server/head_gate.h"

namespace etna::server {
namespace {

// Start of the request being handled on this worker thread (cpp-httplib runs the pre-routing
// hook, the handler and the logger for one request on the same thread).
thread_local std::chrono::steady_clock::time_point t_request_start;
// Set by the logger (which cpp-httplib calls once a response is written) when the response says
// "Connection: close", e.g. because a handler left the body unread.
thread_local bool t_response_closes = false;
// Set by ConnectionStream when a request body fell below the minimum rate (BodyPace): the 400
// cpp-httplib then answers becomes a 408 saying so, and the connection closes.
thread_local bool t_body_too_slow = false;

// A body read on a worker (one the head gate did not await) must arrive at an average of at
// least `min_rate` bytes a second after a grace period, so a client that trickles a large body
// cannot hold a worker for long; cpp-httplib's read timeout alone restarts with every byte.
struct BodyPace {
  std::chrono::milliseconds grace{10000};
  std::size_t min_rate = 64 * 1024;  // bytes per second
};

// The credential headers of the request being handled on this thread, exactly as they arrived.
// cpp-httplib percent-decodes header values and its parsed strings stop at a NUL, so the key
// check reads these instead ("api-key: s3cret\0zzz" must not pass as "s3cret").
struct RawCredentials {
  bool valid = false;  // false: the request did not come through the gate (use the parsed headers)
  std::optional<std::string> authorization, api_key, x_api_key;
};
thread_local RawCredentials t_raw_credentials;

// Fills t_raw_credentials from a request head (request line, headers, blank line).
void capture_raw_credentials(std::string_view head) {
  RawCredentials out;
  out.valid = true;
  auto lower_eq = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
    return true;
  };
  size_t pos = head.find('\n');  // skip the request line
  while (pos != std::string_view::npos && pos + 1 < head.size()) {
    size_t start = pos + 1;
    size_t end = head.find('\n', start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    pos = end;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the blank line ends the head
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    std::optional<std::string>* slot = lower_eq(name, "authorization") ? &out.authorization
                                       : lower_eq(name, "api-key")     ? &out.api_key
                                       : lower_eq(name, "x-api-key")   ? &out.x_api_key
                                                                       : nullptr;
    if (slot && !*slot) *slot = std::string(value);  // the first one counts, as for parsed headers
  }
  t_raw_credentials = std::move(out);
}

// cpp-httplib's Stream over a Connection: bytes the head gate read ahead come first, then the
// socket, with poll()-based read and write timeouts.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(Connection& c, std::chrono::milliseconds read_timeout, std::chrono::milliseconds write_timeout,
                   BodyPace pace)
      : c_(c), read_ms_(static_cast<int>(read_timeout.count())), write_ms_(static_cast<int>(write_timeout.count())),
        pace_(pace), start_(std::chrono::steady_clock::now()) {}
  ~ConnectionStream() override { c_.pending.erase(0, pos_); }  // the rest belongs to the next request

  bool is_readable() const override { return pos_ < c_.pending.size() || wait_for(POLLIN, read_ms_); }
  // Also false once the peer hung up: cpp-httplib asks before each piece of a streamed response,
  // so a client that went away ends its stream (and frees its place) at the next piece.
  bool is_writable() const override {
    pollfd p{c_.fd, POLLOUT | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return false;
    return wait_for(POLLOUT, write_ms_);
  }
  ssize_t read(char* ptr, size_t size) override {
    if (pos_ >= c_.pending.size()) {
      c_.pending.clear();
      pos_ = 0;
      if (!wait_within_pace()) return -1;
      if (size >= 4096) {  // large reads go straight through
        const ssize_t n = ::recv(c_.fd, ptr, size, 0);
        if (n > 0) from_socket_ += static_cast<size_t>(n);
        return n;
      }
      char buf[4096];
      ssize_t n = ::recv(c_.fd, buf, sizeof buf, 0);
      if (n <= 0) return n;
      from_socket_ += static_cast<size_t>(n);
      c_.pending.assign(buf, static_cast<size_t>(n));
    }
    const size_t k = std::min(size, c_.pending.size() - pos_);
    std::memcpy(ptr, c_.pending.data() + pos_, k);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_for(POLLOUT, write_ms_)) return -1;
    return ::send(c_.fd, ptr, size, MSG_NOSIGNAL);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(false, ip, port); }
  socket_t socket() const override { return c_.fd; }

 private:
  // Waits for the next bytes no longer than the read timeout, nor past the moment the bytes read
  // so far fall below the pace's minimum rate (then t_body_too_slow is set).
  bool wait_within_pace() {
    using namespace std::chrono;
    const auto allowed = start_ + pace_.grace +
                         duration_cast<steady_clock::duration>(duration<double>(
                             static_cast<double>(from_socket_) / static_cast<double>(std::max<size_t>(pace_.min_rate, 1))));
    const auto left = duration_cast<milliseconds>(allowed - steady_clock::now()).count();
    const bool pace_bound = left < read_ms_;
    if (left <= 0 || !wait_for(POLLIN, static_cast<int>(std::min<long long>(left, read_ms_)))) {
      if (pace_bound) t_body_too_slow = true;
      return false;
    }
    return true;
  }
  bool wait_for(short events, int ms) const {
    pollfd p{c_.fd, events, 0};
    for (;;) {
      int n = ::poll(&p, 1, std::max(ms, 1));
      if (n < 0 && errno == EINTR) continue;
      return n == 1 && (p.revents & (events | POLLHUP)) != 0;
    }
  }
  void address_of(bool peer, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    int rc = peer ? ::getpeername(c_.fd, reinterpret_cast<sockaddr*>(&a), &len)
                  : ::getsockname(c_.fd, reinterpret_cast<sockaddr*>(&a), &len);
    ip.clear();
    port = 0;
    if (rc != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
      inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      port = ntohs(v6->sin6_port);
    }
    ip = text;
  }

  Connection& c_;
  size_t pos_ = 0;
  int read_ms_;
  int write_ms_;
  BodyPace pace_;
  std::chrono::steady_clock::time_point start_;
  size_t from_socket_ = 0;  // bytes this request read from the socket (not the gate's)
};

// cpp-httplib's Stream over bytes in memory (HttpServer::serve_bytes).
class MemoryStream : public httplib::Stream {
 public:
  MemoryStream(const std::string& in, std::size_t& pos, std::string& out) : in_(in), pos_(pos), out_(out) {}
  bool is_readable() const override { return pos_ < in_.size(); }
  bool is_writable() const override { return out_.size() < (64u << 20); }
  ssize_t read(char* ptr, size_t size) override {
    const size_t k = std::min(size, in_.size() - pos_);
    std::memcpy(ptr, in_.data() + pos_, k);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    out_.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 1;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 2;
  }
  socket_t socket() const override { return -1; }

 private:
  const std::string& in_;
  std::size_t& pos_;
  std::string& out_;
};

}  // namespace

// cpp-httplib's Server with its connection handling replaced: each accepted connection goes to
// the head gate first and reaches a worker only with a complete request head; after each
// response a kept-alive connection goes back to the gate. (cpp-httplib 0.11 has no setting for
// head deadlines or header limits, and reads heads on its workers; process_and_close_socket is
// its documented extension point, the one its SSL server overrides too.)
class GatedServer : public httplib::Server {
 public:
  GatedServer(std::size_t threads, HeadLimits limits, std::chrono::milliseconds read_timeout,
              std::chrono::milliseconds write_timeout, BodyPace pace, HeadGate::Refusal refusal)
      : threads_(threads), limits_(limits), read_timeout_(read_timeout), write_timeout_(write_timeout),
        pace_(pace), refusal_(std::move(refusal)) {
    new_task_queue = [this] {
      pool_ = std::make_unique<httplib::ThreadPool>(threads_);
      gate_ = std::make_unique<HeadGate>(
          limits_,
          [this](std::unique_ptr<Connection> c) {
            auto holder = std::make_shared<std::unique_ptr<Connection>>(std::move(c));
            pool_->enqueue([this, holder] { serve(std::move(*holder)); });
          },
          refusal_);
      return new Queue(*this);
    };
  }

 private:
  // What cpp-httplib's listen loop owns: forwards to our pool; on shutdown the gate stops first
  // (so nothing is queued after the pool stops), then the pool finishes its jobs.
  class Queue : public httplib::TaskQueue {
   public:
    explicit Queue(GatedServer& s) : s_(s) {}
    void enqueue(std::function<void()> fn) override { s_.pool_->enqueue(std::move(fn)); }
    void shutdown() override {
      s_.gate_->stop();
      s_.pool_->shutdown();
    }

   private:
    GatedServer& s_;
  };

 public:
  // HttpServer::serve_bytes: the worker's loop over bytes in memory.
  std::string serve_bytes(const std::string& in) {
    std::string out;
    std::size_t pos = 0;
    for (int served = 0; pos < in.size() && served < 16; ++served) {
      const std::string rest = in.substr(pos);
      const HeadState state = judge_head(rest, limits_, true);
      if (state == HeadState::too_large || state == HeadState::too_many_headers) {
        const std::string why = head_refusal_message(state, limits_);
        return out + refusal_(431, why, "/");
      }
      if (state != HeadState::complete) return out;
      capture_raw_credentials(std::string_view(rest));
      t_response_closes = false;
      t_body_too_slow = false;
      bool connection_closed = false;
      MemoryStream strm(in, pos, out);
      const std::size_t before = pos;
      const bool ok = process_request(strm, false, connection_closed, nullptr);
      if (!ok || connection_closed || t_response_closes || pos == before) break;
    }
    return out;
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    serve(std::make_unique<Connection>(sock));
    return true;
  }

  // On a worker: answers the requests whose heads are complete; a connection whose next head is
  // not there yet goes (back) to the gate.
  void serve(std::unique_ptr<Connection> c) {
    for (;;) {
      if (absorb_head(*c, limits_) != HeadState::complete) {
        gate_->add(std::move(c));  // incomplete, refused or closed: the gate sorts it out
        return;
      }
      bool close_connection = static_cast<std::size_t>(c->served + 1) >= keep_alive_max_count_;
      bool connection_closed = false;
      t_response_closes = false;
      t_body_too_slow = false;
      capture_raw_credentials(std::string_view(c->pending));
      bool ok;
      {
        ConnectionStream strm(*c, read_timeout_, write_timeout_, pace_);
        ok = process_request(strm, close_connection, connection_closed, nullptr);
      }
      ++c->served;
      if (t_body_too_slow) {
        linger_close(c->fd);
        return;
      }
      if (!ok || close_connection || connection_closed || t_response_closes || !is_running()) {
        ::shutdown(c->fd, SHUT_RDWR);
        return;  // closes
      }
    }
  }

  // After a 408 for a slow body the client is still sending: closing with its bytes unread would
  // reset the connection and could destroy the response before the client reads it. So stop
  // sending, discard what arrives for a short while (bounded in time and bytes), then close.
  static void linger_close(int fd) {
    ::shutdown(fd, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    std::size_t drained = 0;
    char buf[4096];
    while (drained < (256u << 10)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) != 1) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<std::size_t>(n);
    }
    ::shutdown(fd, SHUT_RDWR);
  }

  std::size_t threads_;
  HeadLimits limits_;
  std::chrono::milliseconds read_timeout_;
  std::chrono::milliseconds write_timeout_;
  BodyPace pace_;
  HeadGate::Refusal refusal_;
  std::unique_ptr<httplib::ThreadPool> pool_;  // destroyed after gate_, whose callback uses it
  std::unique_ptr<HeadGate> gate_;
};

namespace {
// Tokens the request's handler reported (note_tokens); -1: none.
thread_local int t_prompt_tokens = -1;
thread_local int t_completion_tokens = -1;
std::atomic<bool> g_access_log{false};

std::string reason_message(int status, const httplib::Request& req, std::size_t max_body) {
  switch (status) {
    case 400: return "malformed HTTP request";
    case 404: return fmt::format("no route for {} {}", req.method, req.path);
    case 405: return fmt::format("method {} not allowed on {}", req.method, req.path);
    case 413:
      return fmt::format("request body exceeds the limit of {} bytes ({:.1f} MiB); raise it with --max-body-mb",
                         max_body, static_cast<double>(max_body) / (1024.0 * 1024.0));
    case 414: return "request URI too long";
    case 416: return "requested range not satisfiable";
    default: return fmt::format("HTTP error {}", status);
  }
}

std::string slow_body_message(std::size_t min_rate) {
  return fmt::format("the request body arrived slower than {} KiB/s; the connection is closed",
                     std::max<std::size_t>(min_rate / 1024, 1));
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

double request_elapsed_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_request_start).count();
}

int http_status_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return 400;
    case ErrorKind::not_found: return 404;
    case ErrorKind::conflict: return 409;
    case ErrorKind::limit: return 413;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::unsupported: return 501;
    case ErrorKind::corrupt:
    case ErrorKind::io:
    case ErrorKind::internal: return 500;
  }
  return 500;
}

int http_status_for(const Error& error) {
  if (auto* http = dynamic_cast<const HttpError*>(&error)) return http->status();
  return http_status_for(error.kind());
}

nlohmann::json default_error_body(int status, const std::string& message) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status < 500  ? "invalid_request_error"
                                     : "server_error";
  // 401's code names the problem as OpenAI's does; other codes are the status.
  nlohmann::json code = status == 401 ? nlohmann::json("invalid_api_key") : nlohmann::json(status);
  return {{"error", {{"message", message}, {"type", type}, {"code", code}}}};
}

nlohmann::json parse_json_body(const httplib::Request& req, bool allow_empty) {
  const std::string& body = req.body;
  bool blank = std::all_of(body.begin(), body.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
  if (blank) {
    if (allow_empty) return nlohmann::json::object();
    fail(ErrorKind::invalid_argument, "request body is empty; expected a JSON object");
  }
  // A JSON route takes JSON only: text/plain and form encodings are what a cross-site page can
  // send without a CORS preflight.
  if (req.has_header("Content-Type")) {
    std::string type = req.get_header_value("Content-Type");
    type = type.substr(0, type.find(';'));
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    while (!type.empty() && type.back() == ' ') type.pop_back();
    const bool json = type == "application/json" || (type.size() > 5 && type.compare(type.size() - 5, 5, "+json") == 0);
    if (!json) throw HttpError(415, ErrorKind::invalid_argument, fmt::format("the body must be JSON: send Content-Type: application/json (got '{}')", type));
  }
  return parse_json_bounded(body, kMaxJsonDepth, "request body");
}

void send_json(httplib::Response& res, const nlohmann::json& body, int status) {
  res.status = status;
  // Replace invalid UTF-8 rather than throwing while serialising a payload we were given.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void start_stream(const httplib::Request& req, httplib::Response& res, const std::string& content_type,
                  httplib::ContentProviderWithoutLength provider,
                  httplib::ContentProviderResourceReleaser releaser) {
  // The Request object is cpp-httplib's own mutable one (handlers only see it const); its
  // Accept-Encoding is read again after the handler returns, to choose the response's encoding.
  const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(content_type + "; charset=utf-8", std::move(provider), std::move(releaser));
}

bool constant_time_equals(const std::string& a, const std::string& b) {
  // Walk the longer length so the time depends only on the sizes, never on the contents.
  std::size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

HttpServer::HttpServer(ServerOptions options)
    : options_(std::move(options)), default_format_(default_error_body) {
  if (options_.port < 0 || options_.port > 65535) fail(ErrorKind::invalid_argument, "port {} is out of range 0..65535", options_.port);
  if (options_.max_body_bytes == 0) fail(ErrorKind::invalid_argument, "the request body limit must be positive");
  int threads = options_.threads;
  if (threads <= 0) threads = std::max(4, 2 * static_cast<int>(std::thread::hardware_concurrency()));
  HeadLimits limits;
  limits.head_timeout = std::max(options_.head_timeout, std::chrono::milliseconds(1));
  limits.idle_timeout = std::max(options_.idle_timeout, std::chrono::milliseconds(1));
  limits.max_head_bytes = std::max<std::size_t>(options_.max_head_bytes, 1024);
  limits.max_header_count = options_.max_headers;
  auto refusal = [this](int status, const std::string& message, const std::string& path) {
    const std::string body = format_for(path)(status, message).dump();
    return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                       status, status == 408 ? "Request Timeout" : "Request Header Fields Too Large", body.size(), body);
  };
  BodyPace pace;
  pace.grace = limits.head_timeout;
  pace.min_rate = std::max<std::size_t>(options_.min_body_rate, 1);
  server_ = std::make_unique<GatedServer>(static_cast<std::size_t>(threads), limits, options_.read_timeout,
                                          options_.write_timeout, pace, refusal);
  server_->set_keep_alive_max_count(100);
  server_->set_payload_max_length(options_.max_body_bytes);
  auto split = [](std::chrono::milliseconds d) {
    auto ms = std::max<long long>(d.count(), 1);
    return std::pair<time_t, time_t>{static_cast<time_t>(ms / 1000), static_cast<time_t>((ms % 1000) * 1000)};
  };
  auto [rs, rus] = split(options_.read_timeout);
  auto [ws, wus] = split(options_.write_timeout);
  server_->set_read_timeout(rs, rus);
  server_->set_write_timeout(ws, wus);
  server_->set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(options_.idle_timeout.count() / 1000)));
  // cpp-httplib's default also sets SO_REUSEPORT, which would let a second server silently share
  // (and steal connections from) a port that is in use. Only SO_REUSEADDR (restart after TIME_WAIT).
  server_->set_socket_options([](::socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
    // Accepted sockets inherit it: a response's head and body go out as separate writes, and with
    // Nagle the body waited for the client's delayed ACK (~40 ms per kept-alive request).
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  install_hooks();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::install_hooks() {
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = std::chrono::steady_clock::now();
    // cpp-httplib percent-decodes the path: a %00 would reach handlers as a NUL byte, which names
    // no resource and cuts error messages (and file names) short.
    if (req.path.find('\0') != std::string::npos) {
      res.set_header("Connection", "close");
      send_error(req, res, 400, "the request path contains a NUL byte (%00)");
      return httplib::Server::HandlerResponse::Handled;
    }
    t_prompt_tokens = t_completion_tokens = -1;
    if (!options_.cors_origins.empty() && req.method == "OPTIONS" && req.has_header("Origin")) {
      // CORS preflight: answered here, before authentication (browsers send no credentials).
      std::string origin = allowed_origin(req);
      res.status = 204;
      if (!origin.empty()) {
        res.set_header("Access-Control-Allow-Origin", origin);
        res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        std::string wanted = req.get_header_value("Access-Control-Request-Headers");
        res.set_header("Access-Control-Allow-Headers", wanted.empty() ? "authorization, content-type, api-key" : wanted);
        res.set_header("Access-Control-Max-Age", "600");
        res.set_header("Vary", "Origin");
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    if (std::string why = cross_site_refusal(req); !why.empty()) {
      res.set_header("Connection", "close");  // the body (if any) is left unread
      send_error(req, res, 403, why);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer");
      // The body (if any) is left unread: close the connection rather than parse it as a request.
      res.set_header("Connection", "close");
      send_error(req, res, 401, "missing or invalid API key: send 'Authorization: Bearer KEY' or 'api-key: KEY'");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  server_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (t_body_too_slow && res.status == 400) {
          res.status = 408;
          res.set_header("Connection", "close");
          send_error(req, res, 408, slow_body_message(options_.min_body_rate));
          return httplib::Server::HandlerResponse::Handled;
        }
        send_error(req, res, res.status, reason_message(res.status, req, options_.max_body_bytes));
        return httplib::Server::HandlerResponse::Handled;
      }));

  server_->set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    int status = 500;
    std::string message = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const Error& e) {
      status = http_status_for(e);
      message = e.what();
    } catch (const std::exception& e) {
      message = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(req, res, status, message);
  });

  server_->set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.cors_origins.empty()) return;
    if (res.has_header("Access-Control-Allow-Origin")) return;  // a preflight, answered already
    std::string origin = allowed_origin(req);
    if (origin.empty()) return;
    res.set_header("Access-Control-Allow-Origin", origin);
    res.set_header("Vary", "Origin");
  });

  server_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
    t_response_closes = res.get_header_value("Connection") == "close";
    const bool debug = spdlog::should_log(spdlog::level::debug);
    const bool access = g_access_log.load();
    if (!access && !debug) return;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_request_start).count();
    const std::string tokens =
        t_prompt_tokens < 0 ? "-" : fmt::format("{}+{}", t_prompt_tokens, std::max(0, t_completion_tokens));
    std::string path = req.path;
    for (char& c : path)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';  // one line per request, whatever was sent
    if (access)
      std::fprintf(stderr, "%s\n",
                   fmt::format("etna: {} {} {} {} tokens {} {:.1f} ms", req.remote_addr, req.method, path, res.status,
                               tokens, ms)
                       .c_str());
    if (debug)
      log::debug("http: {} {} {} ({} bytes in) -> {} ({} bytes out, {:.2f} ms)", req.remote_addr, req.method, path,
                 req.body.size(), res.status, res.body.size(), ms);
  });
}

void set_access_log(bool on) { g_access_log.store(on); }

void note_tokens(int prompt_tokens, int completion_tokens) {
  t_prompt_tokens = prompt_tokens;
  t_completion_tokens = completion_tokens;
}

void HttpServer::route(Method method, const std::string& pattern, Handler handler) {
  Handler wrapped = [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const Error& e) {
      send_error(req, res, http_status_for(e), e.what());
    } catch (const nlohmann::json::exception& e) {
      // A handler read a JSON field with the wrong type: the client's fault.
      std::string what = e.what();
      auto pos = what.find("] ");
      send_error(req, res, 400, "invalid request body: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
    } catch (const std::bad_alloc&) {
      send_error(req, res, 503, "out of memory while handling the request");
    } catch (const std::exception& e) {
      log::error("http: {} {} failed: {}", req.method, req.path, e.what());
      send_error(req, res, 500, std::string("internal error: ") + e.what());
    }
  };
  // Routes with a body read it through cpp-httplib's content reader, which hands over the body
  // decoded (de-chunked, inflated) piece by piece: the limit then holds for what the handler
  // would get. cpp-httplib 0.11's own payload limit only checks Content-Length, so a chunked or
  // gzip body of any decoded size was buffered whole.
  httplib::Server::HandlerWithContentReader with_body = [this, wrapped](const httplib::Request& req,
                                                                        httplib::Response& res,
                                                                        const httplib::ContentReader& reader) {
    const std::size_t limit = options_.max_body_bytes;
    httplib::Request full = req;  // the handlers' view: body (or files) filled in below
    std::size_t total = 0;
    bool over = false;
    auto fits = [&](std::size_t n) {
      total += n;
      over = over || total > limit;
      return !over;
    };
    const bool chunked = req.has_header("Transfer-Encoding");
    if (req.has_header("Content-Length")) {
      // One plain decimal that fits a signed 64-bit size; anything else cannot be framed.
      const std::string cl = req.get_header_value("Content-Length");
      const bool digits = !cl.empty() && cl.size() <= 19 && std::all_of(cl.begin(), cl.end(), [](char c) { return c >= '0' && c <= '9'; });
      unsigned long long value = digits ? std::stoull(cl) : 0;
      if (!digits || value > 9223372036854775807ull || chunked || req.get_header_value_count("Content-Length") != 1) {
        res.set_header("Connection", "close");
        send_error(req, res, 400, fmt::format("invalid Content-Length '{}'", cl.substr(0, 40)));
        return;
      }
      if (value > limit) {  // refused unread (cpp-httplib would try to skip that many bytes)
        res.set_header("Connection", "close");
        send_error(req, res, 413, reason_message(413, req, limit));
        return;
      }
    } else if (!chunked) {
      // HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding has no body
      // (cpp-httplib would read until the client closes, a 30 s wait for a bodiless POST).
      wrapped(full, res);
      return;
    }
    bool read_ok = false;
    if (req.is_multipart_form_data()) {
      httplib::MultipartFormDataMap::iterator current = full.files.end();
      read_ok = reader(
          [&](const httplib::MultipartFormData& part) {
            current = full.files.emplace(part.name, part);
            return true;
          },
          [&](const char* data, std::size_t n) {
            if (!fits(n)) return false;
            if (current != full.files.end()) current->second.content.append(data, n);
            return true;
          });
    } else {
      read_ok = reader([&](const char* data, std::size_t n) {
        if (!fits(n)) return false;
        full.body.append(data, n);
        return true;
      });
    }
    if (over || res.status == 413) {
      res.set_header("Connection", "close");  // the rest of the body is left unread
      send_error(req, res, 413, reason_message(413, req, limit));
      return;
    }
    if (!read_ok && t_body_too_slow) {
      res.set_header("Connection", "close");
      send_error(req, res, 408, slow_body_message(options_.min_body_rate));
      return;
    }
    if (!read_ok) {  // timed out, or malformed chunking or compression
      res.set_header("Connection", "close");
      send_error(req, res, 400, "the request body could not be read (malformed, or the client stalled)");
      return;
    }
    wrapped(full, res);
    // start_stream drops Accept-Encoding so cpp-httplib leaves the stream uncompressed; it read the
    // copy, and cpp-httplib reads its own (mutable, handed to handlers const) request afterwards.
    if (!full.has_header("Accept-Encoding") && req.has_header("Accept-Encoding"))
      const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
  };
  switch (method) {
    case Method::get: server_->Get(pattern, wrapped); break;
    case Method::post: server_->Post(pattern, with_body); break;
    case Method::put: server_->Put(pattern, with_body); break;
    case Method::patch: server_->Patch(pattern, with_body); break;
    case Method::del: server_->Delete(pattern, with_body); break;
  }
}

void HttpServer::set_error_format(const std::string& prefix, ErrorFormat format) {
  for (auto& [p, f] : error_formats_) {
    if (p == prefix) {
      f = std::move(format);
      return;
    }
  }
  error_formats_.emplace_back(prefix, std::move(format));
}

void HttpServer::add_public_path(const std::string& path) { public_paths_.push_back(path); }

void HttpServer::add_public_request(std::function<bool(const httplib::Request&)> pred) {
  public_requests_.push_back(std::move(pred));
}

const ErrorFormat& HttpServer::format_for(const std::string& path) const {
  const ErrorFormat* best = &default_format_;
  std::size_t best_len = 0;
  for (const auto& [prefix, format] : error_formats_) {
    if (starts_with(path, prefix) && prefix.size() >= best_len) {
      best = &format;
      best_len = prefix.size();
    }
  }
  return *best;
}

void HttpServer::send_error(const httplib::Request& req, httplib::Response& res, int status,
                            const std::string& message) const {
  if (status >= 500) log::warn("http: {} {} -> {}: {}", req.method, req.path, status, message);
  send_json(res, format_for(req.path)(status, message), status);
}

bool HttpServer::is_public(const std::string& path) const {
  for (const auto& p : public_paths_) {
    if (!p.empty() && p.back() == '/' ? starts_with(path, p) : path == p) return true;
  }
  return false;
}

bool HttpServer::authorized(const httplib::Request& req) const {
  if (options_.api_keys.empty() || is_public(req.path)) return true;
  for (const auto& pred : public_requests_)
    if (pred(req)) return true;
  const RawCredentials& raw = t_raw_credentials;
  auto header = [&](const char* name, const std::optional<std::string>& raw_value) -> std::optional<std::string> {
    if (raw.valid) return raw_value;
    if (!req.has_header(name)) return std::nullopt;
    return req.get_header_value(name);
  };
  std::string presented;
  const auto auth = header("Authorization", raw.authorization);
  const auto api_key = header("api-key", raw.api_key);
  const auto x_api_key = header("x-api-key", raw.x_api_key);
  if (auth && auth->size() > 7 && (auth->compare(0, 7, "Bearer ") == 0 || auth->compare(0, 7, "bearer ") == 0)) {
    presented = auth->substr(7);
  } else if (api_key) {
    presented = *api_key;
  } else if (x_api_key) {  // Anthropic's clients
    presented = *x_api_key;
  } else {
    return false;
  }
  bool ok = false;
  for (const auto& key : options_.api_keys) ok |= constant_time_equals(presented, key);  // no early exit
  return ok;
}

std::string HttpServer::allowed_origin(const httplib::Request& req) const {
  if (!req.has_header("Origin")) return "";
  std::string origin = req.get_header_value("Origin");
  for (const auto& allowed : options_.cors_origins) {
    if (allowed == "*") return "*";
    if (allowed == origin) return origin;
  }
  return "";
}

namespace {

// "host" of a Host header value "host", "host:port", "[v6]" or "[v6]:port", lower-cased.
std::string host_name_of(const std::string& value) {
  std::string h = value;
  if (!h.empty() && h[0] == '[') {
    auto close = h.find(']');
    h = close == std::string::npos ? h : h.substr(0, close + 1);
  } else if (auto colon = h.rfind(':'); colon != std::string::npos) {
    h = h.substr(0, colon);
  }
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return h;
}

// IP address literals cannot be re-pointed by DNS, so they are never a rebinding risk.
bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  return inet_pton(AF_INET, host.c_str(), buf) == 1;
}

}  // namespace

std::string HttpServer::cross_site_refusal(const httplib::Request& req) const {
  // DNS rebinding: a page on attacker.example re-pointed at 127.0.0.1 sends Host: attacker.example.
  if (req.has_header("Host")) {
    const std::string host = host_name_of(req.get_header_value("Host"));
    bool ok = host == "localhost" || (host.size() > 10 && host.compare(host.size() - 10, 10, ".localhost") == 0) ||
              is_ip_literal(host);
    for (const auto& allowed : options_.allowed_hosts) ok = ok || allowed == "*" || host_name_of(allowed) == host;
    if (!ok)
      return fmt::format("Host '{}' is not a name of this server: use localhost or its IP address, or start it with "
                         "--allowed-host {}", host, host);
  }
  // Cross-site requests: browsers send Origin on every cross-origin POST/PUT/PATCH/DELETE, also
  // the "simple" ones (form posts, text/plain) that need no preflight.
  const bool changes_state = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE";
  if (changes_state && req.has_header("Origin")) {
    const std::string origin = req.get_header_value("Origin");
    bool ok = !allowed_origin(req).empty();
    if (!ok && req.has_header("Host")) {
      std::string own = "http://" + req.get_header_value("Host");
      std::transform(own.begin(), own.end(), own.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      std::string o = origin;
      std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      ok = o == own;
    }
    if (!ok)
      return fmt::format("cross-site request from origin '{}' refused: allow it with --cors {}", origin, origin);
  }
  return "";
}

std::string HttpServer::url() const {
  bool v6 = options_.host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", options_.host, v6 ? "]" : "", port_);
}

std::string HttpServer::serve_bytes(const std::string& bytes) {
  return static_cast<GatedServer&>(*server_).serve_bytes(bytes);
}

void HttpServer::bind() {
  if (port_ >= 0) return;
  if (options_.host.find(':') != std::string::npos) server_->set_address_family(AF_INET6);
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
    if (port_ < 0) port_ = -1;
  } else if (server_->bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  }
  if (port_ < 0) {
    fail(ErrorKind::io, "cannot listen on {}:{} (address in use, or not an address of this machine)", options_.host,
         options_.port);
  }
}

void HttpServer::listen() {
  bind();
  if (stopping_) return;
  server_->listen_after_bind();
}

void HttpServer::wait_until_ready() const {
  while (!server_->is_running() && !stopping_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void HttpServer::stop() {
  stopping_ = true;
  server_->stop();
}

void HttpServer::block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

void HttpServer::run_until_signal() {
  bind();
  std::atomic<bool> done{false};
  std::thread waiter([this, &done] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    timespec tick{0, 200 * 1000 * 1000};
    while (!done) {
      int sig = sigtimedwait(&set, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        log::info("http: received {}, finishing in-flight requests and shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        stopping_ = true;
        // listen() may not have started yet; stop() only acts on a running server.
        while (!done && !server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        server_->stop();
        return;
      }
    }
  });
  listen();
  done = true;
  waiter.join();
}

}  // namespace etna::server
