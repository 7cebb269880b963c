// Continuous batching: one thread runs the model for up to n_parallel sequences ("slots") at
// once. Every step evaluates one Batch holding the next token of each decoding sequence plus
// chunks of newly admitted prompts (within a per-step token budget), so new arrivals start soon
// and running streams never stall. Requests join between steps; a request whose prompt shares a
// prefix with a slot's cached tokens reuses those cells. Callers (HTTP threads) submit requests
// and read their tokens from a thread-safe RequestStream.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "etna/base/error.h"
#include "etna/engine/generator.h"
#include "etna/engine/grammar.h"
#include "etna/engine/sampler.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::engine {

struct SchedulerOptions {
  int n_parallel = 4;        // slots (sequences evaluated together)
  int n_ctx = 4096;          // positions per slot
  int queue_capacity = 16;   // requests waiting for a slot; more are refused (QueueFullError)
  int step_tokens = 256;     // tokens per forward step (decodes first, then prompt chunks)
  int min_prefix_copy = 8;   // copy another slot's cells when that saves at least this many tokens
  model::KvType cache_type = model::KvType::f32;  // KV cache rows: f32, f16 or q8_0
};

struct GenerationRequest {
  std::vector<Token> prompt;  // BOS included when wanted; non-empty
  SamplingParams params;      // max_tokens < 0: until the context is full
  bool json_object = false;   // constrain the output to one JSON object (closed at the end)
  // Constrain the output to a sentence of this grammar (engine/grammar.h): only tokens that keep
  // the text a valid prefix are sampled, the end of generation only once it is complete, and
  // generation stops when nothing can follow. A reply cut short by max_tokens or the context gets
  // the grammar's shortest closing text appended. Wins over json_object.
  std::shared_ptr<const Grammar> grammar;
  // Added to the logits of these tokens before sampling (OpenAI's logit_bias, -100..100).
  std::vector<std::pair<Token, float>> logit_bias;
  bool logprobs = false;      // report each token's log-probability (and n_logprobs alternatives)
};

// One message from the scheduler to the requester. Events of a request arrive in order; the
// last has done = true.
struct GenerationEvent {
  std::string text;                    // newly final text (may be empty)
  std::vector<Token> tokens;           // tokens sampled since the previous event
  std::vector<SampledToken> logprobs;  // one per token when request.logprobs
  bool done = false;
  FinishReason finish = FinishReason::length;  // valid when done
  std::string error;                   // non-empty: the request failed (done is set)
  int prompt_tokens = 0;               // valid when done
  int cached_tokens = 0;               // prompt tokens reused from a slot's cache
  int completion_tokens = 0;           // sampled tokens (end-of-generation token included)
};

// The requester's side of one generation. Thread-safe.
class RequestStream {
 public:
  // Waits up to `timeout` for the next event; false when none arrived in time.
  bool next(GenerationEvent& out, std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this request at its next step and free its slot.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Scheduler side: appends an event.
  void push(GenerationEvent event);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

// Thrown by submit() when the waiting queue is full (HTTP 429).
class QueueFullError : public Error {
 public:
  explicit QueueFullError(const std::string& message) : Error(ErrorKind::unavailable, message) {}
};

struct SchedulerStats {
  int queued = 0;             // waiting for a slot
  int active = 0;             // occupying a slot
  uint64_t cached_prompt_tokens = 0;  // prompt tokens reused from slot caches
  uint64_t prompt_tokens = 0;     // prompt tokens of finished and running requests (cached ones included)
  uint64_t evaluated_tokens = 0;  // tokens actually run through the model (prompt and generated)
  uint64_t generated_tokens = 0;  // tokens sampled
  uint64_t steps = 0;             // forward passes
};

class Scheduler {
 public:
  // Starts the scheduler thread. The model and tokenizer must outlive the scheduler.
  // Throws etna::Error (invalid_argument) for bad options.
  Scheduler(const model::Model& model, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options);
  // Cancels everything still running or queued (their streams get a final error event) and joins.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws etna::Error (invalid_argument) for an empty prompt, bad token ids or
  // sampling parameters, (limit) when the prompt does not fit a slot's context, QueueFullError
  // when the queue is full.
  std::shared_ptr<RequestStream> submit(GenerationRequest request);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

  // The tokens whose keys/values slot `slot` holds. REQUIRES: no request running (tests).
  std::vector<Token> cached_tokens(int slot) const;

 private:
  struct Active;
  struct Slot;
  struct Pending {
    GenerationRequest request;
    std::shared_ptr<RequestStream> stream;
  };

  void run();
  void admit_locked();
  bool step();
  void finish(Slot& slot, FinishReason reason, const std::string& error = {});
  void process_token(Slot& slot, const float* logits);

  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  SchedulerOptions options_;
  std::unique_ptr<model::KvCache> cache_;
  std::vector<std::string> pieces_;  // token_to_piece of every token (grammar constraint)
  std::shared_ptr<const TokenTrie> trie_;  // pieces_ as a prefix trie
  std::shared_ptr<const Grammar> json_object_grammar_;
  std::vector<Token> eog_;  // end-of-generation tokens
  // Token masks per grammar, shared by the requests using the same Grammar object (the scheduler
  // thread is their only user); entries go when their grammar is no longer used.
  std::shared_ptr<GrammarMasker> masker_for(const std::shared_ptr<const Grammar>& g);
  std::vector<std::pair<std::weak_ptr<const Grammar>, std::shared_ptr<GrammarMasker>>> maskers_;
  std::vector<std::unique_ptr<Slot>> slots_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  uint64_t clock_ = 0;  // admission counter (least recently used slot choice)
  SchedulerStats stats_;  // guarded by mutex_

  model::Batch batch_;
  std::vector<float> logits_;
  std::thread thread_;
};

}  // namespace etna::engine
