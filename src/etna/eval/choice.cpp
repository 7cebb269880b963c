#include "etna/eval/choice.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/eval/perplexity.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::eval {

using nlohmann::json;

namespace {

std::ifstream open_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorKind::not_found, "cannot open {}", path);
  return in;
}

std::string trim_cr(std::string s) {
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

// An answer given as an index, a digit string, or a letter label.
int answer_index(const json& a, const std::vector<std::string>& labels, size_t n, const std::string& where) {
  int idx = -1;
  if (a.is_number_integer()) idx = a.get<int>();
  else if (a.is_string()) {
    const std::string s = a.get<std::string>();
    auto it = std::find(labels.begin(), labels.end(), s);
    if (it != labels.end()) idx = static_cast<int>(it - labels.begin());
    else if (s.size() == 1 && s[0] >= 'A' && s[0] <= 'Z') idx = s[0] - 'A';
    else if (!s.empty() && std::all_of(s.begin(), s.end(), ::isdigit)) idx = std::stoi(s);
  }
  if (idx < 0 || static_cast<size_t>(idx) >= n) fail(ErrorKind::invalid_argument, "{}: the answer {} names no choice", where, a.dump());
  return idx;
}

std::vector<std::string> string_list(const json& j, const std::string& where, const char* what) {
  if (!j.is_array()) fail(ErrorKind::invalid_argument, "{}: '{}' must be a list of strings", where, what);
  std::vector<std::string> out;
  for (const json& e : j) {
    if (!e.is_string()) fail(ErrorKind::invalid_argument, "{}: '{}' must be a list of strings", where, what);
    out.push_back(e.get<std::string>());
  }
  return out;
}

ChoiceTask question_task(const std::string& question, const std::vector<std::string>& choices, int gold) {
  ChoiceTask t;
  t.gold = gold;
  for (const std::string& c : choices) t.choices.push_back({"Question: " + question + "\nAnswer:", " " + c});
  return t;
}

ChoiceTask parse_jsonl_task(const json& j, const std::string& where) {
  if (!j.is_object()) fail(ErrorKind::invalid_argument, "{}: each line must be a JSON object", where);
  if (j.contains("sentence") && j.contains("option1")) {  // Winogrande
    const std::string s = j.at("sentence").get<std::string>();
    const size_t blank = s.find('_');
    if (blank == std::string::npos) fail(ErrorKind::invalid_argument, "{}: the sentence has no '_' blank", where);
    ChoiceTask t;
    std::string rest = s.substr(blank + 1);
    for (const char* key : {"option1", "option2"}) {
      if (!j.contains(key) || !j[key].is_string()) fail(ErrorKind::invalid_argument, "{}: '{}' must be a string", where, key);
      t.choices.push_back({s.substr(0, blank) + j[key].get<std::string>(), rest});
    }
    t.gold = answer_index(j.value("answer", json()), {"1", "2"}, 2, where);
    return t;
  }
  const json* q = j.contains("question") ? &j["question"] : j.contains("context") ? &j["context"] : j.contains("ctx") ? &j["ctx"] : nullptr;
  if (!q || !q->is_string()) fail(ErrorKind::invalid_argument, "{}: no 'question' (or 'context') string", where);
  std::vector<std::string> choices, labels;
  if (j.contains("choices") && j["choices"].is_object()) {  // ARC
    choices = string_list(j["choices"].value("text", json()), where, "choices.text");
    labels = string_list(j["choices"].value("label", json::array()), where, "choices.label");
  } else if (j.contains("choices")) {
    choices = string_list(j["choices"], where, "choices");
  } else if (j.contains("endings")) {
    choices = string_list(j["endings"], where, "endings");
  } else {
    fail(ErrorKind::invalid_argument, "{}: no 'choices' list", where);
  }
  if (choices.size() < 2) fail(ErrorKind::invalid_argument, "{}: a task needs at least two choices", where);
  const json* a = nullptr;
  for (const char* key : {"answerKey", "answer", "label", "gold"})
    if (j.contains(key)) { a = &j[key]; break; }
  if (!a) fail(ErrorKind::invalid_argument, "{}: no 'answer' (or 'answerKey', 'label', 'gold')", where);
  return question_task(q->get<std::string>(), choices, answer_index(*a, labels, choices.size(), where));
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// log p(tok) from a row of logits (float max, double sum of expf, as the peer computes it).
double token_logprob(const float* row, int n, int tok) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(row[i] - mx);
  return static_cast<double>(row[tok] - mx) - std::log(sum);
}

double wilson(double p, int n, double sign) {
  if (n == 0) return 0;
  const double z = 1.959963984540054, z2 = z * z;
  const double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
  return centre + sign * half;
}

}  // namespace

double Accuracy::low() const { return wilson(value(), total, -1); }
double Accuracy::high() const { return wilson(value(), total, +1); }
double Accuracy::stderr_of_mean() const {
  if (total < 2) return 0;
  const double p = value();
  return std::sqrt(p * (1 - p) / (total - 1));
}

std::vector<ChoiceTask> read_hellaswag(const std::string& path) {
  std::ifstream in = open_text(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(trim_cr(line));
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) fail(ErrorKind::invalid_argument, "{} is empty", path);
  if (lines.size() % 6 != 0)
    fail(ErrorKind::invalid_argument, "{}: {} lines is not a whole number of HellaSwag tasks (6 lines each: context, gold index, 4 endings)",
         path, lines.size());
  std::vector<ChoiceTask> tasks;
  for (size_t i = 0; i < lines.size(); i += 6) {
    const std::string& g = lines[i + 1];
    if (g.size() != 1 || g[0] < '0' || g[0] > '3')
      fail(ErrorKind::invalid_argument, "{}:{}: the gold ending must be 0, 1, 2 or 3 (got '{}')", path, i + 2, g);
    ChoiceTask t;
    t.gold = g[0] - '0';
    t.hellaswag_rule = true;
    for (int e = 0; e < 4; ++e) t.choices.push_back({lines[i], " " + lines[i + 2 + e]});
    tasks.push_back(std::move(t));
  }
  return tasks;
}

std::vector<ChoiceTask> read_choice_jsonl(const std::string& path) {
  std::ifstream in = open_text(path);
  std::vector<ChoiceTask> tasks;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    line = trim_cr(line);
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, n);
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) fail(ErrorKind::invalid_argument, "{}: not valid JSON", where);
    try {
      tasks.push_back(parse_jsonl_task(j, where));
    } catch (const json::exception& e) {
      fail(ErrorKind::invalid_argument, "{}: {}", where, e.what());
    }
  }
  if (tasks.empty()) fail(ErrorKind::invalid_argument, "{} holds no tasks", path);
  return tasks;
}

TaskScore score_task(const model::Model& model, const tokenizer::Tokenizer& tok, const ChoiceTask& task,
                     const ChoiceOptions& o) {
  const size_t k = task.choices.size();
  if (k < 2) fail(ErrorKind::invalid_argument, "a task needs at least two choices");
  tokenizer::EncodeOptions enc;
  enc.add_special = true;
  std::vector<std::vector<int32_t>> seqs(k);
  std::vector<size_t> score_from(k);
  for (size_t s = 0; s < k; ++s) {
    seqs[s] = tok.encode(task.choices[s].context + task.choices[s].continuation, enc);
    if (static_cast<int>(seqs[s].size()) > o.n_ctx)
      fail(ErrorKind::invalid_argument, "a choice has {} tokens, more than the context of {} (raise -c)", seqs[s].size(), o.n_ctx);
  }
  size_t shared = seqs[0].size();
  for (size_t s = 1; s < k; ++s) shared = std::min(shared, common_prefix(seqs[0], seqs[s]));
  for (size_t s = 0; s < k; ++s) {
    score_from[s] = task.hellaswag_rule ? shared : common_prefix(seqs[s], tok.encode(task.choices[s].context, enc));
    score_from[s] = std::max<size_t>(score_from[s], 1);  // the first token has no prediction
    if (score_from[s] >= seqs[s].size())
      fail(ErrorKind::invalid_argument, "a choice's continuation gives no tokens of its own: '{}'", task.choices[s].continuation);
    shared = std::min(shared, score_from[s]);
  }
  // Tokens [0, shared - 1) are common to every choice and need no logits: evaluate them once.
  const int n_common = static_cast<int>(shared) - 1;
  auto cache = model.make_cache(static_cast<int>(k), o.n_ctx, o.cache_type);
  std::vector<float> logits;
  if (n_common > 0) {
    model::Batch b;
    for (int i = 0; i < n_common; ++i) b.add(seqs[0][i], i, 0, false);
    b.want_logits.back() = 1;  // forward wants at least one row
    model.forward(b, *cache, logits);
    for (size_t s = 1; s < k; ++s) cache->copy(0, static_cast<int>(s), n_common);
  }
  model::Batch b;
  for (size_t s = 0; s < k; ++s)
    for (size_t i = static_cast<size_t>(std::max(n_common, 0)); i < seqs[s].size(); ++i)
      b.add(seqs[s][i], static_cast<int>(i), static_cast<int>(s), i + 1 >= score_from[s] && i + 1 < seqs[s].size());
  model.forward(b, *cache, logits);

  const int n_vocab = model.config().n_vocab;
  TaskScore score;
  size_t row = 0;
  for (size_t s = 0; s < k; ++s) {
    double lp = 0;
    int count = 0;
    for (size_t i = score_from[s]; i < seqs[s].size(); ++i, ++row, ++count)
      lp += token_logprob(&logits[row * n_vocab], n_vocab, seqs[s][i]);
    score.logprob.push_back(lp);
    score.length.push_back(task.hellaswag_rule ? count : std::max<int>(1, static_cast<int>(task.choices[s].continuation.size())));
  }
  for (size_t s = 1; s < k; ++s) {
    if (score.logprob[s] > score.logprob[score.pick]) score.pick = static_cast<int>(s);
    if (score.logprob[s] / score.length[s] > score.logprob[score.pick_norm] / score.length[score.pick_norm])
      score.pick_norm = static_cast<int>(s);
  }
  return score;
}

ChoiceResult evaluate_choices(const model::Model& model, const tokenizer::Tokenizer& tok, std::vector<ChoiceTask> tasks,
                              const ChoiceOptions& o, const TaskCallback& on_task) {
  if (tasks.empty()) fail(ErrorKind::invalid_argument, "there are no tasks to evaluate");
  if (o.limit < 0) fail(ErrorKind::invalid_argument, "--limit cannot be negative");
  if (o.limit > 0 && static_cast<size_t>(o.limit) < tasks.size()) {
    std::mt19937_64 rng(o.seed);
    std::shuffle(tasks.begin(), tasks.end(), rng);
    tasks.resize(static_cast<size_t>(o.limit));
  }
  ChoiceResult r;
  const int total = static_cast<int>(tasks.size());
  for (const ChoiceTask& t : tasks) {
    TaskScore s = score_task(model, tok, t, o);
    ++r.acc.total;
    ++r.acc_norm.total;
    if (s.pick == t.gold) ++r.acc.correct;
    if (s.pick_norm == t.gold) ++r.acc_norm.correct;
    r.tasks.push_back(std::move(s));
    if (on_task) on_task(r.acc.total, total, r);
  }
  return r;
}

}  // namespace etna::eval
