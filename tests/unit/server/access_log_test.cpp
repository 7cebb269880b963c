// `etna serve` writes one access-log line per request on stderr (method, path, status, tokens,
// time) unless --quiet (issue 16, item 23). Drives the real binary on 127.0.0.1, port 0.
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "support/serve_process.h"
#include "support/test_support.h"

namespace etna::server {
namespace {

using test::ServeProcess;

std::string stop_and_read_stderr(ServeProcess& s) {
  s.stop();
  return s.stderr_text();
}

TEST(AccessLog, OneLinePerRequestWithStatusTokensAndTime) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  ServeProcess s(dir.path(), dir.path() / "data", {"-m", model.string()});
  ASSERT_GT(s.port(), 0) << s.stop();
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(300, 0);
  // The server listens while the model loads (/health answers 503 until then).
  for (int i = 0; i < 6000; ++i) {
    auto h = c.Get("/health");
    if (h && h->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto r = c.Post("/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})",
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(c.Get("/collections")->status, 200);
  EXPECT_EQ(c.Get("/no/such/route")->status, 404);
  EXPECT_GT(r->body.size(), 0u);
  const std::string err = stop_and_read_stderr(s);
  EXPECT_TRUE(std::regex_search(err, std::regex("POST /v1/completions 200 tokens [0-9]+\\+4 [0-9.]+ ms"))) << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("GET /collections 200 tokens - [0-9.]+ ms"))) << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("GET /no/such/route 404 tokens - "))) << err;
}

TEST(AccessLog, QuietSilencesIt) {
  test::TempDir dir;
  ServeProcess s(dir.path(), dir.path() / "data", {"--no-model", "--quiet"});
  ASSERT_GT(s.port(), 0) << s.stop();
  httplib::Client c("127.0.0.1", s.port());
  ASSERT_EQ(c.Get("/collections")->status, 200);
  const std::string err = stop_and_read_stderr(s);
  EXPECT_EQ(err.find("GET /collections"), std::string::npos) << err;
}

}  // namespace
}  // namespace etna::server
