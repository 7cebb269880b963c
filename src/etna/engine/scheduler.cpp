#include "etna/engine/scheduler.h"

#include <algorithm>
#include <optional>

#include "etna/base/log.h"
#include "etna/engine/json_schema.h"
#include "etna/engine/stop_strings.h"

namespace etna::engine {

// ---- RequestStream -------------------------------------------------------------------------

bool RequestStream::next(GenerationEvent& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [this] { return !events_.empty(); })) return false;
  out = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestStream::push(GenerationEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

// ---- Scheduler state -----------------------------------------------------------------------

// The request occupying a slot and everything needed to continue it.
struct Scheduler::Active {
  Active(GenerationRequest r, std::shared_ptr<RequestStream> s, const tokenizer::Tokenizer& tok, uint64_t order,
         std::shared_ptr<GrammarMasker> m)
      : request(std::move(r)), stream(std::move(s)), sampler(request.params), detok(tok), stops(request.params.stop),
        admitted(order), masker(std::move(m)) {
    if (request.grammar) grammar.emplace(request.grammar);
  }

  GenerationRequest request;
  std::shared_ptr<RequestStream> stream;
  Sampler sampler;
  tokenizer::Detokenizer detok;
  StopStringFilter stops;
  std::optional<GrammarState> grammar;  // over sampled token texts: drives the mask
  uint64_t admitted;
  std::shared_ptr<GrammarMasker> masker;  // shared with requests using the same grammar
  size_t next_prompt = 0;          // index of the next prompt token to evaluate
  Token pending = tokenizer::kNoToken;  // sampled, evaluated in the next step
  int generated = 0;               // tokens sampled (end-of-generation included)
  int output_tokens = 0;           // tokens in the output
  int cached = 0;                  // prompt tokens reused from the cache
  GenerationEvent out;             // accumulates until pushed
};

struct Scheduler::Slot {
  int id = 0;
  std::vector<Token> cached;  // tokens whose keys/values are in cells 0..cached.size()-1
  std::unique_ptr<Active> active;
  uint64_t last_used = 0;
  int logits_row = -1;        // row of this step's logits, -1 when none
};

namespace {

size_t common_prefix(const std::vector<Token>& a, const std::vector<Token>& b) {
  size_t n = 0;
  const size_t m = std::min(a.size(), b.size());
  while (n < m && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

Scheduler::Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  if (options_.n_parallel < 1 || options_.n_parallel > 256)
    fail(ErrorKind::invalid_argument, "the number of parallel sequences must be in 1..256 (got {})", options_.n_parallel);
  if (options_.n_ctx < 8) fail(ErrorKind::invalid_argument, "the context per sequence must be at least 8 (got {})", options_.n_ctx);
  if (options_.queue_capacity < 0) fail(ErrorKind::invalid_argument, "the queue size must be >= 0 (got {})", options_.queue_capacity);
  if (options_.step_tokens < 1) fail(ErrorKind::invalid_argument, "the step token budget must be positive");
  cache_ = model.make_cache(options_.n_parallel, options_.n_ctx, options_.cache_type, options_.step_tokens);
  const int n_vocab = model.config().n_vocab;
  pieces_.resize(static_cast<size_t>(n_vocab));
  for (int t = 0; t < n_vocab && static_cast<size_t>(t) < tokenizer.vocab().size(); ++t)
    if (!tokenizer.vocab().is_control(t)) pieces_[static_cast<size_t>(t)] = tokenizer.token_to_piece(t);
  for (int t = 0; t < n_vocab && static_cast<size_t>(t) < tokenizer.vocab().size(); ++t)
    if (tokenizer.vocab().is_end_of_generation(t)) eog_.push_back(t);
  trie_ = std::make_shared<TokenTrie>(pieces_);
  json_object_grammar_ = Grammar::parse(json_any_gbnf(true));
  for (int i = 0; i < options_.n_parallel; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->id = i;
  }
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& p : queue_) {
    GenerationEvent e;
    e.done = true;
    e.finish = FinishReason::cancelled;
    e.error = "the server is shutting down";
    p.stream->push(std::move(e));
  }
  for (auto& s : slots_)
    if (s->active) finish(*s, FinishReason::cancelled, "the server is shutting down");
}

std::shared_ptr<RequestStream> Scheduler::submit(GenerationRequest request) {
  if (request.prompt.empty()) fail(ErrorKind::invalid_argument, "the prompt is empty");
  const int n_vocab = model_.config().n_vocab;
  for (Token t : request.prompt)
    if (t < 0 || t >= n_vocab)
      fail(ErrorKind::invalid_argument, "token id {} is outside the vocabulary (0..{})", t, n_vocab - 1);
  if (request.prompt.size() > static_cast<size_t>(options_.n_ctx))
    fail(ErrorKind::limit, "the prompt has {} tokens but the context holds only {} per sequence", request.prompt.size(),
         options_.n_ctx);
  request.params.validate();
  if (request.json_object && !request.grammar) request.grammar = json_object_grammar_;
  for (const auto& [t, bias] : request.logit_bias)
    if (t < 0 || t >= n_vocab) fail(ErrorKind::invalid_argument, "logit_bias: token id {} is outside the vocabulary (0..{})", t, n_vocab - 1);
  if (request.grammar) (void)GrammarState(request.grammar);  // an ambiguous start fails here, not in a step

  auto stream = std::make_shared<RequestStream>();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) fail(ErrorKind::unavailable, "the server is shutting down");
    // Requests whose clients left give their place up now, wherever they are in the queue (the
    // scheduler only looks at the front, when a slot frees up).
    std::erase_if(queue_, [](const Pending& p) {
      if (!p.stream->cancelled()) return false;
      GenerationEvent e;
      e.done = true;
      e.finish = FinishReason::cancelled;
      p.stream->push(std::move(e));
      return true;
    });
    stats_.queued = static_cast<int>(queue_.size());
    // Free slots count as room: a burst arriving between two steps is not refused.
    const size_t room = static_cast<size_t>(options_.queue_capacity + options_.n_parallel - stats_.active);
    if (queue_.size() >= room)
      throw QueueFullError(fmt::format("the server is busy: {} requests are waiting (limit {}); retry shortly",
                                       queue_.size(), options_.queue_capacity));
    queue_.push_back({std::move(request), stream});
    stats_.queued = static_cast<int>(queue_.size());
  }
  cv_.notify_all();
  return stream;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::vector<Token> Scheduler::cached_tokens(int slot) const {
  if (slot < 0 || slot >= options_.n_parallel) fail(ErrorKind::invalid_argument, "slot {} out of range", slot);
  std::lock_guard lock(mutex_);
  return slots_[static_cast<size_t>(slot)]->cached;
}

// ---- Scheduler thread ----------------------------------------------------------------------

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty() || stats_.active > 0; });
      if (stopping_) return;
      admit_locked();
    }
    try {
      step();
    } catch (const std::exception& e) {
      // step() contains the model's own failures; anything here is a bug. Fail the running
      // requests rather than the whole server.
      log::error("scheduler: {}", e.what());
      for (auto& s : slots_)
        if (s->active) finish(*s, FinishReason::cancelled, std::string("internal error: ") + e.what());
    }
  }
}

std::shared_ptr<GrammarMasker> Scheduler::masker_for(const std::shared_ptr<const Grammar>& g) {
  std::erase_if(maskers_, [](const auto& e) { return e.first.expired(); });
  for (const auto& [weak, masker] : maskers_)
    if (weak.lock() == g) return masker;
  auto masker = std::make_shared<GrammarMasker>(trie_);
  maskers_.emplace_back(g, masker);
  return masker;
}

// REQUIRES: mutex_ held.
void Scheduler::admit_locked() {
  while (!queue_.empty()) {
    Pending& p = queue_.front();
    if (p.stream->cancelled()) {
      GenerationEvent e;
      e.done = true;
      e.finish = FinishReason::cancelled;
      p.stream->push(std::move(e));
      queue_.pop_front();
      continue;
    }
    const auto& prompt = p.request.prompt;
    // The free slot sharing the longest prefix with the prompt; ties go to the least recently
    // used, so that caches other conversations may come back to survive longest.
    Slot* dst = nullptr;
    size_t dst_common = 0;
    Slot* src = nullptr;
    size_t src_common = 0;
    for (auto& s : slots_) {
      const size_t c = common_prefix(s->cached, prompt);
      if (c > src_common) {
        src = s.get();
        src_common = c;
      }
      if (s->active) continue;
      if (!dst || c > dst_common || (c == dst_common && s->last_used < dst->last_used)) {
        dst = s.get();
        dst_common = c;
      }
    }
    if (!dst) return;  // every slot busy

    // Always evaluate at least the last prompt token: its logits choose the first new token.
    const size_t limit = prompt.size() - 1;
    // (A sliding-window cache may no longer hold what a prefix needs: reusable() says so.)
    size_t common = cache_->reusable(dst->id, static_cast<int>(std::min(dst_common, limit)));
    const size_t src_keep = src ? cache_->reusable(src->id, static_cast<int>(std::min(src_common, limit))) : 0;
    if (src && src != dst && src_keep >= common + static_cast<size_t>(options_.min_prefix_copy)) {
      common = src_keep;
      cache_->copy(src->id, dst->id, static_cast<int>(common));
      dst->cached.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(common));
    } else {
      cache_->truncate(dst->id, static_cast<int>(common));
      dst->cached.resize(common);
    }

    auto masker = p.request.grammar ? masker_for(p.request.grammar) : nullptr;
    auto active = std::make_unique<Active>(std::move(p.request), std::move(p.stream), tokenizer_, ++clock_, std::move(masker));
    queue_.pop_front();
    active->next_prompt = common;
    active->cached = static_cast<int>(common);
    for (Token t : active->request.prompt) active->sampler.accept(t);
    dst->active = std::move(active);
    dst->last_used = clock_;
    ++stats_.active;
    stats_.queued = static_cast<int>(queue_.size());
    stats_.prompt_tokens += dst->active->request.prompt.size();
    stats_.cached_prompt_tokens += common;
  }
}

bool Scheduler::step() {
  for (auto& s : slots_)
    if (s->active && s->active->stream->cancelled()) finish(*s, FinishReason::cancelled);

  batch_.clear();
  int rows = 0;
  int n_decode = 0;
  for (auto& s : slots_) {
    s->logits_row = -1;
    if (!s->active || s->active->pending == tokenizer::kNoToken) continue;
    batch_.add(s->active->pending, static_cast<int32_t>(s->cached.size()), s->id, true);
    s->logits_row = rows++;
    ++n_decode;
  }
  // Prompt chunks, oldest admission first, within what the decodes left of the budget.
  std::vector<Slot*> prefilling;
  for (auto& s : slots_)
    if (s->active && s->active->pending == tokenizer::kNoToken &&
        s->active->next_prompt < s->active->request.prompt.size())
      prefilling.push_back(s.get());
  std::sort(prefilling.begin(), prefilling.end(),
            [](const Slot* a, const Slot* b) { return a->active->admitted < b->active->admitted; });
  int budget = std::max(options_.step_tokens - n_decode, n_decode > 0 ? 0 : 1);
  std::vector<std::pair<Slot*, size_t>> chunks;  // slot, tokens taken this step
  for (Slot* s : prefilling) {
    if (budget <= 0) break;
    Active& a = *s->active;
    const size_t left = a.request.prompt.size() - a.next_prompt;
    const size_t take = std::min(left, static_cast<size_t>(budget));
    for (size_t i = 0; i < take; ++i) {
      const bool last = a.next_prompt + i + 1 == a.request.prompt.size();
      batch_.add(a.request.prompt[a.next_prompt + i], static_cast<int32_t>(s->cached.size() + i), s->id, last);
      if (last) s->logits_row = rows++;
    }
    chunks.emplace_back(s, take);
    budget -= static_cast<int>(take);
  }
  if (batch_.size() == 0) return false;

  try {
    model_.forward(batch_, *cache_, logits_);
  } catch (const std::exception& e) {
    for (auto& s : slots_) {
      if (!s->active) continue;
      const bool involved = std::find(batch_.seq.begin(), batch_.seq.end(), s->id) != batch_.seq.end();
      if (!involved) continue;
      const int keep = std::min(cache_->length(s->id), static_cast<int>(s->cached.size()));
      cache_->truncate(s->id, keep);
      s->cached.resize(static_cast<size_t>(keep));
      finish(*s, FinishReason::cancelled, e.what());
    }
    return true;
  }

  for (auto& s : slots_) {
    if (s->active && s->active->pending != tokenizer::kNoToken) {
      s->cached.push_back(s->active->pending);
      s->active->pending = tokenizer::kNoToken;
    }
  }
  for (auto& [s, take] : chunks) {
    Active& a = *s->active;
    s->cached.insert(s->cached.end(), a.request.prompt.begin() + static_cast<std::ptrdiff_t>(a.next_prompt),
                     a.request.prompt.begin() + static_cast<std::ptrdiff_t>(a.next_prompt + take));
    a.next_prompt += take;
  }
  {
    std::lock_guard lock(mutex_);
    ++stats_.steps;
    stats_.evaluated_tokens += batch_.size();
  }
  const size_t n_vocab = static_cast<size_t>(model_.config().n_vocab);
  for (auto& s : slots_)
    if (s->active && s->logits_row >= 0)
      process_token(*s, logits_.data() + static_cast<size_t>(s->logits_row) * n_vocab);
  return true;
}

void Scheduler::process_token(Slot& slot, const float* row) {
  Active& a = *slot.active;
  const size_t n_vocab = static_cast<size_t>(model_.config().n_vocab);
  std::span<const float> raw(row, n_vocab);
  std::span<const float> use = raw;
  std::vector<float> masked;
  if (!a.request.logit_bias.empty() || a.grammar) {
    masked.assign(raw.begin(), raw.end());
    for (const auto& [t, bias] : a.request.logit_bias) masked[static_cast<size_t>(t)] += bias;
    use = masked;
  }
  if (a.grammar) {
    if (!a.grammar->can_continue()) {
      finish(slot, FinishReason::stop);  // the sentence is complete and nothing may follow
      return;
    }
    size_t allowed = 0;
    try {
      allowed = a.masker->apply(*a.grammar, masked, eog_);
    } catch (const Error& e) {
      finish(slot, FinishReason::cancelled, e.what());
      return;
    }
    if (allowed == 0) {
      finish(slot, FinishReason::length);  // no token can continue the sentence: close it
      return;
    }
  }
  const Token t = a.sampler.sample(use);
  ++a.generated;
  {
    std::lock_guard lock(mutex_);
    ++stats_.generated_tokens;
  }
  if (tokenizer_.vocab().is_end_of_generation(t)) {
    finish(slot, FinishReason::stop);
    return;
  }
  a.sampler.accept(t);
  ++a.output_tokens;
  a.out.tokens.push_back(t);
  if (a.request.logprobs) a.out.logprobs.push_back(logprobs_of(raw, t, a.request.params.n_logprobs));
  if (a.grammar) {
    try {
      a.grammar->feed(pieces_[static_cast<size_t>(t)]);  // allowed by the mask, so accepted
    } catch (const Error& e) {
      finish(slot, FinishReason::cancelled, e.what());
      return;
    }
  }

  const std::string text = a.stops.push(a.detok.push(t));
  a.out.text += text;

  if (a.stops.stopped() || (a.grammar && !a.grammar->can_continue())) {
    finish(slot, FinishReason::stop);
    return;
  }
  const int max_tokens = a.request.params.max_tokens;
  if ((max_tokens >= 0 && a.output_tokens >= max_tokens) || slot.cached.size() >= static_cast<size_t>(options_.n_ctx)) {
    finish(slot, FinishReason::length);
    return;
  }
  a.pending = t;
  GenerationEvent e = std::move(a.out);
  a.out = GenerationEvent{};
  a.stream->push(std::move(e));
}

void Scheduler::finish(Slot& slot, FinishReason reason, const std::string& error) {
  Active& a = *slot.active;
  GenerationEvent e = std::move(a.out);
  if (error.empty() && reason != FinishReason::cancelled && !a.stops.stopped()) {
    // Text held back for UTF-8 completion or a possible stop string is final now.
    std::string tail = a.stops.push(a.detok.flush());
    if (!a.stops.stopped()) tail += a.stops.flush();
    if (a.stops.stopped()) reason = FinishReason::stop;
    e.text += tail;
  }
  if (error.empty() && reason == FinishReason::length && a.grammar && !a.stops.stopped()) e.text += a.grammar->closing_text();
  e.done = true;
  e.finish = reason;
  e.error = error;
  e.prompt_tokens = static_cast<int>(a.request.prompt.size());
  e.cached_tokens = a.cached;
  e.completion_tokens = a.generated;
  // Free the slot and update the counters before the final event is delivered, so a client
  // that has seen its request finish also sees it gone from stats().
  // The pending token (if any) was never evaluated, so slot.cached stays consistent.
  std::shared_ptr<RequestStream> stream = std::move(a.stream);
  slot.active.reset();
  {
    std::lock_guard lock(mutex_);
    --stats_.active;
  }
  stream->push(std::move(e));
}

}  // namespace etna::engine
