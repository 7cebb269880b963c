// Retrieval-augmented answers, shared by `etna ask` and the server's ask route: a prompt that
// numbers the retrieved chunks as sources [1], [2], ... and asks the model to answer only from them
// citing [n]; then, after generation, the citation markers of the answer resolved to their sources
// with the quoted span (the source sentences that best match the answer sentence citing them).
#pragma once
#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "etna/rag/retriever.h"

namespace etna::tokenizer {
class ChatTemplate;
}

namespace etna::rag {

// Counts the tokens the model would see for a whole rendered prompt.
using PromptTokenCount = std::function<size_t(const std::string& prompt)>;

struct AnswerPromptOptions {
  // Longest prompt in tokens (context size minus the room kept for the answer); 0 = no limit.
  size_t max_prompt_tokens = 0;
  // Rendered through this template (system + user message) when set; else a plain prompt.
  const tokenizer::ChatTemplate* chat_template = nullptr;
  // Source texts are cut to at most this many bytes before counting (a word boundary); 0 = no cut.
  size_t max_source_bytes = 4000;
};

struct AnswerPrompt {
  std::string text;                  // the prompt to generate from
  std::vector<SearchHit> sources;    // the sources kept, in order: marker [n] is sources[n-1]
  size_t tokens = 0;                 // count_tokens(text)
  size_t dropped = 0;                // retrieved hits left out to fit the context
  bool truncated = false;            // a source's text was shortened to fit
};

// The instruction and numbered sources followed by the question, as one user message (sent
// alone, without a system message, since some chat templates reject the system role).
std::string answer_user_message(const std::vector<SearchHit>& sources, const std::string& question);

// Builds the prompt for `question` over `hits` (best first). When it does not fit
// options.max_prompt_tokens, the lowest-ranked sources are dropped, and if a single source still
// does not fit, its text is shortened. Throws invalid_argument for an empty question and
// limit when even the question alone does not fit.
AnswerPrompt build_answer_prompt(const std::string& question, std::vector<SearchHit> hits,
                                 const AnswerPromptOptions& options, const PromptTokenCount& count_tokens);

// One citation marker number found in an answer: "[2]" gives {2, offset of '[', 3}; "[1, 2]"
// gives two markers sharing the bracket's offset and length.
struct CitationMarker {
  int n = 0;
  size_t offset = 0;  // byte offset of the bracket group in the answer
  size_t length = 0;  // bytes of the bracket group
};

// Citation markers of `answer` in order: [n], [n][m], [n, m], [n; m], [n-m] (a range of at most
// 20), also written [Source n], [sources n, m] or [^n]. Brackets holding anything else ([a], [], [1,], [x1]) or numbers of more than 3 digits
// are not markers. Markdown links "[1](...)" are not markers.
std::vector<CitationMarker> parse_citation_markers(std::string_view answer);

struct Citation {
  int n = 0;
  ChunkRow chunk;        // the cited source
  int line_start = 0;    // lines of the quoted span (the chunk's lines when unknown)
  int line_end = 0;
  std::string text;      // the quoted span
  size_t span_begin = 0, span_end = 0;  // its bytes in chunk.text (first to last quoted sentence)
};

struct ResolvedCitations {
  std::vector<Citation> citations;  // one per distinct cited source, by first appearance
  std::vector<int> unmatched;       // distinct marker numbers with no such source, by first appearance
};

// Resolves the markers of `answer` against `sources` (marker n = sources[n-1]).
ResolvedCitations resolve_citations(std::string_view answer, const std::vector<SearchHit>& sources);

// The part of `source_text` quoted for `citing`: the source sentence(s) sharing the most words
// with it (the best one per citing sentence, in source order, "..." between non-adjacent ones),
// or, when no sentence shares a content word, the text trimmed to about max_bytes.
// *byte_begin/*byte_end (optional) receive the span's bytes in source_text (first..last sentence).
std::string select_span(std::string_view source_text, const std::vector<std::string>& citing, size_t max_bytes = 400,
                        size_t* byte_begin = nullptr, size_t* byte_end = nullptr);

// The answer's sentences, citation markers kept with the sentence they follow (a line end or a
// blank line also ends one), as citing_sentences() and the quoted spans see them.
std::vector<std::string> answer_sentences(std::string_view answer);

// Distinct content words of `s` as the quoted spans match them: lowercased runs of letters,
// digits and non-ASCII bytes, at least three bytes long (or any number), common stopwords left
// out, citation markers ignored.
std::set<std::string> content_words(std::string_view s);

// The answer's sentences (markers kept) that contain a marker for `n`.
std::vector<std::string> citing_sentences(std::string_view answer, int n);

// "report.pdf, page 2, lines 3-9" (page left out when 0, "line 3" for one line).
std::string source_location(const std::string& file, int page, int line_start, int line_end);

// JSON of a retrieved source: {"n","id","file","name","page","lines":[a,b],"bytes":[a,b],
// "heading","text","score"} ("n" left out when n <= 0); strings made valid UTF-8.
nlohmann::json source_json(const SearchHit& hit, int n);
// JSON of a citation: {"n","file","name","page","lines":[a,b],"text","span":[a,b]} (span: bytes
// of the quote within the chunk text).
nlohmann::json citation_json(const Citation& c);

}  // namespace etna::rag
