// HNSW quality at scale: recall@10 against brute force on 100k x 128 clustered vectors at
// default parameters, after deleting and re-inserting 20%, under filters keeping 50%, 5% and
// 0.5% of the points, and with int8 quantisation. ETNA_STORE_RECALL_N overrides the size.
#include <gtest/gtest.h>

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <unordered_set>

#include "etna/store/database.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;
constexpr size_t kDim = 128;
constexpr size_t kQueries = 100;
constexpr size_t kK = 10;

size_t dataset_size() {
  const char* env = std::getenv("ETNA_STORE_RECALL_N");
  return env ? std::max<size_t>(1000, std::strtoull(env, nullptr, 10)) : 100000;
}

// Gaussian clusters: 200 centres, points scattered around them.
struct Clusters {
  std::mt19937 rng{42};
  std::vector<std::vector<float>> centres;
  Clusters() {
    std::normal_distribution<float> g;
    centres.resize(200, std::vector<float>(kDim));
    for (auto& c : centres)
      for (auto& x : c) x = g(rng);
  }
  std::vector<float> sample() {
    std::normal_distribution<float> g(0.0f, 0.35f);
    const auto& c = centres[rng() % centres.size()];
    std::vector<float> v(kDim);
    for (size_t k = 0; k < kDim; ++k) v[k] = c[k] + g(rng);
    return v;
  }
};

void normalise(std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  float inv = float(1.0 / std::sqrt(s));
  for (float& x : v) x *= inv;
}

struct Item {
  uint64_t id;
  std::vector<float> unit;  // normalised copy for the brute force
  int r;                    // uniform 0..999: drives the filters
};

class StoreRecall : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    db_ = Database::open(dir_->path()).release();
    Clusters gen;
    size_t n = dataset_size();
    CollectionConfig cfg;
    cfg.dim = kDim;
    cfg.distance = Distance::Cosine;
    auto& c = db_->create_collection("recall", cfg);
    c.create_payload_index("r", PayloadSchemaType::Integer);
    std::vector<Point> batch;
    for (uint64_t i = 0; i < n; ++i) {
      Item it{i, gen.sample(), int(gen.rng() % 1000)};
      batch.push_back({i, it.unit, {{"r", it.r}, {"half", it.r < 500 ? "yes" : "no"}}});
      normalise(it.unit);
      items_->push_back(std::move(it));
      if (batch.size() == 5000 || i + 1 == n) c.upsert(std::move(batch)), batch.clear();
    }
    for (size_t q = 0; q < kQueries; ++q) queries_->push_back(gen.sample());
    gen_ = new Clusters(std::move(gen));
  }
  static void TearDownTestSuite() {
    delete db_;
    delete dir_;
    delete gen_;
  }

  // Exact top-k ids among items passing keep(), by cosine.
  template <class Keep>
  static std::vector<uint64_t> brute_force(std::vector<float> q, const Keep& keep) {
    normalise(q);
    std::vector<std::pair<float, uint64_t>> best;
    for (const auto& it : *items_) {
      if (!keep(it)) continue;
      float s = 0;
      for (size_t k = 0; k < kDim; ++k) s += q[k] * it.unit[k];
      best.push_back({-s, it.id});
    }
    size_t k = std::min(kK, best.size());
    std::partial_sort(best.begin(), best.begin() + long(k), best.end());
    std::vector<uint64_t> out;
    for (size_t i = 0; i < k; ++i) out.push_back(best[i].second);
    return out;
  }

  template <class Keep>
  static double recall(Collection& c, std::shared_ptr<const Filter> f, const Keep& keep) {
    size_t found = 0, total = 0;
    for (const auto& q : *queries_) {
      auto truth = brute_force(q, keep);
      auto hits = c.search({.vector = q, .limit = kK, .filter = f});
      std::unordered_set<uint64_t> got;
      for (const auto& h : hits) got.insert(h.id.num());
      for (uint64_t id : truth) found += got.count(id);
      total += truth.size();
    }
    return total ? double(found) / double(total) : 1.0;
  }

  static inline test::TempDir* dir_ = nullptr;
  static inline Database* db_ = nullptr;
  static inline Clusters* gen_ = nullptr;
  static inline std::vector<Item>* items_ = new std::vector<Item>();
  static inline std::vector<std::vector<float>>* queries_ = new std::vector<std::vector<float>>();
};

const auto kAll = [](const Item&) { return true; };

TEST_F(StoreRecall, DefaultParameters) {
  double r = recall(db_->get("recall"), nullptr, kAll);
  std::printf("recall@10 (n=%zu, M=16, ef_construct=100, ef=100): %.4f\n", items_->size(), r);
  EXPECT_GE(r, 0.95);
}

TEST_F(StoreRecall, Filtered) {
  auto& c = db_->get("recall");
  struct Case {
    const char* name;
    json filter;
    std::function<bool(const Item&)> keep;
  };
  std::vector<Case> cases = {
      {"50% (keyword, not indexed)", {{"must", {{{"key", "half"}, {"match", {{"value", "yes"}}}}}}},
       [](const Item& it) { return it.r < 500; }},
      {"5% (integer range, indexed)", {{"must", {{{"key", "r"}, {"range", {{"gte", 100}, {"lt", 150}}}}}}},
       [](const Item& it) { return it.r >= 100 && it.r < 150; }},
      {"0.5% (integer match any, indexed)", {{"must", {{{"key", "r"}, {"match", {{"any", {7, 500, 999, 3, 600}}}}}}}},
       [](const Item& it) { return it.r == 7 || it.r == 500 || it.r == 999 || it.r == 3 || it.r == 600; }},
      {"5% (must_not, not indexed)", {{"must_not", {{{"key", "r"}, {"range", {{"gte", 50}}}}}}},
       [](const Item& it) { return it.r < 50; }},
  };
  for (const auto& cs : cases) {
    double r = recall(c, parse_filter(cs.filter), cs.keep);
    std::printf("filtered recall@10 %s: %.4f\n", cs.name, r);
    EXPECT_GE(r, 0.95) << cs.name;
  }
}

TEST_F(StoreRecall, Quantized) {
  CollectionConfig cfg;
  cfg.dim = kDim;
  cfg.distance = Distance::Cosine;
  cfg.quantization = ScalarQuantization{};
  auto& c = db_->create_collection("recall_int8", cfg);
  std::vector<Point> batch;
  for (const auto& it : *items_) {
    batch.push_back({it.id, it.unit, {}});
    if (batch.size() == 5000) c.upsert(std::move(batch)), batch.clear();
  }
  if (!batch.empty()) c.upsert(std::move(batch));
  double r = recall(c, nullptr, kAll);
  std::printf("int8 quantised recall@10 (rescored): %.4f\n", r);
  EXPECT_GE(r, 0.93);
  db_->drop_collection("recall_int8");
}

// Last: it changes the shared collection.
TEST_F(StoreRecall, ZZAfterDeletingAndReinsertingTwentyPercent) {
  auto& c = db_->get("recall");
  std::mt19937 rng(7);
  auto& items = *items_;
  std::shuffle(items.begin(), items.end(), rng);
  size_t n_del = items.size() / 5;
  std::vector<PointId> del;
  for (size_t i = 0; i < n_del; ++i) del.push_back(items[i].id);
  c.delete_points(PointSelector::by_ids(del));
  items.erase(items.begin(), items.begin() + long(n_del));
  double during = recall(c, nullptr, kAll);  // tombstones still in the graph (or mid-rebuild)
  std::vector<Point> batch;
  uint64_t next = 10'000'000;
  for (size_t i = 0; i < n_del; ++i) {
    Item it{next++, gen_->sample(), int(rng() % 1000)};
    batch.push_back({it.id, it.unit, {{"r", it.r}}});
    normalise(it.unit);
    items.push_back(std::move(it));
    if (batch.size() == 5000) c.upsert(std::move(batch)), batch.clear();
  }
  if (!batch.empty()) c.upsert(std::move(batch));
  c.wait_for_optimizer();
  auto info = c.info();
  EXPECT_EQ(info.points_count, items.size());
  EXPECT_EQ(info.indexed_vectors_count, items.size());
  double after = recall(c, nullptr, kAll);
  std::printf("recall@10 right after deleting 20%%: %.4f; after re-inserting 20%% and the rebuild: %.4f\n", during,
              after);
  EXPECT_GE(during, 0.95);
  EXPECT_GE(after, 0.95);
}

}  // namespace
}  // namespace etna::store
