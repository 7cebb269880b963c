// Answer faithfulness and token F1 on hand-made answers (what each sentence cites and whether the
// cited passage holds its words), then `etna eval generate` and `etna eval answers` through the
// binary on a generated corpus with stories260K as the chat model.
#include "etna/eval/faithfulness.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::eval {
namespace {

using nlohmann::json;

rag::SearchHit hit(const std::string& file, const std::string& text) {
  rag::SearchHit h;
  h.chunk.file = file;
  h.chunk.text = text;
  return h;
}

TEST(Faithfulness, SentencesAreSupportedByTheSourcesTheyCite) {
  const std::vector<rag::SearchHit> sources = {
      hit("/docs/zorvath.md", "The town of Zorvath is famous for its copper bells, sold at the river market."),
      hit("/docs/weather.md", "Winters are long and snowy in the northern valleys.")};
  RagQuestion q;
  q.relevant["zorvath.md"] = 1;
  // Supported (words in [1]); cites the wrong source ([2] lacks the words); cites nothing;
  // cites a source that does not exist.
  const std::string answer =
      "Zorvath is famous for copper bells [1]. The copper bells are sold at the river market [2].\n"
      "Bells ring every evening.\nThe market opens at dawn [7].";
  const AnswerJudgement j = judge_answer(answer, sources, &q);
  ASSERT_EQ(j.sentences.size(), 4u);
  EXPECT_TRUE(j.sentences[0].supported);
  EXPECT_DOUBLE_EQ(j.sentences[0].support, 1.0);
  EXPECT_EQ(j.sentences[0].cited, std::vector<int>{1});
  EXPECT_FALSE(j.sentences[1].supported);
  EXPECT_LT(j.sentences[1].support, 0.5);
  EXPECT_TRUE(j.sentences[2].cited.empty());
  EXPECT_FALSE(j.sentences[2].supported);
  EXPECT_TRUE(j.sentences[3].cited.empty());
  EXPECT_EQ(j.cited, 2);
  EXPECT_EQ(j.supported, 1);
  EXPECT_EQ(j.unmatched, 1);
  EXPECT_TRUE(j.cites_relevant);
  EXPECT_DOUBLE_EQ(j.faithfulness(), 0.25);

  // A marker on a line of its own cites the sentence before it; citing only the weather file
  // is not citing a relevant one.
  const AnswerJudgement k = judge_answer("Winters are long and snowy.\n[2]", sources, &q);
  ASSERT_EQ(k.sentences.size(), 1u);
  EXPECT_TRUE(k.sentences[0].supported);
  EXPECT_FALSE(k.cites_relevant);
  EXPECT_DOUBLE_EQ(judge_answer("", sources).faithfulness(), 0.0);
  // The threshold decides: 3 of the 4 content words are in [1].
  const AnswerJudgement t = judge_answer("Zorvath sells copper trumpets [1].", sources, nullptr, 0.8);
  EXPECT_FALSE(t.sentences[0].supported);
  EXPECT_TRUE(judge_answer("Zorvath sells copper trumpets [1].", sources, nullptr, 0.5).sentences[0].supported);
}

TEST(Faithfulness, TokenF1IsSquads) {
  EXPECT_DOUBLE_EQ(token_f1("The copper bells!", "copper bells"), 1.0);
  EXPECT_DOUBLE_EQ(token_f1("copper", "copper bells"), 2 * 1.0 * 0.5 / 1.5);
  EXPECT_DOUBLE_EQ(token_f1("glass lanterns", "copper bells"), 0.0);
  EXPECT_DOUBLE_EQ(token_f1("bells bells", "bells"), 2 * 0.5 * 1.0 / 1.5);  // a bag, not a set
  EXPECT_DOUBLE_EQ(token_f1("", ""), 1.0);
  AnswerMetricsBuilder b;
  RagQuestion with, without;
  with.answer = "copper bells";
  b.add(with, "copper bells", judge_answer("copper bells [1]", {hit("a", "copper bells")}));
  b.add(without, "nothing", judge_answer("nothing here", {}));
  const AnswerMetrics m = b.result();
  EXPECT_EQ(m.questions, 2);
  EXPECT_EQ(m.with_reference, 1);
  EXPECT_DOUBLE_EQ(m.answer_f1, 1.0);
  EXPECT_DOUBLE_EQ(m.faithfulness, 0.5);
  EXPECT_DOUBLE_EQ(m.uncited, 0.5);
}

// Through the binary: questions written from the collection name ingested files and passages
// those files contain; answering them reports every metric and stores it in the leaderboard.
TEST(EvalAnswers, GenerateThenAnswerOnACollection) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  test::TempDir dir;
  const auto docs = dir / "docs";
  std::filesystem::create_directories(docs);
  const char* names[] = {"Lily", "Tom", "Sue"};
  for (const char* n : names) {
    std::ofstream f(docs / (std::string(n) + ".txt"));
    f << n << " went to the park with a big red ball. " << n
      << " played with the ball under the tall green tree until the sun went down and the birds sang.\n";
  }
  const std::string etna = test::etna_binary().string(), data = " --data " + (dir / "data").string();
  std::string out;
  ASSERT_EQ(test::run_command(etna + " ingest --collection park " + docs.string() + data, &out, true), 0) << out;
  const std::string qfile = (dir / "q.jsonl").string();
  ASSERT_EQ(test::run_command(etna + " eval generate --collection park -m " + model.string() + " -n 3 -o " + qfile +
                                  " --n-predict 24" + data, &out, true),
            0)
      << out;
  std::ifstream in(qfile);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const json q = json::parse(line);
    ++lines;
    ASSERT_TRUE(q.contains("file")) << line;
    const std::filesystem::path file = q["file"].get<std::string>();
    EXPECT_EQ(file.parent_path().filename(), "docs") << line;
    EXPECT_FALSE(q["question"].get<std::string>().empty());
    if (q.contains("span")) {
      std::ifstream src(file);
      std::stringstream ss;
      ss << src.rdbuf();
      EXPECT_NE(ss.str().find(q["span"].get<std::string>()), std::string::npos) << line;
    }
  }
  ASSERT_GE(lines, 1) << out;
  EXPECT_NE(out.find("wrote " + std::to_string(lines) + " question"), std::string::npos) << out;

  // Known answers with a reference answer, so F1 is reported too.
  std::ofstream known(dir / "known.jsonl");
  known << json{{"question", "What did Lily play with?"}, {"file", "Lily.txt"}, {"answer", "a big red ball"}}.dump()
        << "\n";
  known.close();
  ASSERT_EQ(test::run_command(etna + " eval answers --json --collection park -m " + model.string() + " --questions " +
                                  (dir / "known.jsonl").string() + " -n 24" + data, &out),
            0)
      << out;
  const json j = json::parse(out);
  EXPECT_EQ(j["questions"], 1);
  EXPECT_EQ(j["with_reference"], 1);
  for (const char* key : {"faithfulness", "citation_rate", "cites_relevant", "uncited", "answer_f1"}) {
    ASSERT_TRUE(j[key].is_number()) << key;
    EXPECT_GE(j[key].get<double>(), 0.0);
    EXPECT_LE(j[key].get<double>(), 1.0);
  }
  ASSERT_EQ(j["answers"].size(), 1u);
  EXPECT_FALSE(j["answers"][0]["answer"].get<std::string>().empty());
  ASSERT_EQ(test::run_command(etna + " eval list --json --task rag-answers" + data, &out), 0);
  EXPECT_GE(json::parse(out).size(), 5u) << out;
  // A collection that does not exist is one clear error.
  EXPECT_NE(test::run_command(etna + " eval answers --collection nope -m " + model.string() + " --questions " +
                                  (dir / "known.jsonl").string() + data, &out, true),
            0);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
}

}  // namespace
}  // namespace etna::eval
