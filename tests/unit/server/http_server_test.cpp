// HttpServer: limits, JSON errors, authentication, CORS, slow clients, shutdown.
#include "etna/server/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "support/raw_socket.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using test::RawSocket;

using nlohmann::json;

// Runs an HttpServer on a free loopback port in a background thread for one test.
class Running {
 public:
  explicit Running(ServerOptions opt, const std::function<void(HttpServer&)>& setup = {}) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.idle_timeout = std::chrono::milliseconds(1000);  // shutdown waits for idle keep-alive clients
    server_ = std::make_unique<HttpServer>(opt);
    server_->route(Method::post, "/echo", [](const httplib::Request& req, httplib::Response& res) {
      send_json(res, {{"bytes", req.body.size()}});
    });
    server_->route(Method::post, "/json", [](const httplib::Request& req, httplib::Response& res) {
      json body = parse_json_body(req);
      send_json(res, {{"got", body}});
    });
    server_->route(Method::get, "/hello", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"hello", "world"}});
    });
    server_->route(Method::get, "/missing", [](const httplib::Request&, httplib::Response&) {
      fail(ErrorKind::not_found, "the thing is not here");
    });
    server_->route(Method::get, "/conflict", [](const httplib::Request&, httplib::Response&) {
      fail(ErrorKind::conflict, "already there");
    });
    server_->route(Method::get, "/teapot", [](const httplib::Request&, httplib::Response&) {
      throw HttpError(422, ErrorKind::invalid_argument, "exact status");
    });
    server_->route(Method::get, "/boom", [](const httplib::Request&, httplib::Response&) {
      throw std::runtime_error("unexpected");
    });
    server_->route(Method::get, "/typed", [](const httplib::Request&, httplib::Response&) {
      json j = "text";
      (void)j.get<int>();  // nlohmann type_error: a client sent the wrong type
    });
    if (setup) setup(*server_);
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~Running() {
    server_->stop();
    thread_.join();
  }
  int port() const { return server_->port(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(30, 0);
    c.set_connection_timeout(30, 0);
    return c;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

json body_of(const httplib::Result& r) { return json::parse(r->body); }

TEST(HttpServer, PortZeroPicksAFreePortAndServes) {
  Running s({});
  EXPECT_GT(s.port(), 0);
  auto r = s.client().Get("/hello");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body_of(r)["hello"], "world");
  EXPECT_NE(r->get_header_value("Content-Type").find("application/json"), std::string::npos);
}

TEST(HttpServer, BodyOverTheLimitGets413WithJsonError) {
  ServerOptions opt;
  opt.max_body_bytes = 1024;
  Running s(opt);
  auto c = s.client();
  auto big = c.Post("/echo", std::string(4096, 'x'), "application/octet-stream");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  json err = body_of(big);
  EXPECT_NE(err["error"]["message"].get<std::string>().find("limit of 1024 bytes"), std::string::npos) << big->body;
  // Exactly at the limit is fine, and the server keeps serving.
  auto ok = s.client().Post("/echo", std::string(1024, 'x'), "application/octet-stream");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(body_of(ok)["bytes"], 1024);
}

TEST(HttpServer, MalformedJsonGets400NamingTheProblem) {
  Running s({});
  auto r = s.client().Post("/json", "{\"a\": [1, 2,", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  std::string msg = body_of(r)["error"]["message"];
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;

  auto nan = s.client().Post("/json", "{\"v\": [NaN]}", "application/json");
  ASSERT_TRUE(nan);
  EXPECT_EQ(nan->status, 400);

  auto empty = s.client().Post("/json", "", "application/json");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 400);
  EXPECT_NE(body_of(empty)["error"]["message"].get<std::string>().find("empty"), std::string::npos);

  auto good = s.client().Post("/json", "{\"a\": 1}", "application/json");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  EXPECT_EQ(body_of(good)["got"]["a"], 1);
}

// A number too large for a double is nlohmann's out_of_range, not parse_error: still a 400.
TEST(HttpServer, OutOfRangeNumberIs400) {
  Running s({});
  auto r = s.client().Post("/json", "{\"x\": 51E1111111111}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("malformed JSON"), std::string::npos) << r->body;
}

TEST(HttpServer, ErrorKindsMapToStatusesInOnePlace) {
  EXPECT_EQ(http_status_for(ErrorKind::invalid_argument), 400);
  EXPECT_EQ(http_status_for(ErrorKind::not_found), 404);
  EXPECT_EQ(http_status_for(ErrorKind::conflict), 409);
  EXPECT_EQ(http_status_for(ErrorKind::limit), 413);
  EXPECT_EQ(http_status_for(ErrorKind::unavailable), 503);
  EXPECT_EQ(http_status_for(ErrorKind::internal), 500);
  Running s({});
  auto c = s.client();
  auto nf = c.Get("/missing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_EQ(body_of(nf)["error"]["message"], "the thing is not here");
  EXPECT_EQ(c.Get("/conflict")->status, 409);
  EXPECT_EQ(c.Get("/teapot")->status, 422);
  auto boom = c.Get("/boom");
  EXPECT_EQ(boom->status, 500);
  EXPECT_NE(boom->body.find("unexpected"), std::string::npos);
  EXPECT_EQ(c.Get("/typed")->status, 400);
  auto noroute = c.Get("/no/such/route");
  ASSERT_TRUE(noroute);
  EXPECT_EQ(noroute->status, 404);
  EXPECT_NE(body_of(noroute)["error"]["message"].get<std::string>().find("/no/such/route"), std::string::npos);
}

TEST(HttpServer, ErrorFormatFollowsTheLongestPathPrefix) {
  Running s({}, [](HttpServer& h) {
    h.set_error_format("/q", [](int, const std::string& m) { return json{{"status", {{"error", m}}}}; });
    h.route(Method::get, "/q/missing", [](const httplib::Request&, httplib::Response&) {
      fail(ErrorKind::not_found, "no q");
    });
  });
  auto q = s.client().Get("/q/missing");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->status, 404);
  EXPECT_EQ(body_of(q)["status"]["error"], "no q");
  auto qroute = s.client().Get("/q/unknown-route");
  EXPECT_TRUE(body_of(qroute)["status"].contains("error"));
  auto other = s.client().Get("/missing");
  EXPECT_TRUE(body_of(other).contains("error"));
}

TEST(HttpServer, ApiKeyRequiredWhenConfigured) {
  ServerOptions opt;
  opt.api_keys = {"s3cret-key", "second-key"};
  Running s(opt, [](HttpServer& h) {
    h.add_public_path("/hello");
    h.route(Method::get, "/private", [](const httplib::Request&, httplib::Response& res) { send_json(res, {{"ok", true}}); });
  });
  auto c = s.client();
  auto none = c.Get("/private");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(body_of(none)["error"]["message"].get<std::string>().find("API key"), std::string::npos);
  EXPECT_EQ(c.Get("/private", {{"Authorization", "Bearer wrong"}})->status, 401);
  EXPECT_EQ(c.Get("/private", {{"Authorization", "Bearer s3cret-ke"}})->status, 401);
  EXPECT_EQ(c.Get("/private", {{"Authorization", "Bearer s3cret-key2"}})->status, 401);
  EXPECT_EQ(s.client().Get("/private", {{"Authorization", "Bearer s3cret-key"}})->status, 200);
  EXPECT_EQ(s.client().Get("/private", {{"api-key", "second-key"}})->status, 200);
  EXPECT_EQ(s.client().Get("/hello")->status, 200);  // public path
  // A rejected request with a body does not confuse the server.
  auto post = s.client().Post("/echo", std::string(1000, 'x'), "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 401);
  EXPECT_EQ(s.client().Post("/echo", {{"api-key", "s3cret-key"}}, "abc", "text/plain")->status, 200);
}

TEST(ConstantTimeEquals, ComparesWholeStrings) {
  EXPECT_TRUE(constant_time_equals("abc", "abc"));
  EXPECT_TRUE(constant_time_equals("", ""));
  EXPECT_FALSE(constant_time_equals("abc", "abd"));
  EXPECT_FALSE(constant_time_equals("abc", "ab"));
  EXPECT_FALSE(constant_time_equals("ab", "abc"));
  EXPECT_FALSE(constant_time_equals("", "a"));
  EXPECT_FALSE(constant_time_equals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(HttpServer, NoCorsHeadersUnlessConfigured) {
  Running s({});
  auto r = s.client().Get("/hello", {{"Origin", "http://evil.example"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->has_header("Access-Control-Allow-Origin"));
  auto pre = s.client().Options("/hello", {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "GET"}});
  ASSERT_TRUE(pre);
  EXPECT_FALSE(pre->has_header("Access-Control-Allow-Origin"));
  EXPECT_FALSE(pre->has_header("Access-Control-Allow-Methods"));
}

TEST(HttpServer, CorsHeadersForConfiguredOriginsOnly) {
  ServerOptions opt;
  opt.cors_origins = {"http://app.example"};
  opt.api_keys = {"k"};
  Running s(opt);
  auto ok = s.client().Get("/hello", {{"Origin", "http://app.example"}, {"api-key", "k"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Access-Control-Allow-Origin"), "http://app.example");
  auto other = s.client().Get("/hello", {{"Origin", "http://evil.example"}, {"api-key", "k"}});
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->has_header("Access-Control-Allow-Origin"));
  // Preflight: answered without credentials.
  auto pre = s.client().Options("/echo", {{"Origin", "http://app.example"},
                                          {"Access-Control-Request-Method", "POST"},
                                          {"Access-Control-Request-Headers", "content-type, api-key"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "http://app.example");
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Headers"), "content-type, api-key");
  // Errors carry the header too, so the browser can read them.
  auto denied = s.client().Get("/hello", {{"Origin", "http://app.example"}});
  EXPECT_EQ(denied->status, 401);
  EXPECT_EQ(denied->get_header_value("Access-Control-Allow-Origin"), "http://app.example");

  ServerOptions any;
  any.cors_origins = {"*"};
  Running s2(any);
  EXPECT_EQ(s2.client().Get("/hello", {{"Origin", "http://x.example"}})->get_header_value("Access-Control-Allow-Origin"), "*");
}

TEST(HttpServer, SlowBodyClientTimesOutAndServerKeepsServing) {
  ServerOptions opt;
  opt.threads = 1;  // the slow client holds the only worker until it is dropped
  opt.read_timeout = std::chrono::milliseconds(300);
  Running s(opt);
  RawSocket slow(s.port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send_text("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly a few bytes"));
  // A well-behaved client arriving meanwhile is served once the slow one is dropped.
  auto good = std::async(std::launch::async, [&] { return s.client().Get("/hello"); });
  auto closed = slow.read_until_closed();
  ASSERT_TRUE(closed.has_value()) << "the server never dropped the stalled client";
  EXPECT_EQ(closed->find("200 OK"), std::string::npos) << *closed;
  auto r = good.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServer, SlowHeadersClientTimesOut) {
  ServerOptions opt;
  opt.threads = 1;
  opt.read_timeout = std::chrono::milliseconds(300);
  Running s(opt);
  RawSocket slow(s.port());
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send_text("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
  auto closed = slow.read_until_closed();
  ASSERT_TRUE(closed.has_value()) << "the server never dropped the stalled client";
  auto r = s.client().Get("/hello");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Streams carry their charset and are never compressed, even when the client accepts gzip: the
// first event must reach the client while the handler is still producing (a compressor would hold
// it back), and non-ASCII text must arrive as the UTF-8 bytes sent.
TEST(HttpServer, StreamsAreUtf8AndUncompressedEvenWhenGzipIsAccepted) {
  auto first_seen = std::make_shared<std::promise<void>>();
  std::shared_future<void> seen = first_seen->get_future().share();
  const std::string quote = "\xE2\x80\x9C" "curly" "\xE2\x80\x9D";  // “curly”
  Running s({}, [&](HttpServer& server) {
    server.route(Method::get, "/stream", [seen, quote](const httplib::Request& req, httplib::Response& res) {
      start_stream(req, res, "text/event-stream", [seen, quote, step = 0](size_t, httplib::DataSink& sink) mutable {
        const std::string event = "data: " + quote + std::to_string(step) + "\n\n";
        if (!sink.write(event.data(), event.size())) return false;
        // Guard against hanging, not a timing assertion: the client reads the first event first.
        if (step == 0 && seen.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
          const std::string late = "data: first event was not delivered\n\n";
          sink.write(late.data(), late.size());
        }
        if (++step == 3) sink.done();
        return true;
      });
    });
  });
  RawSocket sock(s.port());
  ASSERT_TRUE(sock.connected());
  ASSERT_TRUE(sock.send_text("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: close\r\n\r\n"));
  // Read until the first event's bytes are in, then let the handler go on.
  std::string got;
  char buf[4096];
  while (got.find(quote + "0") == std::string::npos) {
    ssize_t n = ::recv(sock.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(got.find(quote + "0"), std::string::npos) << "the first event did not arrive while streaming:\n" << got;
  first_seen->set_value();
  auto rest = sock.read_until_closed();
  ASSERT_TRUE(rest.has_value());
  got += *rest;
  EXPECT_NE(got.find("Content-Type: text/event-stream; charset=utf-8\r\n"), std::string::npos) << got;
  EXPECT_EQ(got.find("Content-Encoding"), std::string::npos) << got;
  EXPECT_NE(got.find("Cache-Control: no-cache"), std::string::npos);
  EXPECT_NE(got.find("data: " + quote + "2"), std::string::npos) << got;
  EXPECT_EQ(got.find("not delivered"), std::string::npos) << got;
}

TEST(HttpServer, StopEndsListenAndBindErrorsAreClear) {
  ServerOptions opt;
  opt.host = "127.0.0.1";
  opt.port = 0;
  HttpServer a(opt);
  a.bind();
  std::thread t([&] { a.listen(); });
  a.wait_until_ready();
  ServerOptions clash = opt;
  clash.port = a.port();
  HttpServer b(clash);
  bool threw = false;
  try {
    b.bind();
  } catch (const Error& e) {
    threw = true;
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find(std::to_string(a.port())), std::string::npos);
  }
  EXPECT_TRUE(threw) << "binding a port in use succeeded";
  a.stop();
  t.join();  // returns: stop() ended listen()
  ServerOptions bad;
  bad.port = 70000;
  EXPECT_THROW(HttpServer{bad}, Error);
}

}  // namespace
}  // namespace etna::server
