// Vector store API semantics: every Database and Collection operation, bad input, persistence.
#include <gtest/gtest.h>

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>
#include <random>

#include "etna/base/error.h"
#include "etna/store/database.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;

CollectionConfig config(size_t dim, Distance d = Distance::Euclid) {
  CollectionConfig c;
  c.dim = dim;
  c.distance = d;
  return c;
}

std::vector<float> vec(std::initializer_list<float> v) { return std::vector<float>(v); }

template <class F>
ErrorKind error_kind(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no etna::Error thrown";
  return ErrorKind::internal;
}

std::shared_ptr<const Filter> filter(const json& j) { return parse_filter(j); }

std::vector<uint64_t> ids_of(const std::vector<ScoredPoint>& hits) {
  std::vector<uint64_t> out;
  for (const auto& h : hits) out.push_back(h.id.num());
  return out;
}

TEST(StoreDatabase, CreateListGetDrop) {
  test::TempDir dir;
  auto db = Database::open(dir.path());
  EXPECT_TRUE(db->list_collections().empty());
  db->create_collection("b", config(2));
  db->create_collection("a", config(3));
  EXPECT_EQ(db->list_collections(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(db->get("a").config().dim, 3u);
  EXPECT_EQ(error_kind([&] { db->create_collection("a", config(3)); }), ErrorKind::conflict);
  EXPECT_EQ(error_kind([&] { db->get("zzz"); }), ErrorKind::not_found);
  EXPECT_EQ(error_kind([&] { db->create_collection("../evil", config(3)); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { db->create_collection("", config(3)); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { db->create_collection("z", config(0)); }), ErrorKind::invalid_argument);
  auto held = db->acquire("b");
  EXPECT_TRUE(db->drop_collection("b"));
  EXPECT_FALSE(db->drop_collection("b"));
  EXPECT_EQ(error_kind([&] { held->count(nullptr); }), ErrorKind::not_found);  // dropped under a holder
  EXPECT_EQ(db->list_collections(), (std::vector<std::string>{"a"}));
  db.reset();
  db = Database::open(dir.path());
  EXPECT_EQ(db->list_collections(), (std::vector<std::string>{"a"}));
}

TEST(StoreDatabase, ConfigFromQdrantJson) {
  auto c = CollectionConfig::from_create_json(
      {{"vectors", {{"size", 4}, {"distance", "Dot"}}},
       {"hnsw_config", {{"m", 8}, {"ef_construct", 64}}},
       {"quantization_config", {{"scalar", {{"type", "int8"}, {"quantile", 0.95}, {"always_ram", true}}}}}});
  EXPECT_EQ(c.dim, 4u);
  EXPECT_EQ(c.distance, Distance::Dot);
  EXPECT_EQ(c.hnsw.m, 8u);
  EXPECT_EQ(c.hnsw.ef_construct, 64u);
  ASSERT_TRUE(c.quantization);
  EXPECT_FLOAT_EQ(c.quantization->quantile, 0.95f);
  EXPECT_EQ(c.to_json()["params"]["vectors"]["size"], 4);
  EXPECT_EQ(error_kind([] { CollectionConfig::from_create_json({{"vectors", {{"size", 4}, {"distance", "Sine"}}}}); }),
            ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([] { CollectionConfig::from_create_json({{"vectors", {{"size", 0}, {"distance", "Dot"}}}}); }),
            ErrorKind::invalid_argument);
}

TEST(StorePointId, NumbersAndUuids) {
  EXPECT_EQ(PointId::from_json(5).num(), 5u);
  auto u = PointId::from_json("550E8400-E29B-41D4-A716-446655440000");
  EXPECT_TRUE(u.is_uuid());
  EXPECT_EQ(u.to_string(), "550e8400-e29b-41d4-a716-446655440000");
  EXPECT_EQ(PointId::from_json("550e8400e29b41d4a716446655440000"), u);
  EXPECT_EQ(PointId::from_json("urn:uuid:550e8400-e29b-41d4-a716-446655440000"), u);
  EXPECT_LT(PointId(uint64_t(1) << 63), u);  // integers order before UUIDs
  EXPECT_EQ(error_kind([] { PointId::from_json(-1); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([] { PointId::from_json(1.5); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([] { PointId::from_json("550e8400-e29b-41d4-a716-44665544000g"); }), ErrorKind::invalid_argument);
}

class StoreCollection : public ::testing::Test {
 protected:
  void SetUp() override { db_ = Database::open(dir_.path()); }
  Collection& make(size_t dim, Distance d = Distance::Euclid) { return db_->create_collection("c", config(dim, d)); }
  void reopen() {
    db_.reset();
    db_ = Database::open(dir_.path());
  }
  test::TempDir dir_;
  std::unique_ptr<Database> db_;
};

TEST_F(StoreCollection, UpsertRetrieveOverwrite) {
  auto& c = make(3, Distance::Cosine);
  uint64_t op1 = c.upsert({{1, vec({3, 0, 4}), {{"a", 1}}}, {2, vec({0, 1, 0}), nullptr}});
  auto r = c.retrieve({2, 1, 99}, PayloadSelector::all(), true);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].id.num(), 2u);
  EXPECT_EQ(*r[0].payload, json::object());
  EXPECT_EQ(r[1].id.num(), 1u);
  EXPECT_EQ((*r[1].payload)["a"], 1);
  EXPECT_NEAR((*r[1].vector)[0], 0.6f, 1e-6);  // Cosine vectors are stored normalised
  EXPECT_NEAR((*r[1].vector)[2], 0.8f, 1e-6);
  uint64_t op2 = c.upsert({{1, vec({0, 0, 1}), {{"b", 2}}}});
  EXPECT_GT(op2, op1);
  r = c.retrieve({1}, PayloadSelector::all(), true);
  EXPECT_EQ(*r[0].payload, json({{"b", 2}}));
  EXPECT_FLOAT_EQ((*r[0].vector)[2], 1.0f);
  EXPECT_EQ(c.count(nullptr), 2u);
  auto hits = c.search({.vector = vec({0, 0, 1}), .limit = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].version, op2);
  EXPECT_NEAR(hits[0].score, 1.0f, 1e-6);
  r = c.retrieve({1}, PayloadSelector::none(), false);
  EXPECT_FALSE(r[0].payload);
  EXPECT_FALSE(r[0].vector);
}

TEST_F(StoreCollection, BadPointsWriteNothing) {
  auto& c = make(2);
  c.upsert({{1, vec({1, 1}), {}}});
  EXPECT_EQ(error_kind([&] { c.upsert({{2, vec({1, 2}), {}}, {3, vec({1, 2, 3}), {}}}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { c.upsert({{2, vec({1, 2}), {}}, {3, vec({NAN, 2}), {}}}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { c.upsert({{2, vec({1, 2}), {}}, {3, vec({1, INFINITY}), {}}}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { c.upsert({{2, vec({1, 2}), json::array()}}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(c.count(nullptr), 1u);
  EXPECT_TRUE(c.retrieve({2, 3}, PayloadSelector::all(), false).empty());
  try {
    c.upsert({{7, vec({1}), {}}});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("point 7: vector has 1 dimensions, collection 'c' expects 2"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(error_kind([&] { c.search({.vector = vec({1, 2, 3})}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { c.search({.vector = vec({NAN, 2})}); }), ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind([&] { c.set_payload({{"x", 1}}, PointSelector::by_ids({1, 42})); }), ErrorKind::not_found);
  EXPECT_EQ(c.retrieve({1}, PayloadSelector::all(), false)[0].payload, json::object());
  EXPECT_EQ(error_kind([&] { c.set_payload(json::array(), PointSelector::by_ids({1})); }), ErrorKind::invalid_argument);
  reopen();  // the rejected writes were not logged either
  EXPECT_EQ(db_->get("c").count(nullptr), 1u);
}

TEST_F(StoreCollection, BinaryDistancesRejectNonBinary) {
  auto& c = db_->create_collection("h", config(3, Distance::Hamming));
  EXPECT_EQ(error_kind([&] { c.upsert({{1, vec({1, 0.5f, 0}), {}}}); }), ErrorKind::invalid_argument);
  c.upsert({{1, vec({1, 0, 1}), {}}, {2, vec({0, 1, 0}), {}}, {3, vec({1, 1, 1}), {}}});
  auto hits = c.search({.vector = vec({1, 0, 0}), .limit = 3});
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].id.num(), 1u);  // 2 and 3 tie
  EXPECT_FLOAT_EQ(hits[0].score, 1);
  EXPECT_FLOAT_EQ(hits[1].score, 2);
  EXPECT_FLOAT_EQ(hits[2].score, 2);
  auto& j = db_->create_collection("j", config(4, Distance::Jaccard));
  j.upsert({{1, vec({1, 1, 0, 0}), {}}, {2, vec({1, 0, 0, 0}), {}}, {3, vec({0, 0, 1, 1}), {}}});
  hits = j.search({.vector = vec({1, 1, 1, 0}), .limit = 3});
  EXPECT_EQ(ids_of(hits), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_FLOAT_EQ(hits[0].score, 1.0f / 3);  // 1 - 2/3
  EXPECT_FLOAT_EQ(hits[1].score, 2.0f / 3);  // 1 - 1/3
  EXPECT_FLOAT_EQ(hits[2].score, 0.75f);     // 1 - 1/4
}

TEST_F(StoreCollection, SearchAllMetricsAgainstBruteForce) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (Distance d : {Distance::Cosine, Distance::Dot, Distance::Euclid, Distance::Manhattan}) {
    std::string name = distance_name(d);  // not "m" + ...: GCC 12 -Wrestrict false positive
    auto& c = db_->create_collection(name, config(8, d));
    std::vector<Point> pts;
    for (uint64_t i = 0; i < 500; ++i) {
      Point p{i, std::vector<float>(8), {{"i", i}}};
      for (auto& x : p.vector) x = g(rng);
      pts.push_back(p);
    }
    c.upsert(pts);
    std::vector<float> q(8);
    for (auto& x : q) x = g(rng);
    auto exact = c.search({.vector = q, .limit = 10, .exact = true});
    auto approx = c.search({.vector = q, .limit = 10});
    ASSERT_EQ(exact.size(), 10u);
    EXPECT_EQ(ids_of(exact), ids_of(approx)) << name;  // small graph, ef 100: must be exact
    // Brute force in the test, with the metric's definition.
    std::vector<std::pair<float, uint64_t>> ref;
    for (const auto& p : pts) {
      std::vector<float> a = p.vector, b = q;
      double s = 0;
      if (d == Distance::Cosine) {
        double na = 0, nb = 0, dot = 0;
        for (int k = 0; k < 8; ++k) na += a[k] * a[k], nb += b[k] * b[k], dot += a[k] * b[k];
        s = -dot / std::sqrt(na * nb);
      } else if (d == Distance::Dot) {
        for (int k = 0; k < 8; ++k) s -= a[k] * b[k];
      } else if (d == Distance::Euclid) {
        for (int k = 0; k < 8; ++k) s += (a[k] - b[k]) * (a[k] - b[k]);
        s = std::sqrt(s);
      } else {
        for (int k = 0; k < 8; ++k) s += std::fabs(a[k] - b[k]);
      }
      ref.push_back({float(s), p.id.num()});
    }
    std::sort(ref.begin(), ref.end());
    for (size_t k = 0; k < 10; ++k) {
      EXPECT_EQ(exact[k].id.num(), ref[k].second) << name;
      float want = higher_is_better(d) ? -ref[k].first : ref[k].first;
      EXPECT_NEAR(exact[k].score, want, 1e-4) << name;
    }
    // Threshold keeps only better-than scores; offset skips.
    float t = exact[4].score;
    auto thr = c.search({.vector = q, .limit = 10, .score_threshold = t});
    EXPECT_EQ(thr.size(), 5u) << name;
    auto off = c.search({.vector = q, .limit = 3, .offset = 2});
    auto exact_ids = ids_of(exact);
    EXPECT_EQ(ids_of(off), (std::vector<uint64_t>(exact_ids.begin() + 2, exact_ids.begin() + 5))) << name;
  }
}

TEST_F(StoreCollection, SearchPayloadSelectionVectorsAndBatch) {
  auto& c = make(2);
  c.upsert({{1, vec({0, 0}), {{"a", 1}, {"b", {{"c", 2}, {"d", 3}}}}}, {2, vec({5, 5}), {{"a", 2}}}});
  SearchRequest r{.vector = vec({0, 0}), .limit = 1};
  r.with_payload = PayloadSelector::from_json({"b.c"});
  r.with_vector = true;
  auto hits = c.search(r);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(*hits[0].payload, json({{"b", {{"c", 2}}}}));
  EXPECT_EQ(*hits[0].vector, vec({0, 0}));
  r.with_payload = PayloadSelector::from_json({{"exclude", {"b"}}});
  EXPECT_EQ(*c.search(r)[0].payload, json({{"a", 1}}));
  r.with_payload = PayloadSelector::from_json(false);
  EXPECT_FALSE(c.search(r)[0].payload);
  EXPECT_EQ(error_kind([] { PayloadSelector::from_json(5); }), ErrorKind::invalid_argument);
  auto batch = c.search_batch({{.vector = vec({0, 0}), .limit = 1}, {.vector = vec({5, 4}), .limit = 1}});
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0][0].id.num(), 1u);
  EXPECT_EQ(batch[1][0].id.num(), 2u);
  EXPECT_TRUE(c.search({.vector = vec({0, 0}), .limit = 0}).empty());
}

TEST_F(StoreCollection, DeleteByIdsAndFilter) {
  auto& c = make(2);
  std::vector<Point> pts;
  for (uint64_t i = 0; i < 20; ++i) pts.push_back({i, vec({float(i), 0}), {{"even", i % 2 == 0}}});
  c.upsert(pts);
  c.delete_points(PointSelector::by_ids({3, 4, 1000}));
  EXPECT_EQ(c.count(nullptr), 18u);
  c.delete_points(PointSelector::by_filter(filter({{"must", {{{"key", "even"}, {"match", {{"value", true}}}}}}})));
  EXPECT_EQ(c.count(nullptr), 9u);  // odd ones minus 3
  auto hits = c.search({.vector = vec({4.4f, 0}), .limit = 3});
  EXPECT_EQ(ids_of(hits), (std::vector<uint64_t>{5, 7, 1}));
  reopen();
  EXPECT_EQ(db_->get("c").count(nullptr), 9u);
}

TEST_F(StoreCollection, ScrollOrderPagingAndFilter) {
  auto& c = make(1);
  std::vector<Point> pts;
  for (uint64_t i : {5, 1, 9, 3, 7}) pts.push_back({i, vec({float(i)}), {{"big", i > 4}}});
  pts.push_back({PointId::uuid("00000000-0000-0000-0000-000000000001"), vec({0}), {{"big", true}}});
  c.upsert(pts);
  auto page = c.scroll({.limit = 2});
  ASSERT_EQ(page.points.size(), 2u);
  EXPECT_EQ(page.points[0].id.num(), 1u);
  EXPECT_EQ(page.points[1].id.num(), 3u);
  ASSERT_TRUE(page.next_page_offset);
  EXPECT_EQ(page.next_page_offset->num(), 5u);
  page = c.scroll({.offset = page.next_page_offset, .limit = 10});
  ASSERT_EQ(page.points.size(), 4u);
  EXPECT_TRUE(page.points[3].id.is_uuid());
  EXPECT_FALSE(page.next_page_offset);
  page = c.scroll({.limit = 10, .filter = filter({{"must", {{{"key", "big"}, {"match", {{"value", true}}}}}}})});
  EXPECT_EQ(page.points.size(), 4u);
  EXPECT_EQ(page.points[0].id.num(), 5u);
  EXPECT_EQ(c.count(filter({{"must_not", {{{"key", "big"}, {"match", {{"value", true}}}}}}}).get()), 2u);
}

TEST_F(StoreCollection, PayloadOperations) {
  auto& c = make(1);
  c.upsert({{1, vec({1}), {{"a", 1}, {"n", {{"x", 1}, {"y", 2}}}}}, {2, vec({2}), {{"a", 2}}}});
  c.set_payload({{"b", "new"}, {"a", 10}}, PointSelector::by_ids({1}));
  EXPECT_EQ(*c.retrieve({1}, PayloadSelector::all(), false)[0].payload,
            json({{"a", 10}, {"b", "new"}, {"n", {{"x", 1}, {"y", 2}}}}));
  c.delete_payload({"n.x", "b"}, PointSelector::by_ids({1}));
  EXPECT_EQ(*c.retrieve({1}, PayloadSelector::all(), false)[0].payload, json({{"a", 10}, {"n", {{"y", 2}}}}));
  c.overwrite_payload({{"only", true}}, PointSelector::by_filter(filter({{"must", {{{"key", "a"}, {"match", {{"value", 2}}}}}}})));
  EXPECT_EQ(*c.retrieve({2}, PayloadSelector::all(), false)[0].payload, json({{"only", true}}));
  c.clear_payload(PointSelector::by_ids({1}));
  EXPECT_EQ(*c.retrieve({1}, PayloadSelector::all(), false)[0].payload, json::object());
  reopen();
  auto& c2 = db_->get("c");
  EXPECT_EQ(*c2.retrieve({1}, PayloadSelector::all(), false)[0].payload, json::object());
  EXPECT_EQ(*c2.retrieve({2}, PayloadSelector::all(), false)[0].payload, json({{"only", true}}));
}

TEST_F(StoreCollection, PayloadIndexesAndFilteredSearch) {
  auto& c = make(2);
  std::vector<Point> pts;
  for (uint64_t i = 0; i < 3000; ++i)
    pts.push_back({i, vec({float(i % 100), float(i / 100)}),
                   {{"color", i % 3 == 0 ? "red" : "blue"}, {"n", int64_t(i)}, {"f", i * 0.5}, {"flag", i % 7 == 0}}});
  c.upsert(pts);
  c.create_payload_index("color", PayloadSchemaType::Keyword);
  c.create_payload_index("n", PayloadSchemaType::Integer);
  c.create_payload_index("f", PayloadSchemaType::Float);
  c.create_payload_index("flag", PayloadSchemaType::Bool);
  auto info = c.info();
  ASSERT_EQ(info.payload_schema.size(), 4u);
  EXPECT_EQ(info.payload_schema["color"].type, PayloadSchemaType::Keyword);
  EXPECT_EQ(info.payload_schema["n"].points, 3000u);
  EXPECT_EQ(info.points_count, 3000u);
  EXPECT_EQ(info.indexed_vectors_count, 3000u);
  std::vector<bool> gone(pts.size(), false);
  auto check = [&](const json& fj) {
    auto f = filter(fj);
    SearchRequest r{.vector = vec({50, 10}), .limit = 10, .filter = f};
    auto approx = c.search(r);
    r.exact = true;
    auto exact = c.search(r);
    EXPECT_EQ(ids_of(approx), ids_of(exact)) << fj.dump();
    for (const auto& h : approx) EXPECT_TRUE(f->matches(h.id, pts[h.id.num()].payload)) << fj.dump();
    uint64_t n = 0;
    for (const auto& p : pts) n += !gone[p.id.num()] && f->matches(p.id, p.payload);
    EXPECT_EQ(c.count(f.get()), n) << fj.dump();
  };
  check({{"must", {{{"key", "color"}, {"match", {{"value", "red"}}}}}}});
  check({{"must", {{{"key", "n"}, {"range", {{"gte", 100}, {"lt", 120}}}}}}});
  check({{"must", {{{"key", "f"}, {"range", {{"gt", 10}, {"lte", 30}}}}}}});
  check({{"must", {{{"key", "flag"}, {"match", {{"value", true}}}}, {{"key", "color"}, {"match", {{"any", {"red"}}}}}}}});
  check({{"must", {{{"has_id", {5, 17, 2500}}}}}});
  // Updates keep the index exact.
  c.set_payload({{"color", "green"}}, PointSelector::by_ids({1, 2}));
  c.delete_points(PointSelector::by_ids({0}));
  pts[1].payload["color"] = pts[2].payload["color"] = "green";
  gone[0] = true;
  check({{"must", {{{"key", "color"}, {"match", {{"value", "green"}}}}}}});
  check({{"must", {{{"key", "color"}, {"match", {{"value", "red"}}}}}}});
  c.delete_payload_index("flag");
  EXPECT_EQ(c.info().payload_schema.size(), 3u);
  reopen();
  EXPECT_EQ(db_->get("c").info().payload_schema.size(), 3u);
  EXPECT_EQ(db_->get("c").count(filter({{"must", {{{"key", "color"}, {"match", {{"value", "green"}}}}}}}).get()), 2u);
}

TEST_F(StoreCollection, TombstonesAreRebuiltAway) {
  Collection::Options opt;
  opt.background_optimizer = true;
  db_.reset();
  db_ = Database::open(dir_.path(), opt);
  auto& c = make(4);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<Point> pts;
  for (uint64_t i = 0; i < 2000; ++i) pts.push_back({i, {u(rng), u(rng), u(rng), u(rng)}, {}});
  c.upsert(pts);
  std::vector<PointId> del;
  for (uint64_t i = 0; i < 2000; i += 2) del.push_back(i);
  c.delete_points(PointSelector::by_ids(del));
  c.wait_for_optimizer();
  auto info = c.info();
  EXPECT_EQ(info.points_count, 1000u);
  EXPECT_EQ(info.indexed_vectors_count, 1000u);
  EXPECT_EQ(info.status, "green");
  // Freed slots are reused and search stays exact on this small set.
  std::vector<Point> more;
  for (uint64_t i = 5000; i < 5500; ++i) more.push_back({i, {u(rng), u(rng), u(rng), u(rng)}, {}});
  c.upsert(more);
  for (int t = 0; t < 20; ++t) {
    std::vector<float> q{u(rng), u(rng), u(rng), u(rng)};
    EXPECT_EQ(ids_of(c.search({.vector = q, .limit = 5})), ids_of(c.search({.vector = q, .limit = 5, .exact = true})));
  }
  reopen();
  EXPECT_EQ(db_->get("c").count(nullptr), 1500u);
}

TEST_F(StoreCollection, QuantizedSmallCollection) {
  CollectionConfig cfg = config(16, Distance::Dot);
  cfg.quantization = ScalarQuantization{};
  auto& c = db_->create_collection("q", cfg);
  std::mt19937 rng(9);
  std::normal_distribution<float> g;
  std::vector<Point> pts;
  for (uint64_t i = 0; i < 1000; ++i) {
    Point p{i, std::vector<float>(16), {}};
    for (auto& x : p.vector) x = g(rng);
    pts.push_back(p);
  }
  c.upsert(pts);
  int agree = 0;
  for (int t = 0; t < 20; ++t) {
    std::vector<float> q(16);
    for (auto& x : q) x = g(rng);
    auto a = c.search({.vector = q, .limit = 1});
    auto e = c.search({.vector = q, .limit = 1, .exact = true});
    agree += a[0].id == e[0].id;
    if (a[0].id == e[0].id) {
      EXPECT_FLOAT_EQ(a[0].score, e[0].score);  // rescored with the floats
    }
  }
  EXPECT_GE(agree, 18);
  reopen();
  EXPECT_EQ(db_->get("q").count(nullptr), 1000u);
}

}  // namespace
}  // namespace etna::store
