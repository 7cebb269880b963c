// Retrieval-augmented answers: prompt building (numbering, templates, fitting the context),
// citation marker parsing and resolution, quoted span selection.
#include "etna/rag/answer.h"

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tokenizer/chat_template.h"

namespace etna::rag {
namespace {

SearchHit hit(int64_t id, const std::string& file, const std::string& text, int page = 0, int l0 = 1, int l1 = 1) {
  SearchHit h;
  h.chunk.id = id;
  h.chunk.file = file;
  h.chunk.text = text;
  h.chunk.page = page;
  h.chunk.line_start = l0;
  h.chunk.line_end = l1;
  h.score = 1.0 / static_cast<double>(id);
  return h;
}

// One "token" per whitespace-separated word: enough to test fitting.
size_t words(const std::string& s) {
  size_t n = 0;
  bool in = false;
  for (char c : s) {
    const bool sp = c == ' ' || c == '\n' || c == '\t';
    if (!sp && !in) ++n;
    in = !sp;
  }
  return n;
}

std::string repeat_words(const std::string& w, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " " : "") + w + std::to_string(i);
  return s;
}

std::vector<int> numbers(const std::string& answer) {
  std::vector<int> out;
  for (const auto& m : parse_citation_markers(answer)) out.push_back(m.n);
  return out;
}

TEST(AnswerPrompt, NumbersSourcesWithLocationAndAsksForCitations) {
  std::vector<SearchHit> hits = {hit(1, "/docs/a/report.pdf", "Revenue grew by 12 percent.", 2, 3, 9),
                                 hit(2, "/docs/b/notes.md", "The cat sleeps.", 0, 5, 5)};
  const AnswerPrompt p = build_answer_prompt("How much did revenue grow?", hits, {}, words);
  EXPECT_EQ(p.sources.size(), 2u);
  EXPECT_EQ(p.dropped, 0u);
  EXPECT_FALSE(p.truncated);
  EXPECT_NE(p.text.find("[1] report.pdf, page 2, lines 3-9\nRevenue grew by 12 percent."), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("[2] notes.md, line 5\nThe cat sleeps."), std::string::npos) << p.text;
  EXPECT_LT(p.text.find("[1] report.pdf"), p.text.find("[2] notes.md"));
  EXPECT_NE(p.text.find("only the numbered sources"), std::string::npos);
  EXPECT_NE(p.text.find("square brackets"), std::string::npos);
  EXPECT_NE(p.text.find("Question: How much did revenue grow?"), std::string::npos);
  EXPECT_EQ(p.text.substr(p.text.size() - 7), "Answer:");  // plain prompt without a template
  EXPECT_EQ(p.tokens, words(p.text));
}

TEST(AnswerPrompt, RendersThroughAChatTemplate) {
  const auto tmpl = tokenizer::ChatTemplate::chatml();
  AnswerPromptOptions opt;
  opt.chat_template = &tmpl;
  const AnswerPrompt p = build_answer_prompt("What sleeps?", {hit(1, "/x/notes.md", "The cat sleeps.")}, opt, words);
  EXPECT_EQ(p.text.rfind("<|im_start|>user\n", 0), 0u) << p.text;
  EXPECT_NE(p.text.find("[1] notes.md, line 1\nThe cat sleeps."), std::string::npos);
  const std::string tail = "Question: What sleeps?<|im_end|>\n<|im_start|>assistant\n";
  ASSERT_GE(p.text.size(), tail.size());
  EXPECT_EQ(p.text.substr(p.text.size() - tail.size()), tail);
}

TEST(AnswerPrompt, DropsLowestRankedSourcesToFit) {
  std::vector<SearchHit> hits;
  for (int i = 1; i <= 5; ++i) hits.push_back(hit(i, "/d/f" + std::to_string(i) + ".txt", repeat_words("w", 100)));
  const size_t all = build_answer_prompt("q?", hits, {}, words).tokens;
  const size_t two = build_answer_prompt("q?", {hits[0], hits[1]}, {}, words).tokens;
  AnswerPromptOptions opt;
  opt.max_prompt_tokens = two + 50;  // room for two sources, not three
  const AnswerPrompt p = build_answer_prompt("q?", hits, opt, words);
  ASSERT_EQ(p.sources.size(), 2u);
  EXPECT_EQ(p.sources[0].chunk.id, 1);
  EXPECT_EQ(p.sources[1].chunk.id, 2);
  EXPECT_EQ(p.dropped, 3u);
  EXPECT_LE(p.tokens, opt.max_prompt_tokens);
  EXPECT_LT(p.tokens, all);
  EXPECT_EQ(p.text.find("[3]"), std::string::npos);
}

TEST(AnswerPrompt, ShortensTheOnlySourceThatDoesNotFitAndFailsWhenNothingFits) {
  std::vector<SearchHit> hits = {hit(1, "/d/long.txt", repeat_words("word", 400)), hit(2, "/d/b.txt", "short")};
  AnswerPromptOptions opt;
  opt.max_prompt_tokens = build_answer_prompt("q?", {}, {}, words).tokens + 60;
  const AnswerPrompt p = build_answer_prompt("q?", hits, opt, words);
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_TRUE(p.truncated);
  EXPECT_EQ(p.dropped, 1u);
  EXPECT_LE(p.tokens, opt.max_prompt_tokens);
  EXPECT_GT(p.tokens, opt.max_prompt_tokens - 20);  // it kept as much as fits
  EXPECT_EQ(p.sources[0].chunk.text.rfind("word0 word1", 0), 0u);

  opt.max_prompt_tokens = 5;
  try {
    build_answer_prompt("q?", hits, opt, words);
    FAIL() << "expected a limit error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::limit);
  }
  EXPECT_THROW(build_answer_prompt("  ", hits, {}, words), Error);
}

TEST(AnswerPrompt, LongSourcesAreCutBeforeCounting) {
  AnswerPromptOptions opt;
  opt.max_source_bytes = 50;
  const AnswerPrompt p = build_answer_prompt("q?", {hit(1, "/d/a.txt", repeat_words("abc", 100))}, opt, words);
  EXPECT_TRUE(p.truncated);
  EXPECT_LE(p.sources[0].chunk.text.size(), 50u);
  EXPECT_NE(p.sources[0].chunk.text.back(), ' ');
}

TEST(CitationMarkers, CommonForms) {
  EXPECT_EQ(numbers("Cats sleep [1]. Dogs bark [2][3]. Both [1, 2]; also [4;5] and [6-8]."),
            (std::vector<int>{1, 2, 3, 1, 2, 4, 5, 6, 7, 8}));
  const auto m = parse_citation_markers("ab [12] cd");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].n, 12);
  EXPECT_EQ(m[0].offset, 3u);
  EXPECT_EQ(m[0].length, 4u);
  const auto pair = parse_citation_markers("x [1, 2]");
  ASSERT_EQ(pair.size(), 2u);
  EXPECT_EQ(pair[0].offset, pair[1].offset);
  EXPECT_EQ(pair[1].length, 6u);
}

TEST(CitationMarkers, MalformedAreIgnored) {
  EXPECT_TRUE(numbers("[a] [] [1,] [,1] [x1] [1 2] [1-] [5-2] [1-40] [2024] [1.5] [ ]").empty());
  EXPECT_TRUE(numbers("see [1](http://example.com) and [[2] unclosed [3").size() == 1u);  // only "[2]"
  EXPECT_EQ(numbers("[[2] unclosed"), std::vector<int>{2});
  EXPECT_EQ(numbers("[ 3 ]"), std::vector<int>{3});
  EXPECT_EQ(numbers("[0] and [999]"), (std::vector<int>{0, 999}));
  EXPECT_EQ(numbers("as [Source 2] and [sources 3, 4] and [^5] say"), (std::vector<int>{2, 3, 4, 5}));
  EXPECT_TRUE(numbers("[Source] [sources] [source1] [Sourcery 2] [^] [^x]").empty());
}

TEST(Citations, ResolvedWithDuplicatesAndUnmatched) {
  std::vector<SearchHit> src = {hit(1, "/d/cats.txt", "Cats sleep sixteen hours a day. They purr when content."),
                                hit(2, "/d/dogs.txt", "Dogs bark at strangers. Dogs love walks.")};
  const std::string answer = "Cats sleep sixteen hours [1]. Dogs love long walks [2][1]. Birds sing [3]. Again [1][0][3].";
  const ResolvedCitations r = resolve_citations(answer, src);
  ASSERT_EQ(r.citations.size(), 2u);
  EXPECT_EQ(r.citations[0].n, 1);
  EXPECT_EQ(r.citations[0].chunk.file, "/d/cats.txt");
  EXPECT_EQ(r.citations[1].n, 2);
  EXPECT_EQ(r.citations[1].text, "Dogs love walks.");
  EXPECT_EQ(r.unmatched, (std::vector<int>{3, 0}));
  // Source 1 is cited by the cats sentence (quote: its first sentence) and by the dogs sentence
  // (no shared word: no extra quote).
  EXPECT_EQ(r.citations[0].text, "Cats sleep sixteen hours a day.");
}

TEST(Citations, NoMarkersNoCitations) {
  const auto r = resolve_citations("I do not know.", {hit(1, "/a.txt", "x")});
  EXPECT_TRUE(r.citations.empty());
  EXPECT_TRUE(r.unmatched.empty());
  const auto none = resolve_citations("It is so [1].", {});
  EXPECT_EQ(none.unmatched, std::vector<int>{1});
}

TEST(Citations, LinesNarrowToTheQuotedSentence) {
  const std::string text = "Intro line here.\nThe boiler must be serviced\nevery spring by a technician.\nOther line.";
  std::vector<SearchHit> src = {hit(7, "/m/manual.txt", text, 0, 10, 13)};
  const auto r = resolve_citations("Service the boiler every spring [1].", src);
  ASSERT_EQ(r.citations.size(), 1u);
  EXPECT_EQ(r.citations[0].text, "The boiler must be serviced\nevery spring by a technician.");
  EXPECT_EQ(r.citations[0].line_start, 11);
  EXPECT_EQ(r.citations[0].line_end, 12);
  EXPECT_EQ(text.substr(r.citations[0].span_begin, r.citations[0].span_end - r.citations[0].span_begin),
            r.citations[0].text);
  const auto j = citation_json(r.citations[0]);
  EXPECT_EQ(j["lines"], nlohmann::json::array({11, 12}));
  EXPECT_EQ(j["name"], "manual.txt");
  EXPECT_EQ(j["file"], "/m/manual.txt");
}

TEST(SpanSelection, BestSentencePerCitingSentenceInSourceOrder) {
  const std::string src = "Alpha reactors run hot. Beta pumps move water. Gamma valves leak slowly. Delta is unrelated.";
  EXPECT_EQ(select_span(src, {"The valves leak [1]."}), "Gamma valves leak slowly.");
  EXPECT_EQ(select_span(src, {"Valves leak [1].", "Reactors run hot [1]."}),
            "Alpha reactors run hot. ... Gamma valves leak slowly.");
  EXPECT_EQ(select_span(src, {"Pumps move [1].", "Valves leak [1]."}), "Beta pumps move water. Gamma valves leak slowly.");
}

TEST(SpanSelection, NoSharedWordGivesTheTrimmedChunk) {
  const std::string src = "  " + repeat_words("zz", 200) + "  ";
  size_t b = 0, e = 0;
  const std::string s = select_span(src, {"Nothing in common [1]."}, 60, &b, &e);
  EXPECT_LE(s.size(), 64u);
  EXPECT_EQ(s.rfind("zz0 zz1", 0), 0u);
  EXPECT_EQ(s.substr(s.size() - 4), " ...");
  EXPECT_EQ(b, 2u);
  EXPECT_EQ(src.substr(b, e - b), s.substr(0, s.size() - 4));
  EXPECT_EQ(select_span("Short text.", {}), "Short text.");
}

TEST(SpanSelection, MarkerAfterThePeriodBelongsToTheSentenceBefore) {
  const std::string answer = "Gamma valves leak. [2] Pumps are fine [1].\n[3]";
  EXPECT_EQ(citing_sentences(answer, 2), std::vector<std::string>{"Gamma valves leak. [2]"});
  EXPECT_EQ(citing_sentences(answer, 1), std::vector<std::string>{"Pumps are fine [1]."});
  // A marker alone on a line cites the sentence before it.
  EXPECT_EQ(citing_sentences(answer, 3), std::vector<std::string>{"Pumps are fine [1].\n[3]"});
}

TEST(SourceJson, HasTheContractFields) {
  SearchHit h = hit(3, "/d/x/report.pdf", "text", 4, 7, 9);
  h.chunk.byte_start = 10;
  h.chunk.byte_end = 20;
  h.chunk.heading = "Intro";
  const auto j = source_json(h, 2);
  EXPECT_EQ(j["n"], 2);
  EXPECT_EQ(j["id"], 3);
  EXPECT_EQ(j["name"], "report.pdf");
  EXPECT_EQ(j["page"], 4);
  EXPECT_EQ(j["lines"], nlohmann::json::array({7, 9}));
  EXPECT_EQ(j["bytes"], nlohmann::json::array({10, 20}));
  EXPECT_EQ(j["heading"], "Intro");
  EXPECT_FALSE(source_json(h, 0).contains("n"));
  EXPECT_EQ(source_location("a.txt", 0, 3, 3), "a.txt, line 3");
  EXPECT_EQ(source_location("a.pdf", 2, 3, 5), "a.pdf, page 2, lines 3-5");
}

}  // namespace
}  // namespace etna::rag
