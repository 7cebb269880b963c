#include "cli/rag_answerer.h"

#include <algorithm>
#include <cstdio>

#include "etna/base/error.h"

namespace etna::cli {

constexpr int kDefaultMaxContext = 4096;

RagAnswerer::RagAnswerer(const std::string& model_path, int ctx) {
  if (ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", ctx);
  model_ = model::Model::load(model_path);
  tok_ = tokenizer::Tokenizer::from_gguf(model_->file());
  const int n_ctx_train = model_->config().n_ctx_train;
  n_ctx_ = ctx > 0 ? ctx : std::min(n_ctx_train > 0 ? n_ctx_train : kDefaultMaxContext, kDefaultMaxContext);
  if (model_->file().has("tokenizer.chat_template")) {
    try {
      tmpl_.emplace(tokenizer::ChatTemplate::from_gguf(model_->file()));
    } catch (const Error& e) {
      std::fprintf(stderr, "etna: warning: %s; using a plain prompt\n", e.what());
    }
  }
  const auto& vocab = tok_->vocab();
  bos_text_ = vocab.bos >= 0 ? vocab.tokens[static_cast<size_t>(vocab.bos)] : "";
  gen_ = std::make_unique<engine::Generator>(*model_, *tok_, n_ctx_);
}

std::vector<tokenizer::Token> RagAnswerer::encode(const std::string& text) const {
  tokenizer::EncodeOptions enc;
  enc.parse_special = tmpl_.has_value();
  enc.add_special = !tmpl_ || bos_text_.empty() || text.compare(0, bos_text_.size(), bos_text_) != 0;
  return tok_->encode(text, enc);
}

rag::AnswerPrompt RagAnswerer::answer_prompt(const std::string& question, std::vector<rag::SearchHit> hits,
                                             int reserve) const {
  rag::AnswerPromptOptions popt;
  popt.chat_template = chat_template();
  popt.max_prompt_tokens = static_cast<size_t>(std::max(1, n_ctx_ - reserve));
  return rag::build_answer_prompt(question, std::move(hits), popt,
                                  [&](const std::string& t) { return encode(t).size(); });
}

std::string RagAnswerer::render_user(const std::string& user) const {
  return tmpl_ ? tmpl_->render({{"user", user}}, /*add_generation_prompt=*/true) : user + "\n\n";
}

engine::GenerationResult RagAnswerer::generate(const std::string& prompt, const engine::SamplingParams& params,
                                               const engine::PieceCallback& stream) {
  gen_->reset();
  const std::vector<tokenizer::Token> tokens = encode(prompt);
  last_prompt_tokens_ = tokens.size();
  return gen_->generate(tokens, params, stream);
}

}  // namespace etna::cli
