#include "etna/engine/generator.h"

#include <algorithm>
#include <chrono>

#include "etna/base/error.h"
#include "etna/engine/lookup.h"
#include "etna/engine/stop_strings.h"

namespace etna::engine {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "unknown";
}

double Timings::prompt_tps() const {
  const int evaluated = prompt_tokens - cached_tokens;
  return evaluated > 0 && prompt_ms > 0.0 ? evaluated * 1000.0 / prompt_ms : 0.0;
}

double Timings::gen_tps() const {
  return generated_tokens > 0 && gen_ms > 0.0 ? generated_tokens * 1000.0 / gen_ms : 0.0;
}

Generator::Generator(const model::Model& model, const tokenizer::Tokenizer& tokenizer, int n_ctx, int n_batch,
                     model::KvType cache_type)
    : model_(model), tokenizer_(tokenizer), n_ctx_(n_ctx), n_batch_(n_batch) {
  const auto& cfg = model.config();
  if (n_ctx_ <= 0) n_ctx_ = cfg.n_ctx_train > 0 ? cfg.n_ctx_train : 2048;
  if (n_batch_ <= 0) fail(ErrorKind::invalid_argument, "batch size must be positive (got {})", n_batch);
  cache_ = model.make_cache(1, n_ctx_, cache_type, n_batch_);
}

void Generator::reset() {
  cache_->clear(0);
  cached_.clear();
}

void Generator::set_lookup(int n_draft) {
  if (n_draft < 0) fail(ErrorKind::invalid_argument, "the lookup draft length must be >= 0 (got {})", n_draft);
  n_lookup_ = n_draft;
}

void Generator::drop_cached(size_t n) {
  n = std::min(n, cached_.size());
  cached_.resize(cached_.size() - n);
  cache_->truncate(0, static_cast<int>(cached_.size()));
}

void Generator::evaluate(std::span<const Token> tokens, bool all_logits) {
  const int n_vocab = model_.config().n_vocab;
  if (all_logits && tokens.size() > static_cast<size_t>(n_batch_))
    fail(ErrorKind::internal, "{} tokens with logits do not fit one batch of {}", tokens.size(), n_batch_);
  for (size_t start = 0; start < tokens.size(); start += static_cast<size_t>(n_batch_)) {
    const size_t end = std::min(tokens.size(), start + static_cast<size_t>(n_batch_));
    batch_.clear();
    for (size_t i = start; i < end; ++i) {
      Token t = tokens[i];
      if (t < 0 || t >= n_vocab)
        fail(ErrorKind::invalid_argument, "token id {} is outside the vocabulary (0..{})", t, n_vocab - 1);
      batch_.add(t, static_cast<int32_t>(cached_.size() + (i - start)), 0, all_logits || i + 1 == tokens.size());
    }
    try {
      model_.forward(batch_, *cache_, logits_);
    } catch (...) {
      // The cache beyond cached_ is unspecified now; make it agree with cached_ again.
      cache_->truncate(0, std::min(cache_->length(0), static_cast<int>(cached_.size())));
      throw;
    }
    cached_.insert(cached_.end(), tokens.begin() + static_cast<std::ptrdiff_t>(start),
                   tokens.begin() + static_cast<std::ptrdiff_t>(end));
  }
  const size_t rows = all_logits ? tokens.size() : 1;
  if (logits_.size() != rows * static_cast<size_t>(n_vocab))
    fail(ErrorKind::internal, "forward pass returned {} logits, expected {}", logits_.size(), rows * n_vocab);
}

GenerationResult Generator::generate(std::span<const Token> prompt, const SamplingParams& params,
                                     const PieceCallback& on_piece) {
  if (prompt.empty()) fail(ErrorKind::invalid_argument, "the prompt is empty");
  if (prompt.size() > static_cast<size_t>(n_ctx_))
    fail(ErrorKind::limit, "the prompt has {} tokens but the context holds only {} (use a larger context)",
         prompt.size(), n_ctx_);
  Sampler sampler(params);  // validates the parameters before any work
  GenerationResult result;
  result.seed = sampler.seed();
  result.timings.prompt_tokens = static_cast<int>(prompt.size());

  // Reuse the longest cached prefix, but always evaluate at least the last prompt token: its
  // logits choose the first new token.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  common = cache_->reusable(0, static_cast<int>(common));  // a sliding-window ring may have moved on
  cache_->truncate(0, static_cast<int>(common));
  cached_.resize(common);
  result.timings.cached_tokens = static_cast<int>(common);

  for (Token t : prompt) sampler.accept(t);

  auto t0 = Clock::now();
  const std::span<const Token> rest = prompt.subspan(common);
  if (!prompt_progress_) {
    evaluate(rest);
  } else {
    // Batch by batch, as evaluate() would, reporting after each (the last batch's logits stay).
    const size_t step = static_cast<size_t>(n_batch_);
    for (size_t s = 0; s < rest.size(); s += step) {
      const size_t n = std::min(step, rest.size() - s);
      evaluate(rest.subspan(s, n));
      prompt_progress_(static_cast<int>(s + n), static_cast<int>(rest.size()));
    }
  }
  result.timings.prompt_ms = ms_since(t0);

  tokenizer::Detokenizer detok(tokenizer_);
  StopStringFilter stops(params.stop);
  const auto& vocab = tokenizer_.vocab();
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return true;
    result.text += piece;
    return on_piece ? on_piece(piece) : true;
  };

  // Prompt lookup: `drafts` were evaluated after the last sampled token; the first `confirmed`
  // of them have since been sampled too, and logits_ row `row` is the one to sample from next.
  const size_t n_vocab = static_cast<size_t>(model_.config().n_vocab);
  std::vector<Token> history, drafts, step;
  size_t confirmed = 0, row = 0;
  // Guesses cost batch slots even when wrong, so the draft length adapts: it doubles after a
  // fully confirmed draft and shrinks to one past the confirmed part after a miss.
  int draft_len = n_lookup_;
  if (n_lookup_ > 0) history.assign(prompt.begin(), prompt.end());

  t0 = Clock::now();
  bool done = false;
  if (params.max_tokens == 0) {
    result.finish = FinishReason::length;
    done = true;
  }
  while (!done) {
    SampledToken s;
    const std::span<const float> logits(logits_.data() + row * n_vocab, n_vocab);
    if (params.n_logprobs > 0)
      s = sampler.sample_with_logprobs(logits);
    else
      s.token = sampler.sample(logits);
    const Token t = s.token;
    ++result.timings.generated_tokens;
    if (vocab.is_end_of_generation(t)) {
      result.finish = FinishReason::stop;
      break;
    }
    sampler.accept(t);
    result.tokens.push_back(t);
    if (params.n_logprobs > 0) result.logprobs.push_back(std::move(s));

    const bool keep_going = emit(stops.push(detok.push(t)));
    if (stops.stopped()) {
      result.finish = FinishReason::stop;
      result.stop_string = stops.matched();
      break;
    }
    if (!keep_going) {
      result.finish = FinishReason::cancelled;
      break;
    }
    if (params.max_tokens > 0 && result.tokens.size() >= static_cast<size_t>(params.max_tokens)) {
      result.finish = FinishReason::length;
      break;
    }
    if (n_lookup_ > 0) {
      history.push_back(t);
      if (confirmed < drafts.size() && drafts[confirmed] == t) {
        ++confirmed;  // t is already evaluated: its logits are the next row
        ++row;
        ++result.timings.accepted_tokens;
        continue;
      }
      if (!drafts.empty())
        draft_len = confirmed == drafts.size() ? std::min(n_lookup_, 2 * draft_len)
                                               : std::max(1, static_cast<int>(confirmed) + 1);
      drop_cached(drafts.size() - confirmed);  // guesses after a mismatch are not in the text
      drafts.clear();
      confirmed = row = 0;
    }
    if (cached_.size() >= static_cast<size_t>(n_ctx_)) {
      result.finish = FinishReason::length;  // no cell left to evaluate t
      break;
    }
    if (n_lookup_ > 0) {
      const size_t room = std::min(static_cast<size_t>(n_ctx_) - cached_.size(), static_cast<size_t>(n_batch_)) - 1;
      int matched = 0;
      drafts = lookup_draft(history, static_cast<int>(std::min(room, static_cast<size_t>(draft_len))), 3, &matched);
      if (matched < 2 && drafts.size() > 1) drafts.erase(drafts.begin() + 1, drafts.end());  // a weak hint
      result.timings.drafted_tokens += static_cast<int>(drafts.size());
      step.assign(1, t);
      step.insert(step.end(), drafts.begin(), drafts.end());
      evaluate(step, true);
      continue;
    }
    const Token one[1] = {t};
    evaluate(one);
  }
  drop_cached(drafts.size() - confirmed);  // unconfirmed guesses never stay in the cache
  // Text held back for UTF-8 completion or a possible stop string is final now.
  if (!stops.stopped() && result.finish != FinishReason::cancelled) {
    std::string tail = stops.push(detok.flush());
    if (!stops.stopped()) tail += stops.flush();
    emit(tail);
    if (stops.stopped()) {
      result.finish = FinishReason::stop;
      result.stop_string = stops.matched();
    }
  }
  result.timings.gen_ms = ms_since(t0);
  return result;
}

}  // namespace etna::engine
