// The chat-model side of answering from a collection, shared by `etna ask` and `etna eval
// answers` / `eval generate`: the model, its tokenizer and chat template (a plain prompt when it
// has none), the context size, and generation from a rendered prompt.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "etna/engine/generator.h"
#include "etna/model/model.h"
#include "etna/rag/answer.h"
#include "etna/tokenizer/chat_template.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {

class RagAnswerer {
 public:
  // Loads `model_path` with a context of `ctx` tokens (0: the model's, at most 4096). A chat
  // template the model carries but Etna cannot read is reported on stderr and a plain prompt used.
  // Throws etna::Error as model::Model::load does.
  RagAnswerer(const std::string& model_path, int ctx);

  int n_ctx() const { return n_ctx_; }
  const tokenizer::ChatTemplate* chat_template() const { return tmpl_ ? &*tmpl_ : nullptr; }

  // Token ids of a rendered prompt (BOS added unless the template wrote it).
  std::vector<tokenizer::Token> encode(const std::string& text) const;

  // The answer prompt for `question` over `hits`, keeping `reserve` tokens of the context for the
  // answer (sources dropped or shortened to fit, as rag::build_answer_prompt does).
  rag::AnswerPrompt answer_prompt(const std::string& question, std::vector<rag::SearchHit> hits, int reserve) const;

  // One user message rendered through the template with the generation prompt (plain: the text).
  std::string render_user(const std::string& user) const;

  // Generates from a rendered prompt, from a fresh cache.
  engine::GenerationResult generate(const std::string& prompt, const engine::SamplingParams& params,
                                    const engine::PieceCallback& stream = {});

  // Called as the prompt is read (tokens done, total), for progress on a terminal.
  void set_prompt_progress(std::function<void(int done, int total)> f) { gen_->set_prompt_progress(std::move(f)); }

  // Tokens of the prompt the last generate() read.
  std::size_t last_prompt_tokens() const { return last_prompt_tokens_; }

 private:
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  std::optional<tokenizer::ChatTemplate> tmpl_;
  std::string bos_text_;
  int n_ctx_ = 0;
  std::unique_ptr<engine::Generator> gen_;
  std::size_t last_prompt_tokens_ = 0;
};

}  // namespace etna::cli
