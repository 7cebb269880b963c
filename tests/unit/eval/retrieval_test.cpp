// Retrieval metrics: the formulas on rankings made by hand, BEIR's layout, and `etna eval rag`
// on a generated corpus whose answers are known.
#include "etna/eval/retrieval.h"

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::eval {
namespace {

using nlohmann::json;

TEST(RetrievalMetrics, FollowTheirDefinitions) {
  RagQuestion a{"a", "qa", {{"a.txt", 1}}, "", ""};
  RagQuestion b{"b", "qb", {{"docs/b.md", 1}, {"c.md", 1}}, "", ""};
  RagQuestion c{"c", "qc", {{"z.txt", 1}}, "", ""};
  auto search = [](const std::string& q, size_t) -> std::vector<RankedPassage> {
    if (q == "qa") return {{"/x/other.txt", ""}, {"/x/a.txt", ""}, {"/x/a.txt", "again"}};  // rank 2, counted once
    if (q == "qb") return {{"/home/u/docs/b.md", ""}, {"/y/q.md", ""}, {"/y/c.md", ""}};     // ranks 1 and 3
    return {{"/x/nothing.txt", ""}};
  };
  const RetrievalMetrics m = evaluate_retrieval({a, b, c}, search);
  EXPECT_EQ(m.questions, 3);
  EXPECT_NEAR(m.hit_at.at(1), 1.0 / 3, 1e-12);
  EXPECT_NEAR(m.hit_at.at(3), 2.0 / 3, 1e-12);
  EXPECT_NEAR(m.mrr10, (0.5 + 1.0 + 0) / 3, 1e-12);
  const double ndcg_a = 1 / std::log2(3.0);
  const double ndcg_b = (1 + 1 / std::log2(4.0)) / (1 + 1 / std::log2(3.0));
  EXPECT_NEAR(m.ndcg10, (ndcg_a + ndcg_b + 0) / 3, 1e-12);
}

TEST(RetrievalMetrics, ASpanMustBeInThePassage) {
  RagQuestion q{"1", "q", {{"a.txt", 1}}, "Boiler  SERVICE", ""};
  EXPECT_EQ(relevance(q, {"/d/a.txt", "the boiler service interval"}), 1);
  EXPECT_EQ(relevance(q, {"/d/a.txt", "the boiler is red"}), 0);
  EXPECT_EQ(relevance(q, {"/d/ba.txt", "the boiler service"}), 0);  // another file whose name ends alike
}

TEST(Beir, TheLayoutIsReadAsIs) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "set" / "qrels");
  std::ofstream(dir / "set" / "corpus.jsonl") << R"({"_id": "d1", "title": "Volcanoes", "text": "Lava flows."})" "\n"
                                              << R"({"_id": "d2", "title": "", "text": "Harbours hold ships."})" "\n";
  std::ofstream(dir / "set" / "queries.jsonl") << R"({"_id": "q1", "text": "what flows"})" "\n"
                                               << R"({"_id": "q2", "text": "unjudged"})" "\n";
  std::ofstream(dir / "set" / "qrels" / "test.tsv") << "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n";
  BeirSet s = read_beir(dir / "set", "test", dir / "docs");
  EXPECT_EQ(s.documents, 2u);
  ASSERT_EQ(s.questions.size(), 1u);
  EXPECT_EQ(s.questions[0].question, "what flows");
  EXPECT_EQ(s.questions[0].relevant.at("d1.txt"), 2);
  std::ifstream in(dir / "docs" / "d1.txt");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "Volcanoes\n\nLava flows.\n");
  EXPECT_THROW(read_beir(dir / "set", "dev", dir / "docs"), Error);
}

// A corpus generated here: each file describes one invented place with words found nowhere
// else, so BM25 must rank the right file first for every question.
TEST(EvalRag, FindsTheKnownAnswersOfAGeneratedCorpus) {
  test::TempDir dir;
  const auto docs = dir / "docs";
  std::filesystem::create_directories(docs);
  const char* places[] = {"Zorvath", "Quillmere", "Brannoch", "Tevistra", "Ulmagard", "Fennick", "Osprewin", "Calderoy"};
  const char* things[] = {"copper bells", "glass lanterns", "salt barges", "wool looms", "cedar ships", "iron kettles",
                          "silk kites", "clay pipes"};
  std::ofstream q(dir / "questions.jsonl");
  for (int i = 0; i < 8; ++i) {
    std::ofstream f(docs / (std::string(places[i]) + ".md"));
    f << "# " << places[i] << "\n\nThe town of " << places[i] << " is famous for its " << things[i]
      << ". Travellers come every spring to buy them at the market by the river.\n\n"
      << "The weather is mild and the people are friendly to visitors from every land.\n";
    q << json{{"question", std::string("Which town makes ") + things[i] + "?"}, {"file", std::string(places[i]) + ".md"},
              {"span", std::string("famous for its ") + things[i]}}.dump()
      << "\n";
  }
  q.close();
  const std::string etna = test::etna_binary().string(), data = " --data " + (dir / "data").string();
  std::string out;
  ASSERT_EQ(test::run_command(etna + " ingest --collection towns " + docs.string() + data, &out, true), 0) << out;
  ASSERT_EQ(test::run_command(etna + " eval rag --json --collection towns --questions " + (dir / "questions.jsonl").string() + data, &out), 0) << out;
  json j = json::parse(out);
  EXPECT_EQ(j["questions"], 8);
  ASSERT_GE(j["modes"].size(), 1u);
  EXPECT_EQ(j["modes"][0]["mode"], "bm25");
  EXPECT_DOUBLE_EQ(j["modes"][0]["hit@1"].get<double>(), 1.0) << out;
  EXPECT_DOUBLE_EQ(j["modes"][0]["mrr@10"].get<double>(), 1.0);
  // Stored in the leaderboard.
  ASSERT_EQ(test::run_command(etna + " eval list --json --task rag" + data, &out), 0);
  EXPECT_GE(json::parse(out).size(), 6u) << out;
}

}  // namespace
}  // namespace etna::eval
