// Issue 16 item 4: slow clients (slowloris) and header floods against the real HttpServer, over
// loopback with raw sockets. Workers must only ever see complete request heads, so dribbling
// clients cannot hold the pool, and a head has size, count and time limits.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "etna/server/http_server.h"
#include "support/raw_socket.h"

namespace etna::server {
namespace {

using test::connect_loopback;
using test::read_all;
using test::send_all;

class Served {
 public:
  explicit Served(ServerOptions opt) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<HttpServer>(opt);
    server_->route(Method::get, "/health", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"status", "ok"}});
    });
    server_->route(Method::post, "/echo", [](const httplib::Request& req, httplib::Response& res) {
      send_json(res, {{"bytes", req.body.size()}});
    });
    server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
    server_->wait_until_ready();
  }
  ~Served() {
    server_->stop();
    thread_.join();
  }
  int port() const { return server_->port(); }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

TEST(SlowClients, DribblingHeadersDoNotBlockOtherRequests) {
  ServerOptions opt;
  opt.threads = 4;  // far fewer workers than slow clients
  Served s(opt);
  std::atomic<bool> done{false};
  std::vector<std::thread> slow;
  for (int i = 0; i < 24; ++i) {
    slow.emplace_back([&, i] {
      int fd = connect_loopback(s.port(), 60);
      if (fd < 0) return;
      send_all(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      // One header line every 100 ms until the check below is over (or the 40 s guard).
      for (int k = 0; k < 400 && !done; ++k) {
        if (!send_all(fd, "X-Slow-" + std::to_string(i) + "-" + std::to_string(k) + ": 1\r\n")) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ::close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let them all start dribbling
  httplib::Client c("127.0.0.1", s.port());
  c.set_connection_timeout(20, 0);
  c.set_read_timeout(20, 0);  // a generous deadline: before the fix no answer came at all
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = c.Get("/health");
    if (r && r->status == 200) ++answered;
  }
  done = true;
  for (auto& t : slow) t.join();
  EXPECT_EQ(answered, 3) << "/health did not answer while slow clients dribbled headers";
}

TEST(SlowClients, HeaderFloodIsRefusedWithBoundedMemory) {
  Served s(ServerOptions{});
  const long before = rss_kib();
  int fd = connect_loopback(s.port(), 60);
  ASSERT_GE(fd, 0);
  // 1.5 M small headers (about 15 MB) in one request head.
  std::string block;
  for (int i = 0; i < 1000; ++i) block += "X-F: 1234\r\n";
  std::atomic<std::size_t> sent{0};
  const std::size_t total = 1500 * block.size();
  std::thread sender([&] {
    if (!send_all(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")) return;
    for (int i = 0; i < 1500; ++i) {
      if (!send_all(fd, block)) return;
      sent += block.size();
    }
    send_all(fd, "\r\n");
  });
  std::string reply = read_all(fd);
  sender.join();
  ::close(fd);
  const long grown_mib = (rss_kib() - before) / 1024;
  EXPECT_LT(sent.load(), total) << "the whole flood was read; reply: " << reply.substr(0, 200);
  if (!reply.empty()) {
    EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 431"), 0) << reply.substr(0, 300);
  }
  EXPECT_LT(grown_mib, 64) << "the server grew by " << grown_mib << " MiB";
  // And it still serves.
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(20, 0);
  auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(SlowClients, TooManyHeadersIs431) {
  Served s(ServerOptions{});
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  std::string head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 200; ++i) head += "X-" + std::to_string(i) + ": 1\r\n";
  send_all(fd, head + "\r\n");
  std::string reply = read_all(fd);
  ::close(fd);
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 431"), 0) << reply.substr(0, 300);
  EXPECT_NE(reply.find("100 headers"), std::string::npos) << reply;
}

TEST(SlowClients, HeadThatNeverEndsGets408) {
  ServerOptions opt;
  opt.head_timeout = std::chrono::milliseconds(300);
  Served s(opt);
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  std::string reply;
  // Keep dribbling: each line arrives in time for a per-read timeout, never for the head's deadline.
  std::thread dribble([&] {
    for (int k = 0; k < 300; ++k) {
      if (!send_all(fd, "X-" + std::to_string(k) + ": 1\r\n")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  reply = read_all(fd);
  ::shutdown(fd, SHUT_RDWR);
  dribble.join();
  ::close(fd);
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 408"), 0) << reply.substr(0, 300);
}

// A slow body, too: small bodies (Content-Length up to 64 KiB) are awaited in the gate, so 24
// clients trickling theirs hold none of the 4 workers.
TEST(SlowClients, TrickledSmallBodiesDoNotBlockOtherRequests) {
  ServerOptions opt;
  opt.threads = 4;
  Served s(opt);
  std::atomic<bool> done{false};
  std::vector<std::thread> slow;
  for (int i = 0; i < 24; ++i) {
    slow.emplace_back([&] {
      int fd = connect_loopback(s.port(), 60);
      if (fd < 0) return;
      send_all(fd, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n");
      for (int k = 0; k < 400 && !done; ++k) {  // a byte every 100 ms
        if (!send_all(fd, " ")) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ::close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(20, 0);  // before the fix the 4 workers were all held: no answer came
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = c.Post("/echo", "{\"a\": 1}", "application/json");
    if (r && r->status == 200 && r->body.find("\"bytes\":8") != std::string::npos) ++answered;
  }
  done = true;
  for (auto& t : slow) t.join();
  EXPECT_EQ(answered, 3) << "/echo did not answer while slow clients trickled bodies";
}

TEST(SlowClients, SmallBodyThatNeverArrivesGets408) {
  ServerOptions opt;
  opt.head_timeout = std::chrono::milliseconds(300);
  Served s(opt);
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  send_all(fd, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789");
  std::string reply = read_all(fd);
  ::close(fd);
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 408"), 0) << reply.substr(0, 300);
  EXPECT_NE(reply.find("request body did not arrive"), std::string::npos) << reply;
}

// A large body is read on a worker, which lets it go once the body falls below the minimum rate
// (before, each byte restarted the 30 s read timeout: a worker could be held for hours).
TEST(SlowClients, LargeBodyBelowTheMinimumRateGets408) {
  ServerOptions opt;
  opt.head_timeout = std::chrono::milliseconds(300);  // the grace before the rate counts
  opt.min_body_rate = 64 * 1024;
  Served s(opt);
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  send_all(fd, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
  std::atomic<bool> stop{false};
  std::thread dribble([&] {
    for (int k = 0; k < 600 && !stop; ++k) {  // 100 bytes every 50 ms: 2 KB/s
      if (!send_all(fd, std::string(100, ' '))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  std::string reply = read_all(fd);
  stop = true;
  ::shutdown(fd, SHUT_RDWR);
  dribble.join();
  ::close(fd);
  EXPECT_EQ(reply.compare(0, 12, "HTTP/1.1 408"), 0) << reply.substr(0, 300);
  EXPECT_NE(reply.find("slower than 64 KiB/s"), std::string::npos) << reply;
}

// Bodies that arrive at a normal pace still work: small ones through the gate, large ones on the
// worker, and a client that waits for "100 Continue" before its body is not kept waiting.
TEST(SlowClients, BodiesOfEverySizeAreRead) {
  Served s(ServerOptions{});
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(20, 0);
  for (std::size_t size : {std::size_t{0}, std::size_t{10}, std::size_t{64 * 1024}, std::size_t{64 * 1024 + 1},
                           std::size_t{3 << 20}}) {
    const std::string body = size == 0 ? "" : "\"" + std::string(size - std::min<std::size_t>(size, 2), 'x') + "\"";
    auto r = c.Post("/echo", body.substr(0, size), "application/json");
    ASSERT_TRUE(r) << size;
    EXPECT_EQ(r->status, 200) << size;
    EXPECT_NE(r->body.find("\"bytes\":" + std::to_string(size)), std::string::npos) << size << " " << r->body;
  }
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  send_all(fd, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
               "Content-Length: 2\r\nConnection: close\r\n\r\n");
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)).compare(0, 12, "HTTP/1.1 100"), 0);
  send_all(fd, "{}");
  const std::string reply = read_all(fd);
  ::close(fd);
  EXPECT_NE(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
  EXPECT_NE(reply.find("\"bytes\":2"), std::string::npos) << reply;
}

// Kept-alive and pipelined requests still work through the gate (and on a worker's read-ahead).
TEST(SlowClients, KeepAliveAndPipelinedRequestsAreAnswered) {
  Served s(ServerOptions{});
  httplib::Client c("127.0.0.1", s.port());
  c.set_keep_alive(true);
  c.set_read_timeout(20, 0);
  for (int i = 0; i < 5; ++i) {
    auto r = c.Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  int fd = connect_loopback(s.port(), 30);
  ASSERT_GE(fd, 0);
  const std::string one = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  send_all(fd, one + one + "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::string reply = read_all(fd);
  ::close(fd);
  std::size_t count = 0;
  for (std::size_t p = reply.find("HTTP/1.1 200"); p != std::string::npos; p = reply.find("HTTP/1.1 200", p + 1)) ++count;
  EXPECT_EQ(count, 3u) << reply;
}

}  // namespace
}  // namespace etna::server

namespace etna::server {
namespace {

// serve_bytes (the fuzz_http target's entry) runs the same head limits and router in memory.
TEST(ServeBytes, AnswersPipelinedRequestsAndAppliesTheHeadLimits) {
  HttpServer server(ServerOptions{});
  server.route(Method::get, "/health", [](const httplib::Request&, httplib::Response& res) { send_json(res, {{"status", "ok"}}); });
  const std::string one = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::string out = server.serve_bytes(one + one);
  std::size_t count = 0;
  for (std::size_t p = out.find("HTTP/1.1 200"); p != std::string::npos; p = out.find("HTTP/1.1 200", p + 1)) ++count;
  EXPECT_EQ(count, 2u) << out;
  std::string many = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 150; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(server.serve_bytes(many + "\r\n").compare(0, 12, "HTTP/1.1 431"), 0);
  EXPECT_EQ(server.serve_bytes("GET /hea"), "");  // an incomplete head gets no answer
  EXPECT_EQ(server.serve_bytes("GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").compare(0, 12, "HTTP/1.1 404"), 0);
}

}  // namespace
}  // namespace etna::server
