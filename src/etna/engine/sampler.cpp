#include "etna/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "etna/base/error.h"

namespace etna::engine {

namespace {

constexpr int kMaxLogprobs = 20;
constexpr size_t kMaxStopStrings = 16;

// Orders candidates best first: higher logit, then lower id (so ties are deterministic).
template <typename C>
bool better(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

void check_finite_logits(std::span<const float> logits) {
  if (logits.empty()) fail(ErrorKind::internal, "sampler: empty logit row");
  for (float x : logits)
    if (std::isnan(x)) fail(ErrorKind::internal, "sampler: the model produced NaN logits");
}

}  // namespace

void SamplingParams::validate() const {
  if (std::isnan(temperature) || std::isinf(temperature))
    fail(ErrorKind::invalid_argument, "temperature must be a finite number (got {})", temperature);
  if (!(top_p > 0.0f && top_p <= 1.0f))
    fail(ErrorKind::invalid_argument, "top_p must be in (0, 1] (got {})", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    fail(ErrorKind::invalid_argument, "min_p must be in [0, 1] (got {})", min_p);
  if (top_k < 0) fail(ErrorKind::invalid_argument, "top_k must be >= 0, 0 disables it (got {})", top_k);
  if (!(repeat_penalty > 0.0f) || std::isinf(repeat_penalty))
    fail(ErrorKind::invalid_argument, "repeat_penalty must be a positive number, 1 disables it (got {})",
         repeat_penalty);
  if (repeat_last_n < 0)
    fail(ErrorKind::invalid_argument, "repeat_last_n must be >= 0 (got {})", repeat_last_n);
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    fail(ErrorKind::invalid_argument, "frequency_penalty must be in [-2, 2] (got {})", frequency_penalty);
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    fail(ErrorKind::invalid_argument, "presence_penalty must be in [-2, 2] (got {})", presence_penalty);
  if (stop.size() > kMaxStopStrings)
    fail(ErrorKind::invalid_argument, "at most {} stop strings are allowed (got {})", kMaxStopStrings,
         stop.size());
  for (const auto& s : stop)
    if (s.empty()) fail(ErrorKind::invalid_argument, "stop strings must not be empty");
  if (n_logprobs < 0 || n_logprobs > kMaxLogprobs)
    fail(ErrorKind::invalid_argument, "logprobs must be in [0, {}] (got {})", kMaxLogprobs, n_logprobs);
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)) {
  params_.validate();
  seed_ = params_.seed;
  if (seed_ == kRandomSeed) {
    std::random_device rd;
    do {
      seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    } while (seed_ == kRandomSeed);
  }
  rng_.seed(seed_);
}

void Sampler::reset() {
  history_.clear();
  rng_.seed(seed_);
}

void Sampler::accept(Token t) {
  if (params_.repeat_last_n == 0) return;
  history_.push_back(t);
  // Trim lazily so accept() stays O(1) amortised.
  const size_t keep = static_cast<size_t>(params_.repeat_last_n);
  if (history_.size() >= 2 * keep + 64) history_.erase(history_.begin(), history_.end() - keep);
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

void Sampler::apply_penalties(std::vector<Candidate>& c) const {
  const bool active = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                      params_.presence_penalty != 0.0f;
  if (!active || params_.repeat_last_n == 0 || history_.empty()) return;
  const size_t window = std::min(history_.size(), static_cast<size_t>(params_.repeat_last_n));
  std::unordered_map<Token, int> counts;
  for (size_t i = history_.size() - window; i < history_.size(); ++i) ++counts[history_[i]];
  for (const auto& [id, count] : counts) {
    if (id < 0 || static_cast<size_t>(id) >= c.size()) continue;
    float& logit = c[static_cast<size_t>(id)].logit;  // c is still indexed by id here
    // Dividing a positive logit and multiplying a negative one both make the token less likely.
    if (logit <= 0.0f)
      logit *= params_.repeat_penalty;
    else
      logit /= params_.repeat_penalty;
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
  }
}

Token Sampler::sample(std::span<const float> logits) {
  check_finite_logits(logits);
  auto& c = scratch_;
  c.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) c[i] = {static_cast<Token>(i), logits[i], 0.0f};
  apply_penalties(c);

  if (params_.temperature <= 0.0f) {
    size_t best = 0;
    for (size_t i = 1; i < c.size(); ++i)
      if (c[i].logit > c[best].logit) best = i;  // strict: the lowest id wins ties
    return c[best].id;
  }
  return draw(c);
}

Token Sampler::draw(std::vector<Candidate>& c) {
  // top-k: keep the k best, sorted best first.
  const size_t k = params_.top_k > 0 ? std::min(c.size(), static_cast<size_t>(params_.top_k)) : c.size();
  auto cmp = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  if (k < c.size()) {
    std::nth_element(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k), c.end(), cmp);
    c.resize(k);
  }
  std::sort(c.begin(), c.end(), cmp);

  // Probabilities of what is left, at temperature 1 (as llama.cpp's top-p / min-p see them).
  auto softmax = [&c](float temperature) {
    const float max = c.front().logit;
    double sum = 0.0;
    for (auto& x : c) {
      x.p = std::exp((x.logit - max) / temperature);
      sum += x.p;
    }
    for (auto& x : c) x.p = static_cast<float>(x.p / sum);
  };

  // top-p: the shortest best-first prefix whose probability mass reaches top_p.
  if (params_.top_p < 1.0f && c.size() > 1) {
    softmax(1.0f);
    double cum = 0.0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      cum += c[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }

  // min-p: drop tokens less likely than min_p times the most likely one.
  if (params_.min_p > 0.0f && c.size() > 1) {
    const float threshold = c.front().logit + std::log(params_.min_p);
    size_t keep = 1;
    while (keep < c.size() && c[keep].logit >= threshold) ++keep;
    c.resize(keep);
  }

  softmax(params_.temperature);
  const double u = uniform();
  double cum = 0.0;
  for (const auto& x : c) {
    cum += x.p;
    if (u < cum) return x.id;
  }
  return c.back().id;  // rounding left u just above the total mass
}

SampledToken Sampler::sample_with_logprobs(std::span<const float> logits) {
  Token t = sample(logits);
  return logprobs_of(logits, t, params_.n_logprobs);
}

SampledToken logprobs_of(std::span<const float> logits, Token token, int n_top) {
  if (logits.empty()) fail(ErrorKind::internal, "logprobs: empty logit row");
  if (token < 0 || static_cast<size_t>(token) >= logits.size())
    fail(ErrorKind::internal, "logprobs: token {} outside the vocabulary of {}", token, logits.size());
  float max = -std::numeric_limits<float>::infinity();
  for (float x : logits) max = std::max(max, x);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  const double lse = max + std::log(sum);

  SampledToken out;
  out.token = token;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(token)] - lse);
  const size_t n = std::min(logits.size(), static_cast<size_t>(std::max(n_top, 0)));
  if (n > 0) {
    struct Item {
      Token id;
      float logit;
    };
    std::vector<Item> items(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) items[i] = {static_cast<Token>(i), logits[i]};
    auto cmp = [](const Item& a, const Item& b) { return better(a, b); };
    std::partial_sort(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(n), items.end(), cmp);
    out.top.reserve(n);
    for (size_t i = 0; i < n; ++i) out.top.push_back({items[i].id, static_cast<float>(items[i].logit - lse)});
  }
  return out;
}

}  // namespace etna::engine
