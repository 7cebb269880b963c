// `etna ask` through the binary: ingest a folder the test writes, ask with stories260K (a tiny
// story model, so the answer's content is meaningless: the test checks structure, retrieval and
// determinism), and the errors a user meets first.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::rag {
namespace {

namespace fs = std::filesystem;
using etna::test::TempDir;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int etna(const std::string& args, std::string* out, bool merge = false) {
  const auto bin = etna::test::etna_binary();
  if (!fs::exists(bin)) {
    ADD_FAILURE() << "the etna binary is not built: " << bin;
    return -1;
  }
  return etna::test::run_command(quote(bin.string()) + " " + args, out, merge);
}

void write_file(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << s;
}

class AskCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(docs_ / "garden.txt",
               "The garden gate is painted green. Roses grow along the south wall.\n\n"
               "Tomatoes are watered every morning before the sun is high.\n");
    write_file(docs_ / "kitchen.md", "# Kitchen\n\nThe kettle sits on the left of the stove.\n");
    std::string out;
    ASSERT_EQ(etna("ingest " + quote(docs_.path().string()) + " --collection home --data " + quote(data_.path().string()), &out,
                   true),
              0)
        << out;
  }
  std::string data_arg() const { return " --collection home --data " + quote(data_.path().string()); }
  TempDir docs_, data_;
};

TEST_F(AskCli, JsonHasAnswerCitationsRetrievedAndIsDeterministic) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  const std::string cmd = "ask " + quote("When are the tomatoes watered?") + data_arg() + " -m " +
                          quote(model.string()) + " --json -n 24 -k 2";
  std::string out1, out2;
  ASSERT_EQ(etna(cmd, &out1), 0) << out1;
  ASSERT_EQ(etna(cmd, &out2), 0) << out2;
  const auto j = nlohmann::json::parse(out1);
  ASSERT_TRUE(j["answer"].is_string());
  EXPECT_FALSE(j["answer"].get<std::string>().empty());
  ASSERT_TRUE(j["citations"].is_array());
  ASSERT_TRUE(j["unmatched"].is_array());
  ASSERT_TRUE(j["retrieved"].is_array());
  ASSERT_FALSE(j["retrieved"].empty());
  const auto& top = j["retrieved"][0];
  EXPECT_EQ(top["n"], 1);
  EXPECT_EQ(top["name"], "garden.txt");
  EXPECT_EQ(fs::path(top["file"].get<std::string>()).filename(), "garden.txt");
  EXPECT_NE(top["text"].get<std::string>().find("Tomatoes are watered"), std::string::npos);
  EXPECT_EQ(top["lines"].size(), 2u);
  EXPECT_EQ(j["mode"], "bm25");
  for (const auto& c : j["citations"]) {
    for (const char* k : {"n", "file", "page", "lines", "text"}) EXPECT_TRUE(c.contains(k)) << k;
    const int n = c["n"];
    ASSERT_GE(n, 1);
    ASSERT_LE(static_cast<size_t>(n), j["retrieved"].size());
  }
  // Greedy decoding of the same prompt: identical output.
  EXPECT_EQ(nlohmann::json::parse(out2)["answer"], j["answer"]);

  // The streamed form prints the same answer first.
  std::string text;
  ASSERT_EQ(etna("ask " + quote("When are the tomatoes watered?") + data_arg() + " -m " + quote(model.string()) +
                     " -n 24 -k 2",
                 &text),
            0);
  EXPECT_EQ(text.rfind(j["answer"].get<std::string>(), 0), 0u) << text;
}

TEST_F(AskCli, ClearErrors) {
  std::string out;
  EXPECT_NE(etna("ask " + quote("anything?") + data_arg(), &out, true), 0);
  EXPECT_NE(out.find("chat model"), std::string::npos) << out;
  EXPECT_NE(out.find("-m"), std::string::npos) << out;
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  out.clear();
  EXPECT_NE(etna("ask " + quote("anything?") + " --collection nothing-here --data " + quote(data_.path().string()) +
                     " -m " + quote(model.string()),
                 &out, true),
            0);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
  out.clear();
  EXPECT_NE(etna("ask " + quote("  ") + data_arg() + " -m " + quote(model.string()), &out, true), 0);
  EXPECT_NE(out.find("empty"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::rag
