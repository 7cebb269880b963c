#include "etna/server/http_server.h"
#include "etna/server/access_log.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <cctype>
#include <thread>

#include <arpa/inet.h>
#include <pthread.h>

#include "etna/base/json_limits.h"
#include "etna/base/log.h"

namespace etna::server {
namespace {

// Start of the request being handled on this worker thread (cpp-httplib runs the pre-routing
// hook, the handler and the logger for one request on the same thread).
thread_local std::chrono::steady_clock::time_point t_request_start;
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
  return {{"error", {{"message", message}, {"type", type}, {"code", status}}}};
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
    : options_(std::move(options)), server_(std::make_unique<httplib::Server>()), default_format_(default_error_body) {
  if (options_.port < 0 || options_.port > 65535) fail(ErrorKind::invalid_argument, "port {} is out of range 0..65535", options_.port);
  if (options_.max_body_bytes == 0) fail(ErrorKind::invalid_argument, "the request body limit must be positive");
  int threads = options_.threads;
  if (threads <= 0) threads = std::max(4, 2 * static_cast<int>(std::thread::hardware_concurrency()));
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
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
  });
  install_hooks();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::install_hooks() {
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = std::chrono::steady_clock::now();
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
  std::string presented;
  std::string auth = req.get_header_value("Authorization");
  if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0)) {
    presented = auth.substr(7);
  } else if (req.has_header("api-key")) {
    presented = req.get_header_value("api-key");
  } else if (req.has_header("x-api-key")) {  // Anthropic's clients
    presented = req.get_header_value("x-api-key");
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
