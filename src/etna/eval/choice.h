// Multiple-choice evaluation by log-likelihood: HellaSwag in llama.cpp's text layout, and ARC,
// MMLU and Winogrande (or any {question, choices, answer} set) from JSON Lines as the Hugging
// Face datasets publish them.
//
// Each choice is a context plus a continuation; its score is the log-likelihood of the
// continuation's tokens given the context. `acc` picks the largest sum, `acc_norm` the largest
// sum per unit of length: per token for HellaSwag (the peer's figure), per byte of continuation
// for the JSONL sets (lm-evaluation-harness's acc_norm). Tokens the choices of a task share are
// evaluated once and their cache cells copied to the other choices.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "etna/model/kv_type.h"

namespace etna::model { class Model; }
namespace etna::tokenizer { class Tokenizer; }

namespace etna::eval {

struct Choice {
  std::string context;       // text before the scored part (BOS is added when the vocabulary asks)
  std::string continuation;  // the scored part
};

struct ChoiceTask {
  std::vector<Choice> choices;  // at least 2
  int gold = 0;                 // index of the right choice
  // llama.cpp's HellaSwag rule: the scored tokens are those after the prefix that all choices'
  // token sequences share, and acc_norm divides by their count. Otherwise the scored tokens are
  // those after the context's own tokens, and acc_norm divides by the continuation's bytes.
  bool hellaswag_rule = false;
};

// llama.cpp's HellaSwag layout: 6 lines per task (context, gold index 0..3, four endings). Each
// choice's text is context + " " + ending, as the peer tokenises it. Throws etna::Error
// (not_found, invalid_argument naming the line) for a missing or malformed file.
std::vector<ChoiceTask> read_hellaswag(const std::string& path);

// One JSON object per line, in any of these shapes (the line number is named on error):
//   ARC:        {"question", "choices": {"text": [...], "label": [...]}, "answerKey": "B"}
//   MMLU:       {"question", "choices": [...], "answer": 2}  (also "subject")
//   Winogrande: {"sentence" with one "_", "option1", "option2", "answer": "1"|"2"}
//   generic:    {"question" | "context", "choices" | "endings": [...], "answer" | "label" | "gold": index}
// ARC and MMLU contexts are "Question: Q\nAnswer:" with continuations " CHOICE"; Winogrande puts
// each option in the blank and scores the rest of the sentence (partial scoring).
std::vector<ChoiceTask> read_choice_jsonl(const std::string& path);

struct ChoiceOptions {
  int limit = 0;        // 0: every task; else this many, drawn with `seed` (same seed, same tasks)
  uint64_t seed = 1;
  int n_ctx = 2048;     // longest context + continuation; a longer choice is an error naming the task
  model::KvType cache_type = model::KvType::f32;
};

struct TaskScore {
  std::vector<double> logprob;  // per choice: summed log-likelihood of the continuation
  std::vector<int> length;      // per choice: scored tokens (or bytes), the acc_norm divisor
  int pick = 0, pick_norm = 0;
};

// Accuracy with its 95% Wilson interval.
struct Accuracy {
  int correct = 0, total = 0;
  double value() const { return total ? static_cast<double>(correct) / total : 0; }
  double low() const;
  double high() const;
  double stderr_of_mean() const;  // sqrt(p (1 - p) / (n - 1))
};

struct ChoiceResult {
  Accuracy acc, acc_norm;
  std::vector<TaskScore> tasks;  // in the order evaluated
};

// Scores one task (exposed for tests).
TaskScore score_task(const model::Model& model, const tokenizer::Tokenizer& tokenizer, const ChoiceTask& task,
                     const ChoiceOptions& options);

using TaskCallback = std::function<void(int done, int total, const ChoiceResult& so_far)>;

// Selects tasks per `options` and scores them. Throws etna::Error (invalid_argument) for an
// empty set or a task whose choices do not fit n_ctx.
ChoiceResult evaluate_choices(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
                              std::vector<ChoiceTask> tasks, const ChoiceOptions& options,
                              const TaskCallback& on_task = {});

}  // namespace etna::eval
