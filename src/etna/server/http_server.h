// Etna's HTTP server: a thin, hardened wrapper around cpp-httplib that every API module (Qdrant
// vector store, OpenAI-compatible inference, web UI) plugs its routes into. It owns the things
// every route needs exactly once: binding, thread pool, body-size limit, timeouts, API keys, CORS,
// JSON parsing, access logging, and the mapping from etna::Error kinds to HTTP statuses.
//
// Route handlers receive cpp-httplib's Request/Response directly (so streaming responses such as
// server-sent events remain possible) and report failure by throwing etna::Error (or HttpError for
// an exact status); the server turns the exception into a JSON error body in the format of the
// API family that owns the path (see set_error_format).
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"

namespace etna::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                            // 0 = let the OS pick a free port (see HttpServer::port())
  int threads = 0;                            // worker threads; 0 = max(4, 2 * hardware threads)
  std::size_t max_body_bytes = 32u << 20;     // larger request bodies get 413
  std::chrono::milliseconds read_timeout{30000};   // longest wait for the next bytes of a request
  std::chrono::milliseconds write_timeout{30000};  // longest wait to send the next bytes of a response
  std::chrono::milliseconds idle_timeout{5000};    // keep-alive: idle connection is closed after this
  // A request head (request line and headers) must arrive whole within head_timeout of its first
  // byte (408 otherwise), within max_head_bytes (431) and max_headers header lines (431). Until
  // then the connection waits on the head gate's thread, not on a worker (head_gate.h).
  std::chrono::milliseconds head_timeout{10000};
  std::size_t max_head_bytes = 32u << 10;
  std::size_t max_headers = 100;
  // Bodies up to 64 KiB with a Content-Length are awaited with the head (same deadline). Larger
  // or chunked ones are read on a worker and must average min_body_rate bytes a second after
  // head_timeout's grace (408 otherwise), so a trickled body cannot hold a worker.
  std::size_t min_body_rate = 64u << 10;
  std::vector<std::string> api_keys;          // empty = no authentication
  std::vector<std::string> cors_origins;      // empty = no CORS headers at all; "*" = any origin
  // Host names (beyond localhost and IP addresses) that requests may name in their Host header;
  // "*" = any. Guards against DNS rebinding.
  std::vector<std::string> allowed_hosts;
  std::string version = "dev";                // Etna's version, reported by informational routes
};

// An error with an exact HTTP status, for the rare case where the ErrorKind mapping is not enough
// (e.g. Qdrant's 422 for semantically invalid bodies).
class HttpError : public Error {
 public:
  HttpError(int status, ErrorKind kind, const std::string& message) : Error(kind, message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// THE mapping from error kinds to HTTP statuses (invalid_argument 400, not_found 404, limit 413,
// conflict 409, unavailable 503, unsupported 501, corrupt/io/internal 500).
int http_status_for(ErrorKind kind);

// The status for an exception thrown by a handler (HttpError's own status, else by kind).
int http_status_for(const Error& error);

// Builds the JSON error body for one API family: (status, message) -> body.
using ErrorFormat = std::function<nlohmann::json(int status, const std::string& message)>;

// The default error body: {"error": {"message", "type", "code"}} (OpenAI's shape).
nlohmann::json default_error_body(int status, const std::string& message);

// Parses the request body as JSON (Content-Type, when given, must be application/json or
// */*+json: 415 otherwise). Throws etna::Error(invalid_argument) naming the position of the
// problem when it is malformed, or naming the limit when it nests deeper than kMaxJsonDepth (128)
// levels; an empty body is an error unless allow_empty (then `{}`).
nlohmann::json parse_json_body(const httplib::Request& req, bool allow_empty = false);

// Sends `body` as application/json with the given status.
void send_json(httplib::Response& res, const nlohmann::json& body, int status = 200);

// Starts a streamed response (server-sent events, NDJSON): status 200, `content_type` with
// "; charset=utf-8" appended, no caching or proxy buffering, and never compressed. A compressed
// stream sits in the compressor's buffer, so the client would not see tokens as they come and a
// client that left would go unnoticed. cpp-httplib 0.11 compresses any text/* body whose request
// accepts gzip or br, with no per-response switch, so this drops the request's Accept-Encoding.
// `provider` and `releaser` are as for Response::set_chunked_content_provider.
void start_stream(const httplib::Request& req, httplib::Response& res, const std::string& content_type,
                  httplib::ContentProviderWithoutLength provider,
                  httplib::ContentProviderResourceReleaser releaser = nullptr);

// Seconds since the server started handling the current request (on a handler's thread).
double request_elapsed_seconds();

// Constant-time string equality (time depends only on the lengths, never on where they differ).
bool constant_time_equals(const std::string& a, const std::string& b);

enum class Method { get, post, put, patch, del };

class HttpServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers a handler for `method` on a path regex (cpp-httplib syntax: captures land in
  // req.matches). Exceptions thrown by the handler become JSON errors. Register before start().
  void route(Method method, const std::string& pattern, Handler handler);

  // Error bodies for paths starting with `prefix` use `format` (longest prefix wins; the default
  // applies elsewhere). Also used for the server's own errors (404, 413, 401, malformed JSON).
  void set_error_format(const std::string& prefix, ErrorFormat format);

  // Paths (exact match, or prefix when ending in '/') that need no API key (e.g. UI assets).
  void add_public_path(const std::string& path);

  // Requests that need no API key although their path is not public: `pred` sees the request
  // before authentication (e.g. a browser's GET / for the web app's page, while "/" answered as
  // JSON still needs the key).
  void add_public_request(std::function<bool(const httplib::Request&)> pred);

  // Sends an error response in the format that owns req.path.
  void send_error(const httplib::Request& req, httplib::Response& res, int status, const std::string& message) const;

  // Binds the listening socket; throws etna::Error(io) when the address is unavailable.
  // After this, port() is the actual port.
  void bind();

  // Serves until stop() (or a signal, see run_until_signal). Requires bind(). In-flight requests
  // complete before it returns.
  void listen();

  // Binds (if not yet bound) and serves until SIGINT or SIGTERM, then shuts down gracefully.
  // REQUIRES: SIGINT/SIGTERM blocked in every thread (call block_shutdown_signals() first thing
  // in main, before any thread starts), so that only the waiting thread receives them.
  void run_until_signal();

  // Blocks SIGINT and SIGTERM in the calling thread (threads started later inherit the mask) and
  // ignores SIGPIPE.
  static void block_shutdown_signals();

  // Stops accepting connections and lets listen() return. Safe from any thread.
  void stop();

  // Blocks until the server accepts connections (or stop() was called).
  void wait_until_ready() const;

  int port() const { return port_; }
  const std::string& host() const { return options_.host; }
  const ServerOptions& options() const { return options_; }

  // "http://HOST:PORT" (IPv6 hosts bracketed).
  std::string url() const;

  // Serves `bytes` as if one client had sent them on a connection and closed it: every complete
  // request in them goes through the head limits, the hooks and the router on this thread, and
  // the responses come back as bytes. For tests and the fuzz_http target; needs no bind().
  std::string serve_bytes(const std::string& bytes);

 private:
  const ErrorFormat& format_for(const std::string& path) const;
  bool authorized(const httplib::Request& req) const;
  bool is_public(const std::string& path) const;
  std::string allowed_origin(const httplib::Request& req) const;
  // Why a request is refused as cross-site (Host not naming this server, or a state-changing
  // request from a foreign Origin); "" when it is fine.
  std::string cross_site_refusal(const httplib::Request& req) const;
  void install_hooks();

  ServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::vector<std::pair<std::string, ErrorFormat>> error_formats_;
  ErrorFormat default_format_;
  std::vector<std::string> public_paths_;
  std::vector<std::function<bool(const httplib::Request&)>> public_requests_;
  int port_ = -1;
  std::atomic<bool> stopping_{false};
};

}  // namespace etna::server
