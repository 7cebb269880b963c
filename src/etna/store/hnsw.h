// Hierarchical Navigable Small World graph (Malkov & Yashunin, "Efficient and robust approximate
// nearest neighbor search using Hierarchical Navigable Small World graphs", 2016/2018). Internal.
//
// The graph stores only links; nodes are slot numbers of the owning collection and distances come
// from a caller-supplied Space, so the same graph serves float and int8 distances. Names follow
// the paper: M, M_max0 = 2*M (layer 0), ef_construction, m_L = 1/ln(M), SEARCH-LAYER,
// SELECT-NEIGHBORS-HEURISTIC, INSERT, K-NN-SEARCH.
//
// Layout: layer-0 links live in one flat array (M_max0 + 1 uint32 per node: count, then ids);
// upper layers (about 1/M of the nodes) share one pool, addressed by a per-node offset.
// Not thread-safe for writes; concurrent searches are safe when no insert runs (the owner's lock).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <random>
#include <vector>

namespace etna::store::detail {

// Marks visited nodes: one bit per node, so the marks of a million nodes (128 KB) stay in the
// L2 cache where 16-bit generation tags would not. The words a search set are remembered and
// cleared by the next begin(), so clearing costs what the search touched, not the graph size.
class VisitedList {
 public:
  void begin(size_t n) {
    for (uint32_t w : touched_) bits_[w] = 0;
    touched_.clear();
    size_t words = (n + 63) / 64;
    if (bits_.size() < words) bits_.resize(words + words / 4 + 1, 0);
  }
  void prefetch(uint32_t v) const { __builtin_prefetch(&bits_[v >> 6]); }
  bool test_and_set(uint32_t v) {
    uint64_t& w = bits_[v >> 6];
    const uint64_t m = uint64_t(1) << (v & 63);
    if (w & m) return true;
    if (w == 0) touched_.push_back(v >> 6);
    w |= m;
    return false;
  }

 private:
  std::vector<uint64_t> bits_;
  std::vector<uint32_t> touched_;
};

struct Candidate {
  float distance;
  uint32_t node;
  bool operator<(const Candidate& o) const { return distance < o.distance; }  // max-heap on distance
};
struct FartherFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.distance > b.distance; }
};

// Per-thread buffers of one search (see HnswGraph::scratch()).
struct SearchScratch {
  VisitedList visited;
  std::vector<Candidate> C, W;
};

class HnswGraph {
 public:
  static constexpr int8_t kAbsent = -1;
  static constexpr size_t kMaxLinks = 512;  // bound on M_max0 (config validation keeps M far below)

  HnswGraph(size_t M, size_t ef_construction, uint64_t seed = 100)
      : M_(M), M_max0_(2 * M), ef_construction_(std::max(ef_construction, M)), m_L_(1.0 / std::log(double(M))),
        rng_(seed) {}

  size_t M() const { return M_; }
  size_t M_max0() const { return M_max0_; }
  size_t ef_construction() const { return ef_construction_; }
  size_t capacity() const { return levels_.size(); }
  size_t node_count() const { return node_count_; }
  bool contains(uint32_t v) const { return v < levels_.size() && levels_[v] != kAbsent; }
  int level(uint32_t v) const { return levels_[v]; }
  bool empty() const { return node_count_ == 0; }
  uint32_t entry_point() const { return entry_point_; }
  int max_level() const { return max_level_; }

  // Makes room for nodes 0..n-1 (existing nodes keep their links).
  void reserve_nodes(size_t n) {
    if (n <= levels_.size()) return;
    levels_.resize(n, kAbsent);
    links0_.resize(n * (M_max0_ + 1), 0);
    upper_offset_.resize(n, 0);
  }

  // Links of v on layer lc: pointer to the ids and their count.
  const uint32_t* links(uint32_t v, int lc, uint32_t* count) const {
    const uint32_t* p = lc == 0 ? &links0_[size_t(v) * (M_max0_ + 1)] : &upper_pool_[upper_at(v, lc)];
    *count = p[0];
    return p + 1;
  }

  // INSERT (algorithm 1). space(u) is the distance from the new node's vector to node u;
  // space.between(a, b) the distance between two nodes. REQUIRES: !contains(q).
  template <class Space>
  void insert(uint32_t q, const Space& space) {
    reserve_nodes(size_t(q) + 1);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    int l = static_cast<int>(-std::log(std::max(unif(rng_), 1e-12)) * m_L_);
    l = std::min(l, 32);
    levels_[q] = static_cast<int8_t>(l);
    uint32_t* own0 = &links0_[size_t(q) * (M_max0_ + 1)];
    own0[0] = 0;
    if (l > 0) alloc_upper(q, l);
    ++node_count_;
    if (node_count_ == 1) {
      entry_point_ = q;
      max_level_ = l;
      return;
    }
    uint32_t ep = entry_point_;
    float ep_dist = space(ep);
    for (int lc = max_level_; lc > l; --lc) greedy_closest(space, lc, ep, ep_dist);
    std::vector<Candidate> W;
    for (int lc = std::min(max_level_, l); lc >= 0; --lc) {
      SearchScratch& s = scratch();
      search_layer(space, Candidate{ep_dist, ep}, ef_construction_, lc, [](uint32_t) { return true; }, s);
      W.assign(s.W.begin(), s.W.end());
      std::sort(W.begin(), W.end());  // nearest first
      std::vector<Candidate> neighbours = select_neighbors_heuristic(space, W, M_);
      set_links(q, lc, neighbours);
      size_t m_max = lc == 0 ? M_max0_ : M_;
      for (const Candidate& e : neighbours) add_link(space, e.node, q, e.distance, lc, m_max);
      ep = W.front().node;
      ep_dist = W.front().distance;
    }
    if (l > max_level_) {
      max_level_ = l;
      entry_point_ = q;
    }
  }

  // K-NN-SEARCH (algorithm 5) with a filter: nodes failing accept() are still expanded (so the
  // walk crosses them) but never returned. Returns up to ef accepted nodes, nearest first.
  template <class Space, class Accept>
  std::vector<Candidate> search(const Space& space, size_t ef, const Accept& accept) const {
    std::vector<Candidate> out;
    if (node_count_ == 0) return out;
    uint32_t ep = entry_point_;
    float ep_dist = space(ep);
    for (int lc = max_level_; lc > 0; --lc) greedy_closest(space, lc, ep, ep_dist);
    SearchScratch& s = scratch();
    search_layer(space, Candidate{ep_dist, ep}, ef, 0, accept, s);
    out.assign(s.W.begin(), s.W.end());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Persistence helpers: raw arrays (the owner serialises them).
  std::vector<int8_t>& levels() { return levels_; }
  std::vector<uint32_t>& links0() { return links0_; }
  const std::vector<int8_t>& levels() const { return levels_; }
  const std::vector<uint32_t>& links0() const { return links0_; }
  // Upper-layer links of node v (upper_words(v) words). REQUIRES: level(v) > 0.
  uint32_t* upper_links(uint32_t v) { return &upper_pool_[upper_offset_[v]]; }
  const uint32_t* upper_links(uint32_t v) const { return &upper_pool_[upper_offset_[v]]; }
  size_t upper_words(uint32_t v) const { return size_t(levels_[v]) * (M_ + 1); }
  // Gives node v (level l > 0) zeroed upper-layer link space (insert, loading).
  void alloc_upper(uint32_t v, int l) {
    size_t at = upper_pool_.size();
    if (at + size_t(l) * (M_ + 1) > UINT32_MAX) throw std::length_error("HNSW upper-layer pool is full");
    upper_offset_[v] = static_cast<uint32_t>(at);
    upper_pool_.resize(at + size_t(l) * (M_ + 1), 0);
  }
  void restore_header(uint32_t entry_point, int max_level, size_t node_count) {
    entry_point_ = entry_point;
    max_level_ = max_level;
    node_count_ = node_count;
  }
  size_t memory_bytes() const {
    return levels_.capacity() + (links0_.capacity() + upper_offset_.capacity()) * sizeof(uint32_t) +
           upper_pool_.capacity() * sizeof(uint32_t);
  }

 private:
  // Greedy descent on an upper layer (SEARCH-LAYER with ef = 1).
  template <class Space>
  void greedy_closest(const Space& space, int lc, uint32_t& ep, float& ep_dist) const {
    bool changed = true;
    while (changed) {
      changed = false;
      uint32_t n;
      const uint32_t* nb = links(ep, lc, &n);
      for (uint32_t i = 0; i < n; ++i) {
        float d = space(nb[i]);
        if (d < ep_dist) {
          ep_dist = d;
          ep = nb[i];
          changed = true;
        }
      }
    }
  }

  // SEARCH-LAYER (algorithm 2): the ef nearest accepted nodes, unordered, in scratch.W (a
  // max-heap on distance). Candidate heaps and the visited marks live in per-thread buffers that
  // are reused across searches, so a search allocates nothing once warm.
  template <class Space, class Accept>
  void search_layer(const Space& space, Candidate ep, size_t ef, int lc, const Accept& accept,
                    SearchScratch& scratch) const {
    VisitedList& visited = scratch.visited;
    visited.begin(levels_.size());
    std::vector<Candidate>& C = scratch.C;  // candidates, nearest on top
    std::vector<Candidate>& W = scratch.W;  // found (accepted only), furthest on top
    C.clear();
    W.clear();
    visited.test_and_set(ep.node);
    C.push_back(ep);
    if (accept(ep.node)) W.push_back(ep);
    float bound = W.empty() ? INFINITY : W.front().distance;
    uint32_t todo[kMaxLinks];
    while (!C.empty()) {
      Candidate c = C.front();
      if (c.distance > bound && W.size() >= ef) break;
      std::pop_heap(C.begin(), C.end(), FartherFirst{});
      C.pop_back();
      uint32_t n;
      const uint32_t* nb = links(c.node, lc, &n);
      // The next candidate is most often the current nearest one left: fetch its links now.
      if (!C.empty()) prefetch_links(C.front().node, lc);
      for (uint32_t i = 0; i < n; ++i) visited.prefetch(nb[i]);
      // Unvisited neighbours first, so only vectors that will be read are prefetched.
      uint32_t m = 0;
      for (uint32_t i = 0; i < n; ++i) {
        uint32_t e = nb[i];
        if (!visited.test_and_set(e)) {
          todo[m++] = e;
          space.prefetch(e);
        }
      }
      for (uint32_t i = 0; i < m; ++i) {
        uint32_t e = todo[i];
        if (i + 1 < m) space.prefetch_all(todo[i + 1]);
        float d = space(e);
        if (W.size() < ef || d < bound) {
          // A likely future candidate: start fetching its links (hnswlib gets them with the
          // vector, which sits next to them in its layout; here they live apart).
          __builtin_prefetch(link_head(e, lc));
          C.push_back(Candidate{d, e});
          std::push_heap(C.begin(), C.end(), FartherFirst{});
          if (accept(e)) {
            W.push_back(Candidate{d, e});
            std::push_heap(W.begin(), W.end());
            if (W.size() > ef) {
              std::pop_heap(W.begin(), W.end());
              W.pop_back();
            }
            bound = W.front().distance;
          }
        }
      }
    }
  }

  static SearchScratch& scratch() {
    static thread_local SearchScratch s;
    return s;
  }

  // SELECT-NEIGHBORS-HEURISTIC (algorithm 4) without extendCandidates / keepPrunedConnections:
  // a candidate is kept only when it is closer to the base element than to every neighbour
  // kept so far, which spreads links over directions instead of clustering them.
  // REQUIRES: W sorted nearest first.
  template <class Space>
  std::vector<Candidate> select_neighbors_heuristic(const Space& space, const std::vector<Candidate>& W,
                                                    size_t M) const {
    std::vector<Candidate> R;
    if (W.size() <= M) return W;
    for (const Candidate& e : W) {
      bool good = true;
      for (const Candidate& r : R)
        if (space.between(e.node, r.node) < e.distance) {
          good = false;
          break;
        }
      if (good) {
        R.push_back(e);
        if (R.size() >= M) break;
      }
    }
    return R;
  }

  const uint32_t* link_head(uint32_t v, int lc) const {
    return lc == 0 ? &links0_[size_t(v) * (M_max0_ + 1)] : &upper_pool_[upper_at(v, lc)];
  }

  void prefetch_links(uint32_t v, int lc) const {
    const uint32_t* p = link_head(v, lc);
    __builtin_prefetch(p);
    __builtin_prefetch(reinterpret_cast<const char*>(p) + 64);
    __builtin_prefetch(reinterpret_cast<const char*>(p) + 128);
  }

  size_t upper_at(uint32_t v, int lc) const { return upper_offset_[v] + size_t(lc - 1) * (M_ + 1); }

  void set_links(uint32_t v, int lc, const std::vector<Candidate>& nb) {
    uint32_t* p = lc == 0 ? &links0_[size_t(v) * (M_max0_ + 1)] : &upper_pool_[upper_at(v, lc)];
    p[0] = static_cast<uint32_t>(nb.size());
    for (size_t i = 0; i < nb.size(); ++i) p[1 + i] = nb[i].node;
  }

  // Adds the link e -> q; when e has more than m_max links, shrinks them with the heuristic.
  template <class Space>
  void add_link(const Space& space, uint32_t e, uint32_t q, float dist_eq, int lc, size_t m_max) {
    uint32_t* p = lc == 0 ? &links0_[size_t(e) * (M_max0_ + 1)] : &upper_pool_[upper_at(e, lc)];
    uint32_t n = p[0];
    for (uint32_t i = 0; i < n; ++i)
      if (p[1 + i] == q) return;
    if (n < m_max) {
      p[1 + n] = q;
      p[0] = n + 1;
      return;
    }
    std::vector<Candidate> cand;
    cand.reserve(n + 1);
    cand.push_back(Candidate{dist_eq, q});
    for (uint32_t i = 0; i < n; ++i) cand.push_back(Candidate{space.between(e, p[1 + i]), p[1 + i]});
    std::sort(cand.begin(), cand.end());
    std::vector<Candidate> kept = select_neighbors_heuristic(space, cand, m_max);
    set_links(e, lc, kept);
  }

  size_t M_, M_max0_, ef_construction_;
  double m_L_;
  std::mt19937_64 rng_;
  std::vector<int8_t> levels_;                 // per node; kAbsent when not in the graph
  std::vector<uint32_t> links0_;               // layer 0: node * (M_max0 + 1): count, ids
  std::vector<uint32_t> upper_offset_;         // per node: start of its upper links in upper_pool_
  std::vector<uint32_t> upper_pool_;           // layers 1..level: level * (M + 1) words per node
  uint32_t entry_point_ = 0;
  int max_level_ = -1;
  size_t node_count_ = 0;
};

}  // namespace etna::store::detail
