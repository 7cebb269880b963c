// Hybrid retrieval on real text with a vector side that knows nothing: the licence texts Debian
// installs in /usr/share/common-licenses, embedded by ../shared's tiny-bert (random weights), and
// twelve questions whose answering file and passage are known. Score-aware fusion must keep
// BM25's good hits in the top k (issue 16, item 18): with reciprocal rank fusion the random
// vector ranking took hit@1 from 0.667 (BM25) to 0.167 on these questions.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kQuestions = R"({"question": "may I use the licensor's trademarks and product names under the Apache License", "file": "Apache-2.0", "span": "does not grant permission to use the trade"}
{"question": "what happens to my Apache patent license if I sue someone for patent infringement", "file": "Apache-2.0", "span": "institute patent litigation"}
{"question": "what counts as a reasonable copying fee in the Artistic license", "file": "Artistic", "span": "Reasonable copying fee"}
{"question": "which file formats are suitable for Transparent copies of a document", "files": ["GFDL-1.2", "GFDL-1.3", "GFDL"], "span": "suitable formats for Transparent copies"}
{"question": "can the name of the university be used to endorse or promote derived products", "file": "BSD", "span": "endorse or promote products"}
{"question": "who may publish revised versions of the Mozilla Public License 1.1", "file": "MPL-1.1", "span": "Netscape Communications Corporation"}
{"question": "what is a Combined Work produced by linking an application with the library", "files": ["LGPL-3", "LGPL"], "span": "is a work produced by combining or linking"}
{"question": "what if a court judgment or patent allegation imposes conditions that contradict the license", "files": ["GPL-2", "LGPL-2", "LGPL-2.1"], "span": "court judgment"}
{"question": "does the GPL count as an effective technological measure under anti-circumvention law", "files": ["GPL-3", "GPL"], "span": "technological measure"}
{"question": "what is Installation Information for a User Product", "files": ["GPL-3", "GPL"], "span": "Installation Information\" for a User Product"}
{"question": "how do I waive all copyright and related rights in a work as the Affirmer", "file": "CC0-1.0", "span": "Waiver"}
{"question": "how do contributors submit contributions to the work under the Apache license", "file": "Apache-2.0", "span": "Submission of Contributions"}
)";

TEST(HybridFusion, ARandomVectorModelDoesNotPushBm25HitsOutOnRealText) {
  ETNA_REQUIRE_SHARED(model, "models/tiny-bert-bge-f32.gguf");
  const fs::path corpus = "/usr/share/common-licenses";
  if (!fs::exists(corpus / "GPL-3") || !fs::exists(corpus / "Apache-2.0"))
    GTEST_SKIP() << "skipped: " << corpus << " not found (Debian's base-files installs it)";
  test::TempDir dir;
  {
    std::ofstream q(dir / "questions.jsonl");
    q << kQuestions;
  }
  const std::string etna = test::etna_binary().string(), data = " --data " + (dir / "data").string();
  std::string out;
  ASSERT_EQ(test::run_command(etna + " ingest " + corpus.string() + " --collection lic --embedding-model " +
                                  model.string() + data,
                              &out, true),
            0)
      << out;
  ASSERT_EQ(test::run_command(etna + " eval rag --json --no-save --collection lic --questions " +
                                  (dir / "questions.jsonl").string() + data,
                              &out),
            0)
      << out;
  const json j = json::parse(out);
  std::map<std::string, json> modes;
  for (const json& m : j["modes"]) modes[m["mode"].get<std::string>()] = m;
  ASSERT_TRUE(modes.count("bm25") && modes.count("hybrid") && modes.count("vectors")) << out;
  // BM25 finds most of these passages; the random vectors find none of them.
  EXPECT_GE(modes["bm25"]["hit@1"].get<double>(), 0.6) << out;
  EXPECT_LE(modes["vectors"]["hit@5"].get<double>(), 0.1) << out;
  for (const char* k : {"hit@1", "hit@3", "hit@5"})
    EXPECT_GE(modes["hybrid"][k].get<double>(), modes["bm25"][k].get<double>()) << k << ": " << out;
  EXPECT_GE(modes["hybrid"]["mrr@10"].get<double>(), modes["bm25"]["mrr@10"].get<double>() - 0.05) << out;
}

// `make run` must not turn on an embedding model that is not a real one: the only one ../shared
// has (tiny-bert) has random weights. With EMBEDDING_MODEL given, it is passed on.
TEST(MakeRun, UsesBm25OnlyUnlessAnEmbeddingModelIsGiven) {
  const std::string make = "make --no-print-directory -n -C '" + std::string(ETNA_SOURCE_DIR) + "' run";
  std::string out;
  ASSERT_EQ(test::run_command(make + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("etna serve"), std::string::npos) << out;
  EXPECT_EQ(out.find("--embedding-model"), std::string::npos) << out;
  EXPECT_EQ(out.find("tiny-bert"), std::string::npos) << out;
  ASSERT_EQ(test::run_command(make + " EMBEDDING_MODEL=/models/bge-small-en-v1.5-q8_0.gguf 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("--embedding-model /models/bge-small-en-v1.5-q8_0.gguf"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::rag
