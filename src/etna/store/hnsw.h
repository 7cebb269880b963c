// Hierarchical Navigable Small World graph (Malkov & Yashunin, "Efficient and robust approximate
// nearest neighbor search using Hierarchical Navigable Small World graphs", 2016/2018). Internal.
//
// The graph stores only links; nodes are slot numbers of the owning collection and distances come
// from a caller-supplied Space, so the same graph serves float and int8 distances. Names follow
// the paper: M, M_max0 = 2*M (layer 0), ef_construction, m_L = 1/ln(M), SEARCH-LAYER,
// SELECT-NEIGHBORS-HEURISTIC, INSERT, K-NN-SEARCH.
//
// Layout: layer-0 links live in one flat array (M_max0 + 1 uint32 per node: count, then ids);
// upper layers (about 1/M of the nodes) have one small array per node.
// Not thread-safe for writes; concurrent searches are safe when no insert runs (the owner's lock).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <vector>

namespace etna::store::detail {

// Marks visited nodes with a generation number, so clearing is O(1) per search.
class VisitedList {
 public:
  void begin(size_t n) {
    if (tags_.size() < n) tags_.resize(n + n / 4 + 16, 0);
    if (++generation_ == 0) {
      std::fill(tags_.begin(), tags_.end(), 0);
      generation_ = 1;
    }
  }
  bool test_and_set(uint32_t v) {
    if (tags_[v] == generation_) return true;
    tags_[v] = generation_;
    return false;
  }

 private:
  std::vector<uint16_t> tags_;
  uint16_t generation_ = 0;
};

struct Candidate {
  float distance;
  uint32_t node;
  bool operator<(const Candidate& o) const { return distance < o.distance; }  // max-heap on distance
};
struct FartherFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.distance > b.distance; }
};
using MaxHeap = std::priority_queue<Candidate>;                                       // furthest on top
using MinHeap = std::priority_queue<Candidate, std::vector<Candidate>, FartherFirst>;  // nearest on top

class HnswGraph {
 public:
  static constexpr int8_t kAbsent = -1;

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
    upper_.resize(n);
  }

  // Links of v on layer lc: pointer to the ids and their count.
  const uint32_t* links(uint32_t v, int lc, uint32_t* count) const {
    const uint32_t* p = lc == 0 ? &links0_[size_t(v) * (M_max0_ + 1)] : &upper_[v][size_t(lc - 1) * (M_ + 1)];
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
    if (l > 0) upper_[q].assign(size_t(l) * (M_ + 1), 0);
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
      MaxHeap found = search_layer(space, {Candidate{ep_dist, ep}}, ef_construction_, lc,
                                   [](uint32_t) { return true; });
      W.clear();
      while (!found.empty()) W.push_back(found.top()), found.pop();
      std::reverse(W.begin(), W.end());  // nearest first
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
    MaxHeap found = search_layer(space, {Candidate{ep_dist, ep}}, ef, 0, accept);
    out.resize(found.size());
    for (size_t i = found.size(); i-- > 0;) out[i] = found.top(), found.pop();
    return out;
  }

  // Persistence helpers: raw arrays (the owner serialises them).
  std::vector<int8_t>& levels() { return levels_; }
  std::vector<uint32_t>& links0() { return links0_; }
  std::vector<std::vector<uint32_t>>& upper() { return upper_; }
  const std::vector<int8_t>& levels() const { return levels_; }
  const std::vector<uint32_t>& links0() const { return links0_; }
  const std::vector<std::vector<uint32_t>>& upper() const { return upper_; }
  void restore_header(uint32_t entry_point, int max_level, size_t node_count) {
    entry_point_ = entry_point;
    max_level_ = max_level;
    node_count_ = node_count;
  }
  size_t memory_bytes() const {
    size_t b = levels_.capacity() + links0_.capacity() * sizeof(uint32_t) + upper_.capacity() * sizeof(upper_[0]);
    for (const auto& u : upper_) b += u.capacity() * sizeof(uint32_t);
    return b;
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

  // SEARCH-LAYER (algorithm 2) returning the ef nearest accepted nodes as a max-heap.
  template <class Space, class Accept>
  MaxHeap search_layer(const Space& space, std::vector<Candidate> eps, size_t ef, int lc,
                       const Accept& accept) const {
    auto visited = acquire_visited();
    visited->begin(levels_.size());
    MinHeap C;  // candidates
    MaxHeap W;  // dynamic list of found nearest neighbours (accepted only)
    for (const Candidate& e : eps) {
      visited->test_and_set(e.node);
      C.push(e);
      if (accept(e.node)) W.push(e);
    }
    float bound = W.empty() ? INFINITY : W.top().distance;
    while (!C.empty()) {
      Candidate c = C.top();
      if (c.distance > bound && W.size() >= ef) break;
      C.pop();
      uint32_t n;
      const uint32_t* nb = links(c.node, lc, &n);
      for (uint32_t i = 0; i < n; ++i) space.prefetch(nb[i]);
      for (uint32_t i = 0; i < n; ++i) {
        uint32_t e = nb[i];
        if (visited->test_and_set(e)) continue;
        float d = space(e);
        if (W.size() < ef || d < bound) {
          C.push(Candidate{d, e});
          if (accept(e)) {
            W.push(Candidate{d, e});
            if (W.size() > ef) W.pop();
            bound = W.top().distance;
          }
        }
      }
    }
    release_visited(std::move(visited));
    return W;
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

  void set_links(uint32_t v, int lc, const std::vector<Candidate>& nb) {
    uint32_t* p = lc == 0 ? &links0_[size_t(v) * (M_max0_ + 1)] : &upper_[v][size_t(lc - 1) * (M_ + 1)];
    p[0] = static_cast<uint32_t>(nb.size());
    for (size_t i = 0; i < nb.size(); ++i) p[1 + i] = nb[i].node;
  }

  // Adds the link e -> q; when e has more than m_max links, shrinks them with the heuristic.
  template <class Space>
  void add_link(const Space& space, uint32_t e, uint32_t q, float dist_eq, int lc, size_t m_max) {
    uint32_t* p = lc == 0 ? &links0_[size_t(e) * (M_max0_ + 1)] : &upper_[e][size_t(lc - 1) * (M_ + 1)];
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

  std::unique_ptr<VisitedList> acquire_visited() const {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (pool_.empty()) return std::make_unique<VisitedList>();
    auto v = std::move(pool_.back());
    pool_.pop_back();
    return v;
  }
  void release_visited(std::unique_ptr<VisitedList> v) const {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_.push_back(std::move(v));
  }

  size_t M_, M_max0_, ef_construction_;
  double m_L_;
  std::mt19937_64 rng_;
  std::vector<int8_t> levels_;                 // per node; kAbsent when not in the graph
  std::vector<uint32_t> links0_;               // layer 0: node * (M_max0 + 1): count, ids
  std::vector<std::vector<uint32_t>> upper_;   // layers 1..level: (level) * (M + 1) per node
  uint32_t entry_point_ = 0;
  int max_level_ = -1;
  size_t node_count_ = 0;
  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<VisitedList>> pool_;
};

}  // namespace etna::store::detail
