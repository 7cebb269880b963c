#include "etna/eval/perplexity.h"

#include <cerrno>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::eval {

double NllStats::stderr_of_mean() const {
  if (count < 2) return 0;
  const double n = static_cast<double>(count);
  const double var = sum_sq / n - (sum / n) * (sum / n);
  return var > 0 ? std::sqrt(var / (n - 1)) : 0;
}

double PerplexityResult::ppl() const { return std::exp(nll.mean()); }
double PerplexityResult::ppl_stderr() const { return ppl() * nll.stderr_of_mean(); }

std::vector<int32_t> perplexity_tokens(const tokenizer::Tokenizer& tokenizer, const std::string& text) {
  tokenizer::EncodeOptions opt;
  opt.add_special = true;
  return tokenizer.encode(text, opt);
}

void log_softmax(const float* row, int n, float* out) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(row[i] - mx);
  const double log_sum = std::log(sum);
  for (int i = 0; i < n; ++i) out[i] = static_cast<float>((row[i] - mx) - log_sum);
}

namespace {

// -log p(tok) from one row of logits, summed as the peer sums it (float max, double sum of expf).
double token_nll(const float* row, int n, int tok) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(row[i] - mx);
  return -(static_cast<double>(row[tok] - mx) - std::log(sum));
}

}  // namespace

PerplexityResult perplexity(const model::Model& model, const std::vector<int32_t>& tokens, int32_t bos,
                            const PerplexityOptions& o, const ChunkCallback& on_chunk, const LogprobSink& sink) {
  if (o.n_ctx < 4) fail(ErrorKind::invalid_argument, "the context size must be at least 4 tokens (got {})", o.n_ctx);
  if (o.n_batch < 1) fail(ErrorKind::invalid_argument, "the batch size must be at least 1 (got {})", o.n_batch);
  if (o.max_chunks < 0) fail(ErrorKind::invalid_argument, "the chunk count cannot be negative (got {})", o.max_chunks);
  const int n_tokens = static_cast<int>(tokens.size());
  if (n_tokens < 2 * o.n_ctx)
    fail(ErrorKind::invalid_argument,
         "the text has {} tokens; perplexity with a context of {} needs at least {} (use a longer text or a smaller -c)",
         n_tokens, o.n_ctx, 2 * o.n_ctx);
  const int n_vocab = model.config().n_vocab;
  const int n_batch = std::min(o.n_batch, o.n_ctx);
  int n_chunks = n_tokens / o.n_ctx;
  if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);

  PerplexityResult out;
  out.n_tokens = n_tokens;
  out.n_chunks = n_chunks;
  auto cache = model.make_cache(1, o.n_ctx, o.cache_type);
  std::vector<float> logits, chunk_logits(static_cast<size_t>(o.n_ctx) * n_vocab), logprobs(sink ? n_vocab : 0);
  const int first = o.n_ctx / 2;
  for (int c = 0; c < n_chunks; ++c) {
    const int start = c * o.n_ctx;
    cache->clear(0);
    for (int b0 = 0; b0 < o.n_ctx; b0 += n_batch) {
      model::Batch batch;
      for (int i = b0; i < std::min(o.n_ctx, b0 + n_batch); ++i) {
        int32_t t = tokens[start + i];
        if (i == 0 && bos != kNoBos) t = bos;
        batch.add(t, i, 0, true);
      }
      model.forward(batch, *cache, logits);
      std::memcpy(&chunk_logits[static_cast<size_t>(b0) * n_vocab], logits.data(), logits.size() * sizeof(float));
    }
    ChunkScore score;
    score.index = c;
    // Position i predicts token i + 1; the last position has nothing to predict in this chunk.
    for (int i = first; i < o.n_ctx - 1; ++i) {
      const float* row = &chunk_logits[static_cast<size_t>(i) * n_vocab];
      const int32_t next = tokens[start + i + 1];
      const double v = token_nll(row, n_vocab, next);
      out.nll.add(v);
      score.nll += v;
      ++score.count;
      if (sink) {
        log_softmax(row, n_vocab, logprobs.data());
        sink(logprobs.data(), n_vocab, next);
      }
    }
    score.running_ppl = out.ppl();
    if (on_chunk) on_chunk(score, n_chunks);
  }
  return out;
}

// ---- KL base files ----------------------------------------------------------------------------

namespace {

constexpr char kMagic[8] = {'E', 'T', 'N', 'A', 'K', 'L', 'B', '1'};

struct Header {
  char magic[8];
  uint32_t n_vocab, n_ctx, n_tokens, reserved;
  uint64_t token_hash;
};

// FNV-1a over the token ids: a cheap check that the base was made from the same text.
uint64_t hash_tokens(const std::vector<int32_t>& tokens) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : tokens) {
    for (int b = 0; b < 4; ++b) {
      h ^= static_cast<uint8_t>(static_cast<uint32_t>(t) >> (8 * b));
      h *= 1099511628211ull;
    }
  }
  return h;
}

struct File {
  std::FILE* f = nullptr;
  ~File() { if (f) std::fclose(f); }
};

}  // namespace

struct KlBaseWriter::Impl {
  std::string path;
  File file;
  int n_vocab;
};

KlBaseWriter::KlBaseWriter(const std::string& path, int n_vocab, int n_ctx, const std::vector<int32_t>& tokens)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->n_vocab = n_vocab;
  impl_->file.f = std::fopen(path.c_str(), "wb");
  if (!impl_->file.f) fail(ErrorKind::io, "cannot create the KL base file {}: {}", path, std::strerror(errno));
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.n_vocab = static_cast<uint32_t>(n_vocab);
  h.n_ctx = static_cast<uint32_t>(n_ctx);
  h.n_tokens = static_cast<uint32_t>(tokens.size());
  h.token_hash = hash_tokens(tokens);
  if (std::fwrite(&h, sizeof h, 1, impl_->file.f) != 1) fail(ErrorKind::io, "cannot write {}", path);
}

KlBaseWriter::~KlBaseWriter() = default;

void KlBaseWriter::add(const float* logprobs, int32_t next_token) {
  std::FILE* f = impl_->file.f;
  if (!f) fail(ErrorKind::internal, "KL base file already finished");
  if (std::fwrite(&next_token, sizeof next_token, 1, f) != 1 ||
      std::fwrite(logprobs, sizeof(float), static_cast<size_t>(impl_->n_vocab), f) != static_cast<size_t>(impl_->n_vocab))
    fail(ErrorKind::io, "cannot write the KL base file {} (disk full?)", impl_->path);
}

void KlBaseWriter::finish() {
  std::FILE* f = impl_->file.f;
  impl_->file.f = nullptr;
  if (f && std::fclose(f) != 0) fail(ErrorKind::io, "cannot write the KL base file {}", impl_->path);
}

struct KlComparer::Impl {
  std::string path;
  File file;
  int n_vocab;
  std::vector<float> base;
  NllStats kl;
  double max_kl = 0;
  int64_t agree = 0;
  NllStats base_nll, nll;
};

KlComparer::KlComparer(const std::string& path, int n_vocab, int n_ctx, const std::vector<int32_t>& tokens)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->n_vocab = n_vocab;
  impl_->base.resize(n_vocab);
  impl_->file.f = std::fopen(path.c_str(), "rb");
  if (!impl_->file.f) fail(ErrorKind::not_found, "cannot open the KL base file {}: {}", path, std::strerror(errno));
  Header h{};
  if (std::fread(&h, sizeof h, 1, impl_->file.f) != 1 || std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    fail(ErrorKind::corrupt, "{} is not a KL base file (make one with `etna eval perplexity --kl-base FILE`)", path);
  if (static_cast<int>(h.n_vocab) != n_vocab)
    fail(ErrorKind::invalid_argument, "{} was made with a {}-token vocabulary; this model has {}", path, h.n_vocab, n_vocab);
  if (static_cast<int>(h.n_ctx) != n_ctx)
    fail(ErrorKind::invalid_argument, "{} was made with -c {}; run this comparison with -c {} too", path, h.n_ctx, h.n_ctx);
  if (h.n_tokens != tokens.size() || h.token_hash != hash_tokens(tokens))
    fail(ErrorKind::invalid_argument,
         "{} was made from another text or tokenizer ({} tokens; this text gives {}): use the same file", path,
         h.n_tokens, tokens.size());
}

KlComparer::~KlComparer() = default;

void KlComparer::add(const float* logprobs, int32_t next_token) {
  Impl& m = *impl_;
  int32_t base_next = 0;
  if (std::fread(&base_next, sizeof base_next, 1, m.file.f) != 1 ||
      std::fread(m.base.data(), sizeof(float), m.base.size(), m.file.f) != m.base.size())
    fail(ErrorKind::invalid_argument, "{} has fewer positions than this run scores (was it made with a --chunks limit?)",
         m.path);
  if (base_next != next_token)
    fail(ErrorKind::invalid_argument, "{} does not match this text (another token at position {})", m.path,
         m.kl.count);
  double kl = 0;
  int argmax_base = 0, argmax = 0;
  for (int i = 0; i < m.n_vocab; ++i) {
    const double lb = m.base[i];
    if (lb > -std::numeric_limits<float>::infinity()) kl += std::exp(lb) * (lb - static_cast<double>(logprobs[i]));
    if (m.base[i] > m.base[argmax_base]) argmax_base = i;
    if (logprobs[i] > logprobs[argmax]) argmax = i;
  }
  kl = std::max(kl, 0.0);  // rounding can make a zero divergence a tiny negative number
  m.kl.add(kl);
  m.max_kl = std::max(m.max_kl, kl);
  if (argmax == argmax_base) ++m.agree;
  m.base_nll.add(-static_cast<double>(m.base[next_token]));
  m.nll.add(-static_cast<double>(logprobs[next_token]));
}

KlResult KlComparer::result() const {
  const Impl& m = *impl_;
  KlResult r;
  r.positions = m.kl.count;
  r.mean_kl = m.kl.mean();
  r.kl_stderr = m.kl.stderr_of_mean();
  r.max_kl = m.max_kl;
  r.top1_agreement = m.kl.count ? static_cast<double>(m.agree) / static_cast<double>(m.kl.count) : 0;
  r.base_ppl = std::exp(m.base_nll.mean());
  r.ppl = std::exp(m.nll.mean());
  return r;
}

std::string read_text_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(ErrorKind::not_found, "cannot open {}: {}", path, std::strerror(errno));
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) fail(ErrorKind::io, "cannot read {}", path);
  return s;
}

}  // namespace etna::eval
