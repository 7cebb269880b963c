#include "etna/eval/retrieval.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"

namespace etna::eval {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::ifstream open_text(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorKind::not_found, "cannot open {}", path.string());
  return in;
}

// Lower case, runs of white space as one space, trimmed.
std::string normalise(const std::string& s) {
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

bool file_matches(const std::string& file, const std::string& name) {
  if (file == name) return true;
  if (fs::path(file).filename().string() == name) return true;
  return file.size() > name.size() && file.compare(file.size() - name.size(), name.size(), name) == 0 &&
         file[file.size() - name.size() - 1] == '/';
}

template <typename F>
void each_json_line(const fs::path& path, F&& f) {
  std::ifstream in = open_text(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path.string(), n);
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail(ErrorKind::invalid_argument, "{}: not a JSON object", where);
    try {
      f(j, where);
    } catch (const json::exception& e) {
      fail(ErrorKind::invalid_argument, "{}: {}", where, e.what());
    }
  }
}

std::string id_string(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

}  // namespace

std::vector<RagQuestion> read_rag_questions(const std::string& path) {
  std::vector<RagQuestion> out;
  each_json_line(path, [&](const json& j, const std::string& where) {
    RagQuestion q;
    q.question = j.at("question").get<std::string>();
    q.id = j.contains("id") ? id_string(j["id"]) : std::to_string(out.size() + 1);
    if (j.contains("file")) q.relevant[j["file"].get<std::string>()] = 1;
    if (j.contains("files"))
      for (const json& f : j["files"]) q.relevant[f.get<std::string>()] = 1;
    if (q.relevant.empty()) fail(ErrorKind::invalid_argument, "{}: each question needs 'file' or 'files'", where);
    q.span = j.value("span", "");
    q.answer = j.value("answer", "");
    out.push_back(std::move(q));
  });
  if (out.empty()) fail(ErrorKind::invalid_argument, "{} holds no questions", path);
  return out;
}

BeirSet read_beir(const fs::path& dir, const std::string& split, const fs::path& docs_dir) {
  for (const char* f : {"corpus.jsonl", "queries.jsonl"})
    if (!fs::exists(dir / f)) fail(ErrorKind::not_found, "{} is not a BEIR folder: {} is missing", dir.string(), f);
  const fs::path qrels = dir / "qrels" / (split + ".tsv");
  if (!fs::exists(qrels)) fail(ErrorKind::not_found, "{} is missing (choose the split with --split)", qrels.string());
  fs::create_directories(docs_dir);
  BeirSet set;
  std::set<std::string> ids;
  each_json_line(dir / "corpus.jsonl", [&](const json& j, const std::string& where) {
    const std::string id = id_string(j.at("_id"));
    if (id.empty() || id.find('/') != std::string::npos || id[0] == '.' || !ids.insert(id).second)
      fail(ErrorKind::invalid_argument, "{}: the document id '{}' is empty, repeated or not usable as a file name", where, id);
    std::ofstream out(docs_dir / (id + ".txt"), std::ios::binary);
    const std::string title = j.value("title", "");
    if (!title.empty()) out << title << "\n\n";
    out << j.value("text", "") << "\n";
    if (!out) fail(ErrorKind::io, "cannot write {}", (docs_dir / (id + ".txt")).string());
    ++set.documents;
  });
  std::map<std::string, std::string> queries;
  each_json_line(dir / "queries.jsonl", [&](const json& j, const std::string&) {
    queries[id_string(j.at("_id"))] = j.at("text").get<std::string>();
  });
  std::map<std::string, RagQuestion> by_id;
  std::ifstream in = open_text(qrels);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::istringstream cols(line);
    std::string qid, did, score;
    std::getline(cols, qid, '\t');
    std::getline(cols, did, '\t');
    std::getline(cols, score, '\t');
    if (n == 1 && (qid == "query-id" || qid == "query_id")) continue;  // the header
    double grade = 0;
    try {
      grade = std::stod(score);
    } catch (...) {
      fail(ErrorKind::invalid_argument, "{}:{}: expected 'query-id<TAB>corpus-id<TAB>score'", qrels.string(), n);
    }
    if (grade <= 0) continue;
    auto q = queries.find(qid);
    if (q == queries.end() || !ids.count(did)) continue;  // judgements of what the files do not hold
    RagQuestion& r = by_id[qid];
    r.id = qid;
    r.question = q->second;
    r.relevant[did + ".txt"] = grade;
  }
  for (auto& [id, q] : by_id) set.questions.push_back(std::move(q));
  if (set.questions.empty()) fail(ErrorKind::invalid_argument, "{} judges no query of this corpus as relevant", qrels.string());
  return set;
}

double relevance(const RagQuestion& q, const RankedPassage& p) {
  for (const auto& [name, grade] : q.relevant) {
    if (!file_matches(p.file, name)) continue;
    if (!q.span.empty() && normalise(p.text).find(normalise(q.span)) == std::string::npos) continue;
    return grade;
  }
  return 0;
}

RetrievalMetrics evaluate_retrieval(const std::vector<RagQuestion>& questions, const SearchFn& search,
                                    const std::function<void(int, int)>& on_question) {
  RetrievalMetrics m;
  for (int k : kHitKs) m.hit_at[k] = 0;
  const int total = static_cast<int>(questions.size());
  for (const RagQuestion& q : questions) {
    const std::vector<RankedPassage> hits = search(q.question, 10);
    int first = 0;  // 1-based rank of the first relevant passage
    double dcg = 0;
    std::set<std::string> credited;  // each relevant document gains once
    for (size_t i = 0; i < hits.size() && i < 10; ++i) {
      const double g = relevance(q, hits[i]);
      if (g <= 0) continue;
      if (!first) first = static_cast<int>(i) + 1;
      if (credited.insert(hits[i].file).second) dcg += g / std::log2(static_cast<double>(i) + 2);
    }
    std::vector<double> grades;
    for (const auto& [name, g] : q.relevant) grades.push_back(g);
    std::sort(grades.rbegin(), grades.rend());
    double ideal = 0;
    for (size_t i = 0; i < grades.size() && i < 10; ++i) ideal += grades[i] / std::log2(static_cast<double>(i) + 2);
    for (int k : kHitKs)
      if (first && first <= k) m.hit_at[k] += 1;
    if (first) m.mrr10 += 1.0 / first;
    if (ideal > 0) m.ndcg10 += std::min(1.0, dcg / ideal);
    ++m.questions;
    if (on_question) on_question(m.questions, total);
  }
  if (m.questions) {
    for (auto& [k, v] : m.hit_at) v /= m.questions;
    m.mrr10 /= m.questions;
    m.ndcg10 /= m.questions;
  }
  return m;
}

}  // namespace etna::eval
