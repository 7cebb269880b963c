// The shared blocks of the decoder forward passes. Order of operations and precision follow
// GGML's: norms, softmax and attention in F32 (sums in double, as GGML does), weight products
// through tensor::matmul, which quantises activations to the weight type's vec_dot type.
#include "etna/model/blocks.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "etna/base/half.h"
#include "etna/base/vector_ops.h"
#include "etna/tensor/kernels.h"

namespace etna::model::blocks {

void rms_norm(float* y, const float* x, const float* w, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / n);
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void rms_norm_rows(float* x, const float* w, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) rms_norm(x + static_cast<size_t>(r) * n, x + static_cast<size_t>(r) * n, w, n, eps);
}

namespace {
std::atomic<Model::LinearObserver*> g_linear_observer{nullptr};
}  // namespace

void linear(const Matrix& w, const Matrix& bias, const float* x, int n_tokens, std::vector<float>& y) {
  if (Model::LinearObserver* o = g_linear_observer.load(std::memory_order_relaxed)) o->observe(w, x, n_tokens);
  y.resize(static_cast<size_t>(n_tokens) * w.rows);
  tensor::matmul(w, x, n_tokens, y.data());
  if (bias.data != nullptr) {
    const float* b = floats(bias);
    for (int t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] += b[r];
  }
}

void linear_same_input(std::initializer_list<LinearOut> outs, const float* x, int n_tokens) {
  std::vector<tensor::MatmulOut> mm;
  for (const LinearOut& o : outs) {
    if (Model::LinearObserver* obs = g_linear_observer.load(std::memory_order_relaxed)) obs->observe(*o.w, x, n_tokens);
    o.y->resize(static_cast<size_t>(n_tokens) * o.w->rows);
    mm.push_back({o.w, o.y->data()});
  }
  tensor::matmul_many(mm.data(), static_cast<int>(mm.size()), x, n_tokens);
  for (const LinearOut& o : outs) {
    if (o.bias == nullptr || o.bias->data == nullptr) continue;
    const float* b = floats(*o.bias);
    for (int t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < o.w->rows; ++r) (*o.y)[t * o.w->rows + r] += b[r];
  }
}

void soft_cap(float* x, size_t n, float cap) {
  const float inv = 1.0f / cap;  // GGML scales by the reciprocal, then by the cap
  for (size_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] * inv) * cap;
}

// ---- rotary embeddings ----------------------------------------------------------------------

namespace {

// The rotated-pair index at which a YaRN wavelength completes n_turns turns over n_ctx_orig.
float yarn_corr_dim(int n_rot, int n_ctx_orig, float n_turns, float base) {
  return static_cast<float>(n_rot) * std::log(static_cast<float>(n_ctx_orig) / (n_turns * 2 * static_cast<float>(M_PI))) /
         (2 * std::log(base));
}

}  // namespace

Rope Rope::of(const ModelConfig& c, int layer, const float* factors) {
  Rope r;
  r.n_rot = c.n_rot;
  r.head_dim = c.head_dim;
  r.neox = c.rope == ModelConfig::neox;
  const bool swa = c.is_swa(layer);
  r.base = swa && c.rope_freq_base_swa > 0 ? c.rope_freq_base_swa : c.rope_freq_base;
  r.scale = swa && c.rope_freq_scale_swa > 0 ? c.rope_freq_scale_swa : c.rope_freq_scale;
  r.factors = factors;
  r.attn_factor = c.rope_attn_factor;
  if (c.rope_scaling == ModelConfig::rope_yarn) {
    r.ext_factor = 1.0f;
    r.corr_low = std::max(0.0f, std::floor(yarn_corr_dim(c.n_rot, c.n_ctx_orig, c.yarn_beta_fast, r.base)));
    r.corr_high = std::min(static_cast<float>(c.n_rot - 1), std::ceil(yarn_corr_dim(c.n_rot, c.n_ctx_orig, c.yarn_beta_slow, r.base)));
  }
  return r;
}

void Rope::angles(int pos, std::vector<float>& cs, std::vector<float>& sn) const {
  const int half = n_rot / 2;
  cs.resize(half);
  sn.resize(half);
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int i = 0; i < half; ++i) {
    const float extrap = factors ? theta / factors[i] : theta;
    const float interp = scale * extrap;
    float angle = interp, mscale = attn_factor;
    if (ext_factor != 0.0f) {
      // YaRN: pairs below corr_low keep their frequency (extrapolate), pairs above corr_high
      // are interpolated, linearly mixed between; the magnitude grows with the scale factor.
      const float y = (static_cast<float>(i) - corr_low) / std::max(0.001f, corr_high - corr_low);
      const float ramp = (1.0f - std::min(1.0f, std::max(0.0f, y))) * ext_factor;
      angle = interp * (1 - ramp) + extrap * ramp;
      mscale *= 1.0f + 0.1f * std::log(1.0f / scale);
    }
    cs[i] = std::cos(angle) * mscale;
    sn[i] = std::sin(angle) * mscale;
    theta *= theta_scale;
  }
}

void Rope::rotate(float* x, int n_heads, const std::vector<float>& cs, const std::vector<float>& sn) const {
  const int half = n_rot / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = neox ? i : 2 * i;
      const int b = neox ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void rope_and_store(const ModelConfig& c, const Rope& rope, const Batch& batch, KvCache& cache, int layer,
                    std::vector<float>& q, std::vector<float>& k, const std::vector<float>& v) {
  const int KV = c.n_embd_kv(), Q = c.n_head * c.head_dim;
  std::vector<float> cs, sn;
  for (size_t t = 0; t < batch.size(); ++t) {
    rope.angles(batch.pos[t], cs, sn);
    rope.rotate(&q[t * Q], c.n_head, cs, sn);
    rope.rotate(&k[t * KV], c.n_head_kv, cs, sn);
    cache.store_k(batch.seq[t], layer, batch.pos[t], &k[t * KV]);
    cache.store_v(batch.seq[t], layer, batch.pos[t], &v[t * KV]);
  }
}

// ---- attention ------------------------------------------------------------------------------

namespace {

// For query heads h0 <= h < h1 of one token: out_h = softmax(scores(q_h, K[first..last])) .
// V[first..last] over the cache cells of one sequence and layer; head h reads K/V head
// h / group. F32 and F16 rows are read in place by the kernel set's dot and axpy kernels; other
// row types are decoded once and used by all heads of the range. `out` and `q` point at head 0
// of the token.
void attend(float* out, const float* q, const KvCache& cache, int seq, int layer, int first, int last,
            const ModelConfig& c, const Attention& a, int h0, int h1, std::vector<float>& p, std::vector<float>& row) {
  const int D = c.head_dim, group = c.n_head / c.n_head_kv, KV = c.n_embd_kv();
  const int H = h1 - h0, n_kv = last - first + 1;
  q += static_cast<size_t>(h0) * D;
  out += static_cast<size_t>(h0) * D;
  const gguf::GgmlType type = kv_ggml_type(cache.type());
  const tensor::KernelTable& kt = tensor::active_kernel_table();
  const tensor::TypeKernels& kv_kernels = kt[static_cast<size_t>(type)];
  // F32 and F16 rows are read in place by the type's dot and axpy kernels; others (Q8_0) are
  // decoded into `row` first and go through the F32 kernels.
  const bool in_place = kv_kernels.axpy != nullptr;
  const tensor::TypeKernels& f32 = kt[static_cast<size_t>(gguf::GgmlType::F32)];
  const size_t elem = type == gguf::GgmlType::F16 ? 2 : 4;
  row.resize(KV);
  p.resize(static_cast<size_t>(H) * n_kv);
  // With an F16 cache, llama.cpp's matrix products convert their F32 operand to F16 too (F16's
  // vec-dot type is F16): the queries before q.K, the softmax weights before p.V. Rounding them
  // here makes an F16 cache compute what the peer's does; the F16 dot kernel reads the rounded
  // queries as F16.
  const bool half = cache.type() == KvType::f16;
  thread_local std::vector<uint16_t> q_half;
  if (half) {
    q_half.resize(static_cast<size_t>(H) * D);
    kt[static_cast<size_t>(gguf::GgmlType::F16)].quantize(q, q_half.data(), static_cast<int64_t>(H) * D);
  }
  const float inv_cap = a.softcap > 0 ? 1.0f / a.softcap : 0.0f;
  for (int j = 0; j < n_kv; ++j) {
    const uint8_t* k = cache.k_row(seq, layer, first + j);
    if (!in_place) {
      tensor::dequantize_row(type, k, row.data(), KV);
      k = reinterpret_cast<const uint8_t*>(row.data());
    }
    for (int h = 0; h < H; ++h) {
      const uint8_t* kh = k + static_cast<size_t>((h0 + h) / group) * D * (in_place ? elem : 4);
      float s = half ? kv_kernels.vec_dot(D, kh, &q_half[static_cast<size_t>(h) * D])
                     : f32.vec_dot(D, kh, q + static_cast<size_t>(h) * D);
      if (a.softcap > 0) s = std::tanh(s * inv_cap) * a.softcap;
      p[static_cast<size_t>(h) * n_kv + j] = s * a.scale;
    }
  }
  for (int h = 0; h < H; ++h) {
    float* ph = &p[static_cast<size_t>(h) * n_kv];
    float max = -INFINITY;
    for (int j = 0; j < n_kv; ++j) max = std::max(max, ph[j]);
    double sum = 0.0;
    for (int j = 0; j < n_kv; ++j) {
      ph[j] = std::exp(ph[j] - max);
      sum += ph[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = 0; j < n_kv; ++j) ph[j] *= inv;
    if (half)
      for (int j = 0; j < n_kv; ++j) ph[j] = fp16_to_fp32(fp32_to_fp16(ph[j]));
  }
  std::fill(out, out + static_cast<size_t>(H) * D, 0.0f);
  const tensor::AxpyFn axpy = in_place ? kv_kernels.axpy : f32.axpy;
  for (int j = 0; j < n_kv; ++j) {
    const uint8_t* v = cache.v_row(seq, layer, first + j);
    if (!in_place) {
      tensor::dequantize_row(type, v, row.data(), KV);
      v = reinterpret_cast<const uint8_t*>(row.data());
    }
    for (int h = 0; h < H; ++h) {
      const float pj = p[static_cast<size_t>(h) * n_kv + j];
      if (pj == 0.0f) continue;  // adds nothing (a weight F16 rounded to zero)
      axpy(D, pj, v + static_cast<size_t>((h0 + h) / group) * D * (in_place ? elem : 4), out + static_cast<size_t>(h) * D);
    }
  }
}

// Rows first .. first + n - 1 of KV head g of the K (values: V) cache of (seq, layer) as F32:
// in place when the cache is F32 and the cells are contiguous (no ring wrap), otherwise decoded
// into `buf`. `stride` gets the distance between rows in floats.
const float* kv_block(const KvCache& cache, bool values, int seq, int layer, int g, int D, int first, int n,
                      std::vector<float>& buf, std::vector<float>& row, size_t& stride) {
  const int KV = cache.n_embd_kv(), cells = cache.layer_cells(layer);
  auto row_of = [&](int pos) { return values ? cache.v_row(seq, layer, pos) : cache.k_row(seq, layer, pos); };
  if (cache.type() == KvType::f32 && first % cells + n <= cells) {
    stride = static_cast<size_t>(KV);
    return reinterpret_cast<const float*>(row_of(first)) + static_cast<size_t>(g) * D;
  }
  const tensor::TypeKernels& tk = tensor::active_kernel_table()[static_cast<size_t>(kv_ggml_type(cache.type()))];
  buf.resize(static_cast<size_t>(n) * D);
  for (int j = 0; j < n; ++j) {
    const uint8_t* r = row_of(first + j);
    float* dst = &buf[static_cast<size_t>(j) * D];
    if (D % tk.block_size == 0) {
      tk.dequantize(r + static_cast<size_t>(g) * (D / tk.block_size) * tk.block_bytes, dst, D);
    } else {  // head slices do not start on a block boundary: decode the whole row
      row.resize(KV);
      tk.dequantize(r, row.data(), KV);
      std::copy_n(&row[static_cast<size_t>(g) * D], D, dst);
    }
  }
  stride = static_cast<size_t>(D);
  return buf.data();
}

constexpr int kTileKeys = 64;        // keys per K/V block
constexpr int kTileQueryRows = 64;   // target query rows (heads x tokens) per tile

// Tiled attention of KV head g for `nt` tokens of one sequence (batch indices `tokens`): the
// G = n_head / n_head_kv query heads of the group times the tokens form the R = nt * G rows of
// Q (row i * G + h: token i, head g * G + h). Over the union lo .. hi of the tokens' key ranges,
// S^T (keys x R) = K . Q^T block by block (blocks no token can see are skipped), then each row's
// softmax over its own range exactly as attend() computes it (masked entries 0), then
// O (R x D) = P . V block by block, the keys summed in order as attend()'s axpy loop does.
void attend_tiled(const ModelConfig& c, const Attention& a, const Batch& batch, const KvCache& cache, int layer,
                  const std::vector<float>& q, std::vector<float>& attn, const int* tokens, int nt, int g) {
  const int D = c.head_dim, G = c.n_head / c.n_head_kv, Q = c.n_head * D, R = nt * G;
  const int seq = batch.seq[tokens[0]];
  thread_local std::vector<int> first, last;
  thread_local std::vector<float> qt, st, out, kbuf, vbuf, row;
  thread_local std::vector<char> skip;
  first.resize(nt);
  last.resize(nt);
  int lo = INT32_MAX, hi = -1;
  for (int i = 0; i < nt; ++i) {
    const int p = batch.pos[tokens[i]];
    first[i] = a.window > 0 ? std::max(0, p - a.window + 1) : 0;
    last[i] = p;
    lo = std::min(lo, first[i]);
    hi = std::max(hi, p);
  }
  const int n_keys = hi - lo + 1;
  const bool half = cache.type() == KvType::f16;
  // Q^T (D x R). With an F16 cache the queries are rounded to F16 as in attend().
  qt.resize(static_cast<size_t>(D) * R);
  for (int i = 0; i < nt; ++i)
    for (int h = 0; h < G; ++h) {
      const float* qh = &q[static_cast<size_t>(tokens[i]) * Q + static_cast<size_t>(g * G + h) * D];
      const int r = i * G + h;
      for (int d = 0; d < D; ++d) qt[static_cast<size_t>(d) * R + r] = half ? fp16_to_fp32(fp32_to_fp16(qh[d])) : qh[d];
    }
  const tensor::GemmFn gemm = tensor::active_kernel_table()[static_cast<size_t>(gguf::GgmlType::F32)].gemm;
  const int n_blocks = (n_keys + kTileKeys - 1) / kTileKeys;
  skip.assign(n_blocks, 1);
  st.resize(static_cast<size_t>(n_keys) * R);
  for (int b = 0; b < n_blocks; ++b) {
    const int j0 = lo + b * kTileKeys, nk = std::min(kTileKeys, hi + 1 - j0);
    for (int i = 0; i < nt && skip[b]; ++i) skip[b] = !(first[i] <= j0 + nk - 1 && j0 <= last[i]);
    if (skip[b]) continue;
    size_t ks = 0;
    const float* k = kv_block(cache, false, seq, layer, g, D, j0, nk, kbuf, row, ks);
    gemm(nk, R, D, k, ks, 1, qt.data(), R, &st[static_cast<size_t>(j0 - lo) * R], R, false);
  }
  // Softmax per row over its own keys, in attend()'s order of operations.
  const float inv_cap = a.softcap > 0 ? 1.0f / a.softcap : 0.0f;
  thread_local std::vector<float> mx;
  thread_local std::vector<double> sum;
  mx.resize(G);
  sum.resize(G);
  for (int i = 0; i < nt; ++i) {
    const int f = first[i] - lo, l = last[i] - lo;
    float* col = &st[static_cast<size_t>(i) * G];
    float* __restrict m = mx.data();
    double* __restrict z = sum.data();
    std::fill_n(m, G, -INFINITY);
    std::fill_n(z, G, 0.0);
    for (int j = 0; j < f; ++j) std::fill_n(col + static_cast<size_t>(j) * R, G, 0.0f);
    for (int j = l + 1; j < n_keys; ++j) std::fill_n(col + static_cast<size_t>(j) * R, G, 0.0f);
    // The loops over the G heads of a key are contiguous and free of calls (but for tanh and
    // exp), so the compiler vectorises them.
    for (int j = f; j <= l; ++j) {
      float* __restrict sj = col + static_cast<size_t>(j) * R;
      if (a.softcap > 0)
        for (int h = 0; h < G; ++h) sj[h] = std::tanh(sj[h] * inv_cap) * a.softcap;
      for (int h = 0; h < G; ++h) {
        sj[h] *= a.scale;
        m[h] = m[h] < sj[h] ? sj[h] : m[h];  // std::max
      }
    }
    for (int j = f; j <= l; ++j) {
      float* __restrict sj = col + static_cast<size_t>(j) * R;
      for (int h = 0; h < G; ++h) sj[h] = std::exp(sj[h] - m[h]);
      for (int h = 0; h < G; ++h) z[h] += sj[h];
    }
    for (int h = 0; h < G; ++h) m[h] = static_cast<float>(1.0 / z[h]);  // now the inverse sums
    for (int j = f; j <= l; ++j) {
      float* __restrict sj = col + static_cast<size_t>(j) * R;
      for (int h = 0; h < G; ++h) sj[h] *= m[h];
      if (half)
        for (int h = 0; h < G; ++h) sj[h] = fp16_to_fp32(fp32_to_fp16(sj[h]));
    }
  }
  // O = P . V: P is S^T read transposed (row r, key j at st[j * R + r]).
  out.resize(static_cast<size_t>(R) * D);
  bool started = false;
  for (int b = 0; b < n_blocks; ++b) {
    if (skip[b]) continue;
    const int j0 = lo + b * kTileKeys, nk = std::min(kTileKeys, hi + 1 - j0);
    size_t vs = 0;
    const float* v = kv_block(cache, true, seq, layer, g, D, j0, nk, vbuf, row, vs);
    gemm(R, D, nk, &st[static_cast<size_t>(j0 - lo) * R], 1, R, v, vs, out.data(), D, started);
    started = true;
  }
  for (int i = 0; i < nt; ++i)
    for (int h = 0; h < G; ++h)
      std::copy_n(&out[static_cast<size_t>(i * G + h) * D], D,
                  &attn[static_cast<size_t>(tokens[i]) * Q + static_cast<size_t>(g * G + h) * D]);
}

}  // namespace

void attention(const ModelConfig& c, const Attention& a, const Batch& batch, const KvCache& cache, int layer,
               const std::vector<float>& q, std::vector<float>& attn, AttentionPath path) {
  const int n = static_cast<int>(batch.size());
  const int Q = c.n_head * c.head_dim;
  attn.resize(static_cast<size_t>(n) * Q);
  auto first_of = [&](int t) { return a.window > 0 ? std::max(0, batch.pos[t] - a.window + 1) : 0; };

  // Each sequence's tokens in batch order; those of sequences with enough of them go tiled.
  std::vector<std::vector<int>> by_seq;
  for (int t = 0; t < n; ++t) {
    if (batch.seq[t] >= static_cast<int>(by_seq.size())) by_seq.resize(batch.seq[t] + 1);
    by_seq[batch.seq[t]].push_back(t);
  }
  std::vector<int> single;  // tokens for the per-token path
  struct Tile {
    const int* tokens;
    int n, g;
  };
  std::vector<Tile> tiles;
  int64_t tiled_work = 0;
  const int G = c.n_head / c.n_head_kv;
  const int block = std::max(1, kTileQueryRows / G);
  for (const std::vector<int>& s : by_seq) {
    const int m = static_cast<int>(s.size());
    const bool tile = path == AttentionPath::tiled ||
                      (path == AttentionPath::automatic && m >= kTiledAttentionMinTokens);
    if (!tile) {
      single.insert(single.end(), s.begin(), s.end());
      continue;
    }
    // Later blocks see more keys: queued first, so the pool ends on small tasks.
    for (int b0 = (m - 1) / block * block; b0 >= 0; b0 -= block) {
      const int nt = std::min(block, m - b0);
      for (int g = 0; g < c.n_head_kv; ++g) tiles.push_back({&s[b0], nt, g});
      for (int i = b0; i < b0 + nt; ++i)
        tiled_work += static_cast<int64_t>(batch.pos[s[i]] - first_of(s[i]) + 1) * Q * 2;
    }
  }
  if (!tiles.empty())
    tensor::parallel_for(static_cast<int64_t>(tiles.size()), tiled_work, [&](int64_t i) {
      const Tile& t = tiles[i];
      attend_tiled(c, a, batch, cache, layer, q, attn, t.tokens, t.n, t.g);
    });
  if (single.empty()) return;

  // Tokens (and, for fewer tokens than threads, ranges of heads) are independent tasks.
  const int ns = static_cast<int>(single.size());
  const int splits = std::min(c.n_head, ns < tensor::num_threads() ? tensor::num_threads() : 1);
  int64_t work = 0;
  for (int t : single) work += static_cast<int64_t>(batch.pos[t] - first_of(t) + 1) * Q * 2;
  tensor::parallel_for(static_cast<int64_t>(ns) * splits, work, [&](int64_t task) {
    thread_local std::vector<float> p_scratch, row_scratch;
    const int t = single[task / splits], s = static_cast<int>(task % splits);
    const int h0 = c.n_head * s / splits, h1 = c.n_head * (s + 1) / splits;
    attend(&attn[static_cast<size_t>(t) * Q], &q[static_cast<size_t>(t) * Q], cache, batch.seq[t], layer, first_of(t),
           batch.pos[t], c, a, h0, h1, p_scratch, row_scratch);
  });
}

// ---- feed-forward ---------------------------------------------------------------------------

void swiglu(std::vector<float>& gate, const std::vector<float>& up) {
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

namespace {

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f, kCoefA = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoefA * x * x)));
}

// GGML evaluates GELU through a table over every F16 input (the input rounded to F16, the
// result stored as F16), and exactly outside [-10, 10].
float gelu_ggml(float x) {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(1 << 16);
    for (uint32_t i = 0; i < t.size(); ++i) t[i] = fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<uint16_t>(i))));
    return t;
  }();
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return fp16_to_fp32(table[fp32_to_fp16(x)]);
}

}  // namespace

void geglu(std::vector<float>& gate, const std::vector<float>& up, bool f16_table) {
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = (f16_table ? gelu_ggml(gate[i]) : gelu_tanh(gate[i])) * up[i];
}

void gated_ffn(const Matrix& gate, const Matrix& up, const Matrix& down, Activation act, const std::vector<float>& x,
               int n, std::vector<float>& out) {
  // Kept between calls: for a long prompt these are tens of MiB, which malloc would map fresh
  // (and the kernel zero page by page) in every layer.
  thread_local std::vector<float> g, u;
  linear_same_input({{&gate, nullptr, &g}, {&up, nullptr, &u}}, x.data(), n);
  if (act == Activation::silu)
    swiglu(g, u);
  else
    geglu(g, u, act == Activation::gelu_f16_table);
  linear(down, g.data(), n, out);
}

void moe_ffn(const Model::Experts& ex, int n_used, bool normalise, const std::vector<float>& x, int n,
             std::vector<float>& out, std::atomic<uint64_t>* bytes_read) {
  const int X = ex.n_expert, E = static_cast<int>(ex.gate.cols), K = n_used;
  // Router: softmax over the experts, the K most probable chosen (lower id first on ties).
  std::vector<float> probs;
  linear(ex.gate_inp, x.data(), n, probs);
  std::vector<int> chosen(static_cast<size_t>(n) * K);
  std::vector<float> weight(static_cast<size_t>(n) * K);
  std::vector<int> order(X);
  for (int t = 0; t < n; ++t) {
    float* pr = &probs[static_cast<size_t>(t) * X];
    const float mx = *std::max_element(pr, pr + X);
    double sum = 0.0;
    for (int e = 0; e < X; ++e) {
      pr[e] = std::exp(pr[e] - mx);
      sum += pr[e];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int e = 0; e < X; ++e) pr[e] *= inv;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [pr](int a, int b) { return pr[a] > pr[b]; });
    double wsum = 0.0;
    for (int k = 0; k < K; ++k) {
      chosen[t * K + k] = order[k];
      weight[t * K + k] = pr[order[k]];
      wsum += pr[order[k]];
    }
    if (normalise)
      for (int k = 0; k < K; ++k) weight[t * K + k] /= static_cast<float>(wsum);
  }

  // Each expert evaluates the tokens routed to it, its weights read once for all of them.
  std::vector<float> y(static_cast<size_t>(n) * K * E);  // per (token, slot)
  std::vector<float> xe, ye;
  std::vector<int> slots;
  for (int e = 0; e < X; ++e) {
    slots.clear();
    for (int i = 0; i < n * K; ++i)
      if (chosen[i] == e) slots.push_back(i);
    if (slots.empty()) continue;
    const int m = static_cast<int>(slots.size());
    xe.resize(static_cast<size_t>(m) * E);
    for (int r = 0; r < m; ++r) std::copy_n(&x[static_cast<size_t>(slots[r] / K) * E], E, &xe[static_cast<size_t>(r) * E]);
    const Matrix g = Model::Experts::expert(ex.gate, e), u = Model::Experts::expert(ex.up, e),
                 d = Model::Experts::expert(ex.down, e);
    gated_ffn(g, u, d, Activation::silu, xe, m, ye);
    if (bytes_read != nullptr)
      *bytes_read += static_cast<uint64_t>(g.rows) * g.row_bytes + static_cast<uint64_t>(u.rows) * u.row_bytes +
                     static_cast<uint64_t>(d.rows) * d.row_bytes;
    for (int r = 0; r < m; ++r) std::copy_n(&ye[static_cast<size_t>(r) * E], E, &y[static_cast<size_t>(slots[r]) * E]);
  }

  // Weighted sum in slot order, as the peer adds the weighted expert outputs.
  out.assign(static_cast<size_t>(n) * E, 0.0f);
  for (int t = 0; t < n; ++t) {
    float* o = &out[static_cast<size_t>(t) * E];
    for (int k = 0; k < K; ++k) {
      const float w = weight[t * K + k];
      const float* yk = &y[(static_cast<size_t>(t) * K + k) * E];
      if (k == 0)
        for (int i = 0; i < E; ++i) o[i] = yk[i] * w;
      else
        for (int i = 0; i < E; ++i) o[i] += yk[i] * w;
    }
  }
}

// ---- output ---------------------------------------------------------------------------------

void output_rows(const ModelConfig& c, const Model::Weights& w, const Batch& batch, const std::vector<float>& x,
                 bool hidden, std::vector<float>& out) {
  const int n = static_cast<int>(batch.size()), E = c.n_embd;
  if (hidden) {
    out.resize(x.size());
    for (int t = 0; t < n; ++t) rms_norm(&out[t * E], &x[t * E], floats(w.output_norm), E, c.rms_eps);
    return;
  }
  std::vector<float> rows;
  int n_out = 0;
  for (int t = 0; t < n; ++t) {
    const bool want = batch.want_logits.empty() ? t == n - 1 : batch.want_logits[t] != 0;
    if (!want) continue;
    rows.resize(static_cast<size_t>(n_out + 1) * E);
    rms_norm(&rows[static_cast<size_t>(n_out) * E], &x[t * E], floats(w.output_norm), E, c.rms_eps);
    ++n_out;
  }
  out.resize(static_cast<size_t>(n_out) * c.n_vocab);
  if (n_out > 0) tensor::matmul(w.output, rows.data(), n_out, out.data());
  if (c.final_softcap > 0) soft_cap(out.data(), out.size(), c.final_softcap);
}

}  // namespace etna::model::blocks

namespace etna::model {
void Model::set_linear_observer(LinearObserver* observer) { blocks::g_linear_observer.store(observer); }
}  // namespace etna::model
