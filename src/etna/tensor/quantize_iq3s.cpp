// The IQ3_S file encoder: GGML's reference search for 3-bit lattice quantisation (Kawrakow's
// "IQ3_S" of the i-quants, llama.cpp PR #5676), written from its description and checked
// against the peer's IQ3_M file byte for byte (tests/unit/hub/quantize_test.cpp).
//
// The 256-element super-block is cut into 8 groups of 32, each group into 8 quads. A quad's
// magnitudes are one of the 512 points of the IQ3_S grid (values 1, 3, ..., 15 per coordinate,
// times the group scale); its signs are stored apart, one bit per element. Finding the scale
// and the points together:
//   1. Weights w = x^2, or with an importance matrix qw * sqrt(sigma2 + x^2) (sigma2 twice
//      the super-block's mean square); signs taken out (x -> |x|).
//   2. For 19 trial scales around max|x| / 15, round each quad to the nearest lattice point
//      of {1,3,...,15}^4; a quad that falls off the grid takes the grid point, among the
//      precomputed neighbours of where it fell, that is nearest in sqrt(w)-weighted distance.
//      The trial whose points explain most of the group (largest (Σ w q x)^2 / Σ w q^2)
//      wins, with its least-squares scale Σ w q x / Σ w q^2.
//   3. If any quad of the winner was off the grid, round every quad again at the winning
//      scale (same neighbour rule) and refit the scale once.
// The group scales are then stored as 4-bit odd multiples (1 + 2 l) of max_scale / 31, with
// the super-block scale nudged up by 3.3% (GGML's empirical factor).
//
// Every float operation and its order follow the reference, so ties and roundings agree.
#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "etna/base/error.h"
#include "etna/base/half.h"
#include "etna/tensor/blocks.h"
#include "etna/tensor/iquants_tables.h"
#include "etna/tensor/quantize.h"

namespace etna::tensor {
namespace {

constexpr int kLevels = 8;         // per coordinate: 2 l + 1 for l in 0..7
constexpr int kLatticeSize = 4096;  // 8^4 points of {1,3,...,15}^4, index Σ l_k 8^k
constexpr int kGroup = 32;          // elements under one 4-bit scale
constexpr int kNeighbourShells = 3;  // distance shells an off-grid point may snap to

// Where each lattice point goes: on-grid points map to their grid index; off-grid points list
// the grid points of the three nearest distance shells, by (distance, grid index).
struct Iq3sLattice {
  std::array<int16_t, kLatticeSize> grid_index;  // -1 when off the grid
  std::array<uint32_t, kLatticeSize> first;      // off-grid points: start in `neighbours`
  std::array<uint16_t, kLatticeSize> count;      // ... and the number listed
  std::vector<uint16_t> neighbours;
};

int coordinate(int lattice_index, int k) { return 2 * ((lattice_index >> (3 * k)) & 7) + 1; }
int grid_value(int grid, int k) { return static_cast<int>((kIQ3SGrid[grid] >> (8 * k)) & 0xFF); }

Iq3sLattice build_lattice() {
  Iq3sLattice t;
  t.grid_index.fill(-1);
  t.first.fill(0);
  t.count.fill(0);
  for (int g = 0; g < 512; ++g) {
    int u = 0;
    for (int k = 0; k < 4; ++k) u |= ((grid_value(g, k) - 1) / 2) << (3 * k);
    t.grid_index[u] = static_cast<int16_t>(g);
  }
  std::vector<std::pair<int, int>> by_distance(512);
  for (int u = 0; u < kLatticeSize; ++u) {
    if (t.grid_index[u] >= 0) continue;
    for (int g = 0; g < 512; ++g) {
      int d2 = 0;
      for (int k = 0; k < 4; ++k) {
        const int diff = grid_value(g, k) - coordinate(u, k);
        d2 += diff * diff;
      }
      by_distance[g] = {d2, g};
    }
    std::sort(by_distance.begin(), by_distance.end());
    t.first[u] = static_cast<uint32_t>(t.neighbours.size());
    int shells = 1, shell_d2 = by_distance[0].first;
    for (const auto& [d2, g] : by_distance) {
      if (d2 > shell_d2) {
        if (shells == kNeighbourShells) break;
        shell_d2 = d2;
        ++shells;
      }
      t.neighbours.push_back(static_cast<uint16_t>(g));
    }
    t.count[u] = static_cast<uint16_t>(t.neighbours.size() - t.first[u]);
  }
  return t;
}

const Iq3sLattice& lattice() {
  static const Iq3sLattice t = build_lattice();
  return t;
}

// Round to nearest, ties to even (GGML's nearest_int; |x| < 2^22).
inline int nearest_int(float x) {
  float v = x + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

// The grid point for one quad of magnitudes xq at the reciprocal scale id (scale = its
// inverse as the caller computed it); writes its levels to l. Returns the grid index and
// whether the rounded point was on the grid.
int snap_quad(const Iq3sLattice& t, const float* xq, const float* sqrt_w, float id, float scale, int8_t* l,
              bool* on_grid) {
  int u = 0;
  for (int k = 0; k < 4; ++k) {
    l[k] = static_cast<int8_t>(std::clamp(nearest_int(0.5f * (id * xq[k] - 1)), 0, kLevels - 1));
    u |= l[k] << (3 * k);
  }
  int g = t.grid_index[u];
  *on_grid = g >= 0;
  if (g < 0) {
    float best_d2 = FLT_MAX;
    for (uint32_t j = t.first[u]; j < t.first[u] + t.count[u]; ++j) {
      const int cand = t.neighbours[j];
      float d2 = 0;
      for (int k = 0; k < 4; ++k) {
        const float q = static_cast<float>(grid_value(cand, k));
        const float diff = scale * q - xq[k];
        d2 += sqrt_w[k] * diff * diff;
      }
      if (d2 < best_d2) {
        best_d2 = d2;
        g = cand;
      }
    }
    for (int k = 0; k < 4; ++k) l[k] = static_cast<int8_t>((grid_value(g, k) - 1) / 2);
  }
  return g;
}

// Σ w q x and Σ w q^2 for levels l (q = 2 l + 1).
void fit_sums(const float* w, const float* xval, const int8_t* l, float* sumqx, float* sumq2) {
  *sumqx = *sumq2 = 0;
  for (int i = 0; i < kGroup; ++i) {
    const float q = static_cast<float>(2 * l[i] + 1);
    *sumqx += w[i] * xval[i] * q;
    *sumq2 += w[i] * q * q;
  }
}

}  // namespace

void quantize_iq3_s_ref(const float* x, void* dst, int64_t n) { quantize_iq3_s_weighted(x, dst, n, nullptr); }

void quantize_iq3_s_weighted(const float* x, void* dst, int64_t n, const float* qw) {
  if (n % kQK_K != 0) fail(ErrorKind::invalid_argument, "quantize_iq3_s: {} is not a multiple of {}", n, kQK_K);
  const Iq3sLattice& t = lattice();
  auto* y = static_cast<BlockIQ3_S*>(dst);
  float weight[kGroup], sqrt_w[kGroup], xval[kGroup];
  int8_t L[kGroup], trial[kGroup];
  bool on_grid[kGroup / 4], trial_on_grid[kGroup / 4];
  int grid[kGroup / 4];

  for (int64_t ibl = 0; ibl < n / kQK_K; ++ibl) {
    BlockIQ3_S& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    const float* xbl = x + kQK_K * ibl;
    float scales[kQK_K / kGroup];
    float max_scale = 0;
    float sumx2 = 0;
    if (qw)
      for (int i = 0; i < kQK_K; ++i) sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / kQK_K;

    for (int ib = 0; ib < kQK_K / kGroup; ++ib) {
      const float* xb = xbl + kGroup * ib;
      if (qw) {
        const float* w = qw + kQK_K * ibl + kGroup * ib;
        for (int i = 0; i < kGroup; ++i) weight[i] = w[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      } else {
        for (int i = 0; i < kGroup; ++i) weight[i] = xb[i] * xb[i];
      }
      for (int i = 0; i < kGroup; ++i) sqrt_w[i] = std::sqrt(weight[i]);
      uint8_t signs[kGroup / 8];
      for (int k = 0; k < kGroup / 8; ++k) {
        uint8_t s = 0;
        for (int i = 0; i < 8; ++i) {
          const float v = xb[8 * k + i];
          xval[8 * k + i] = v >= 0 ? v : -v;
          if (!(v >= 0)) s = static_cast<uint8_t>(s | (1 << i));
        }
        signs[k] = s;
      }
      float max = xval[0];
      for (int i = 1; i < kGroup; ++i) max = std::max(max, xval[i]);
      std::memset(L, 0, sizeof L);
      scales[ib] = 0;
      // An all-zero group keeps levels 0 and scale 0. (The reference also leaves its quad
      // and sign bytes unwritten without advancing past them, shifting the next groups'
      // bytes into its place; Etna writes every group in its own place.)
      if (max == 0) continue;

      float best = 0;
      float scale = max / (2 * kLevels - 1);
      std::fill(std::begin(on_grid), std::end(on_grid), false);
      for (int is = -9; is <= 9; ++is) {
        const float id = (2 * kLevels - 1 + static_cast<float>(is) * 0.2f) / max;
        const float this_scale = 1 / id;
        for (int k = 0; k < kGroup / 4; ++k)
          snap_quad(t, xval + 4 * k, sqrt_w + 4 * k, id, this_scale, trial + 4 * k, &trial_on_grid[k]);
        float sumqx, sumq2;
        fit_sums(weight, xval, trial, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          scale = sumqx / sumq2;
          best = scale * sumqx;
          std::memcpy(L, trial, sizeof L);
          std::copy(std::begin(trial_on_grid), std::end(trial_on_grid), std::begin(on_grid));
        }
      }
      const bool any_off_grid = std::find(std::begin(on_grid), std::end(on_grid), false) != std::end(on_grid);
      if (any_off_grid && scale > 0) {
        const float id = 1 / scale;
        bool unused;
        for (int k = 0; k < kGroup / 4; ++k) snap_quad(t, xval + 4 * k, sqrt_w + 4 * k, id, scale, L + 4 * k, &unused);
        float sumqx, sumq2;
        fit_sums(weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
      }
      if (scale < 0) {  // cannot happen for |x| and positive levels; kept as the reference does
        scale = -scale;
        for (auto& s : signs) s = static_cast<uint8_t>(~s);
      }
      for (int k = 0; k < kGroup / 4; ++k) {
        int u = 0;
        for (int i = 0; i < 4; ++i) u |= L[4 * k + i] << (3 * i);
        grid[k] = t.grid_index[u];
        if (grid[k] < 0) fail(ErrorKind::internal, "IQ3_S encoder: levels off the grid (point {})", u);
        const int quad = ib * (kGroup / 4) + k;
        b.qs[quad] = static_cast<uint8_t>(grid[k] & 0xFF);
        b.qh[quad / 8] = static_cast<uint8_t>(b.qh[quad / 8] | ((grid[k] >> 8) << (quad % 8)));
      }
      std::memcpy(b.signs + ib * (kGroup / 8), signs, sizeof signs);
      scales[ib] = scale;
      max_scale = std::max(max_scale, scale);
    }
    if (max_scale == 0) continue;

    const float d = max_scale / 31;
    b.d = fp32_to_fp16(d * 1.033f);
    const float id = 1 / d;
    for (int ib = 0; ib < kQK_K / kGroup; ib += 2) {
      const int l1 = std::clamp(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
      const int l2 = std::clamp(nearest_int(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
      b.scales[ib / 2] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
  }
}

}  // namespace etna::tensor
