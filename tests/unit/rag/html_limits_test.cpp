// HTML from users is parsed by gumbo under a memory budget and walked without recursion: tag soup
// that makes an HTML5 parser's work explode, or nesting a recursive walk cannot survive, skips
// that one file with its reason while the other files ingest.
#include <sys/resource.h>

#include <fstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/rag/ingest.h"
#include "etna/rag/loader.h"
#include "support/test_support.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// load_html's error message, or "" when it loaded.
std::string html_error(const std::string& html) {
  try {
    load_html(html);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::limit) << e.what();
    return e.what();
  }
  return "";
}

TEST(HtmlLimits, DeepNestingIsWalkedOrRefusedNeverACrash) {
  // 100 000 nested <div>: the recursive walk overflowed the stack.
  std::string e = html_error(repeat("<div>", 100000) + "deep text" + repeat("</div>", 100000));
  EXPECT_NE(e.find("nest"), std::string::npos) << e;
  // Moderately deep documents still load.
  Document d = load_html(repeat("<div>", 200) + "reachable" + repeat("</div>", 200));
  EXPECT_NE(d.text.find("reachable"), std::string::npos);
}

TEST(HtmlLimits, FormattingElementExplosionHitsTheMemoryBudget) {
  // 20 000 unclosed <b> tags in 60 KB: an HTML5 parser reopens every open formatting element for
  // each new paragraph, gigabytes of nodes. The address-space cap turns a regression into a
  // failure instead of a machine-wide memory exhaustion.
  rlimit old{};
  getrlimit(RLIMIT_AS, &old);
  rlimit cap{std::min<rlim_t>(old.rlim_cur, rlim_t(3) << 30), old.rlim_max};
  setrlimit(RLIMIT_AS, &cap);
  std::string e;
  try {
    e = html_error(repeat("<b>", 20000));
  } catch (const std::bad_alloc&) {
    e = "bad_alloc";
  }
  setrlimit(RLIMIT_AS, &old);
  EXPECT_TRUE(e.find("memory") != std::string::npos || e.find("nest") != std::string::npos) << e;
  // Formatting elements reopened per paragraph stay within the budget for ordinary sizes.
  EXPECT_EQ(html_error(repeat("<b>x<p>", 500)), "");
}

TEST(HtmlLimits, FileOverTheLimitsIsSkippedWithItsReasonOthersIngest) {
  etna::test::TempDir tmp;
  fs::path docs = tmp / "docs";
  fs::create_directories(docs);
  std::ofstream(docs / "bomb.html") << repeat("<div>", 100000);
  std::ofstream(docs / "good.html") << "<p>alpha bravo</p>";
  IngestReport r = ingest(tmp / "data" / "documents" / "t", {docs}, IngestOptions{});
  EXPECT_EQ(r.files_new, 1u);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].path.find("bomb.html"), std::string::npos);
  EXPECT_NE(r.skipped[0].reason.find("nest"), std::string::npos) << r.skipped[0].reason;
}

}  // namespace
}  // namespace etna::rag
