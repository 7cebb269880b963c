// Named dense vectors and sparse vectors (the multi-vector engine): per-name size and distance,
// `using`, sparse dot products with and without idf, reopen, snapshots and kill -9.

#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include "etna/base/error.h"
#include "etna/store/database.h"
#include "support/kill_nine.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;

CollectionConfig text_image_sparse() {
  return CollectionConfig::from_create_json(json::parse(R"({
    "vectors": {"text": {"size": 4, "distance": "Dot"}, "image": {"size": 3, "distance": "Euclid"}},
    "sparse_vectors": {"bm25": {"modifier": "idf"}, "splade": {}}})"));
}

std::vector<float> text_vec(uint64_t id) {
  return {std::sin(float(id)), std::cos(float(id)), float(id % 7) * 0.1f, 1.0f};
}
std::vector<float> image_vec(uint64_t id) { return {float(id), float(id) * 0.5f, -float(id)}; }
SparseVector sparse_for(uint64_t id) {
  SparseVector s;
  s.indices = {uint32_t(id % 5), uint32_t(10 + id % 3), uint32_t(100 + id)};
  s.values = {1.0f, 0.5f + float(id % 2), 2.0f};
  return s;
}

Point make_point(uint64_t id) {
  Point p;
  p.id = id;
  p.payload = {{"id", id}, {"even", id % 2 == 0}};
  p.named.dense["text"] = text_vec(id);
  if (id % 3 != 0) p.named.dense["image"] = image_vec(id);  // some points lack a vector
  p.named.sparse["bm25"] = sparse_for(id);
  p.named.sparse["splade"] = sparse_for(id + 1);
  return p;
}

TEST(MultiVector, ConfigParsesNamedAndSparseAndRoundTripsToJson) {
  auto c = text_image_sparse();
  EXPECT_TRUE(c.multi());
  ASSERT_EQ(c.vectors.size(), 2u);
  EXPECT_EQ(c.vectors.at("text").dim, 4u);
  EXPECT_EQ(c.vectors.at("image").distance, Distance::Euclid);
  EXPECT_EQ(c.sparse.at("bm25").modifier, SparseModifier::Idf);
  EXPECT_EQ(c.sparse.at("splade").modifier, SparseModifier::None);
  json j = c.to_json();
  EXPECT_EQ(j["params"]["vectors"]["text"]["size"], 4);
  EXPECT_EQ(j["params"]["sparse_vectors"]["bm25"]["modifier"], "idf");
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"a": {"size": 4, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}}})")),
               Error);
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(R"({"sparse_vectors": {"s": {"modifier": "bm42"}}})")), Error);
}

TEST(MultiVector, SearchUsingEachNamedVectorMatchesBruteForce) {
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("m", text_image_sparse());
  std::vector<Point> pts;
  for (uint64_t i = 1; i <= 300; ++i) pts.push_back(make_point(i));
  c.upsert(pts);
  EXPECT_EQ(c.count(nullptr), 300u);

  SearchRequest r;
  r.using_name = "image";
  r.vector = {10.2f, 5.0f, -10.0f};
  r.limit = 3;
  auto hits = c.search(r);
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].id, PointId(10));  // 10 % 3 != 0, so it has an image vector
  for (const auto& h : hits) EXPECT_NE(h.id.num() % 3, 0u) << "a point without an image vector was returned";

  r.using_name = "text";
  r.vector = text_vec(42);
  r.limit = 300;
  hits = c.search(r);
  ASSERT_EQ(hits.size(), 300u);
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].score, hits[i].score);
  float self = 0;
  for (size_t k = 0; k < 4; ++k) self += text_vec(42)[k] * text_vec(42)[k];
  bool found = false;
  for (const auto& h : hits)
    if (h.id == PointId(42)) {
      found = true;
      EXPECT_NEAR(h.score, self, 1e-5);
    }
  EXPECT_TRUE(found);

  r.using_name = "nope";
  EXPECT_THROW(c.search(r), Error);
  r.using_name = "";
  EXPECT_THROW(c.search(r), Error);  // no default vector in a named collection
}

TEST(MultiVector, SparseDotProductAndIdf) {
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("s", text_image_sparse());
  for (uint64_t i = 1; i <= 20; ++i) c.upsert({make_point(i)});
  SearchRequest r;
  r.using_name = "splade";
  r.sparse = SparseVector{{1, 11, 107}, {1.0f, 1.0f, 3.0f}};
  r.limit = 5;
  r.with_vector = true;
  auto hits = c.search(r);
  ASSERT_FALSE(hits.empty());
  // Point 6's splade vector is sparse_for(7): indices {2, 11, 107}, values {1, 1.5, 2}.
  EXPECT_EQ(hits[0].id, PointId(6));
  EXPECT_FLOAT_EQ(hits[0].score, 1.0f * 1.5f + 3.0f * 2.0f);
  ASSERT_TRUE(hits[0].vectors);
  EXPECT_EQ(hits[0].vectors->sparse.at("splade").indices, (std::vector<uint32_t>{2, 11, 107}));
  // Every hit shares an index with the query; scores are exact dot products.
  for (const auto& h : hits) {
    SparseVector v = sparse_for(h.id.num() + 1);
    float dot = 0;
    for (size_t i = 0; i < v.indices.size(); ++i)
      for (size_t j = 0; j < r.sparse->indices.size(); ++j)
        if (v.indices[i] == r.sparse->indices[j]) dot += v.values[i] * r.sparse->values[j];
    EXPECT_FLOAT_EQ(h.score, dot) << h.id.to_string();
  }
  // idf: index 0 is held by 4 of 20 points (5,10,15,20) and index 100+i by one point each.
  r.using_name = "bm25";
  r.sparse = SparseVector{{0, 103}, {1.0f, 1.0f}};
  r.limit = 20;
  hits = c.search(r);
  double N = 20, idf0 = std::log((N - 4 + 0.5) / (4 + 0.5) + 1), idf103 = std::log((N - 1 + 0.5) / (1 + 0.5) + 1);
  ASSERT_EQ(hits[0].id, PointId(3));
  EXPECT_NEAR(hits[0].score, idf103 * 2.0, 1e-5);
  EXPECT_NEAR(hits[1].score, idf0 * 1.0, 1e-5);
  EXPECT_EQ(hits.size(), 5u);
  // A filter and a dense query on a sparse name are refused or applied.
  r.filter = parse_filter(json::parse(R"({"must": [{"key": "even", "match": {"value": true}}]})"));
  hits = c.search(r);
  ASSERT_EQ(hits.size(), 2u);  // 10 and 20
  for (const auto& h : hits) EXPECT_EQ(h.id.num() % 2, 0u);
  SearchRequest bad;
  bad.using_name = "text";
  bad.sparse = SparseVector{{1}, {1.0f}};
  EXPECT_THROW(c.search(bad), Error);
}

TEST(MultiVector, BadPointsAreRefusedWholeBatch) {
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("b", text_image_sparse());
  Point wrong_dim = make_point(1);
  wrong_dim.named.dense["text"] = {1, 2};
  EXPECT_THROW(c.upsert({make_point(2), wrong_dim}), Error);
  Point unknown = make_point(3);
  unknown.named.dense["audio"] = {1, 2, 3};
  EXPECT_THROW(c.upsert({unknown}), Error);
  Point sparse_as_dense = make_point(4);
  sparse_as_dense.named.dense["bm25"] = {1, 2, 3};
  EXPECT_THROW(c.upsert({sparse_as_dense}), Error);
  EXPECT_EQ(c.count(nullptr), 0u);
  EXPECT_THROW(SparseVector::from_json(json::parse(R"({"indices": [1, 1], "values": [1, 2]})"), "v"), Error);
  EXPECT_THROW(SparseVector::from_json(json::parse(R"({"indices": [1], "values": [1, 2]})"), "v"), Error);
}

TEST(MultiVector, ReopenCheckpointCompactionAndSnapshotKeepEverything) {
  test::TempDir dir;
  Collection::Options opt;
  opt.checkpoint_bytes = 16 * 1024;
  std::filesystem::path snap;
  {
    auto db = Database::open(dir.path(), opt);
    auto& c = db->create_collection("r", text_image_sparse());
    for (uint64_t i = 1; i <= 400; ++i) c.upsert({make_point(i)});
    c.delete_points(PointSelector::by_filter(parse_filter(json::parse(R"({"must": [{"key": "id", "range": {"gt": 200}}]})"))));
    c.set_payload({{"tag", "x"}}, PointSelector::by_ids({PointId(7)}));
    c.create_payload_index("id", PayloadSchemaType::Integer);
    snap = db->snapshot("r");
  }
  auto check = [](Collection& c) {
    EXPECT_EQ(c.count(nullptr), 200u);
    auto recs = c.retrieve({7, 9, 201}, PayloadSelector::all(), true);
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ((*recs[0].payload)["tag"], "x");
    ASSERT_TRUE(recs[0].vectors);
    EXPECT_EQ(recs[0].vectors->dense.at("text"), text_vec(7));
    EXPECT_EQ(recs[0].vectors->dense.at("image"), image_vec(7));
    EXPECT_EQ(recs[1].vectors->dense.count("image"), 0u);  // 9 had none
    EXPECT_EQ(recs[1].vectors->sparse.at("bm25").values, sparse_for(9).values);
    EXPECT_EQ(c.info().payload_schema.count("id"), 1u);
    SearchRequest r;
    r.using_name = "image";
    r.vector = image_vec(151);
    r.limit = 1;
    EXPECT_EQ(c.search(r).at(0).id, PointId(151));
  };
  {
    auto db = Database::open(dir.path(), opt);
    check(db->get("r"));
    db->restore("copy", snap);
    check(db->get("copy"));
  }
}

void writer_child(const std::filesystem::path& dir, uint64_t first_id, int out_fd) {
  test::run_writer_child([&] {
    Collection::Options opt;
    opt.checkpoint_bytes = 32 * 1024;
    auto db = Database::open(dir, opt);
    if (!db->has_collection("crash")) db->create_collection("crash", text_image_sparse());
    auto& c = db->get("crash");
    std::mt19937 rng(unsigned(first_id) * 2654435761u + 7);
    uint64_t id = first_id;
    while (true) {
      size_t n = 1 + rng() % 6;
      std::vector<Point> batch;
      for (size_t i = 0; i < n; ++i) batch.push_back(make_point(id + i));
      c.upsert(batch);
      test::report_acknowledged(out_fd, id, id + n);
      id += n;
    }
  });
}

TEST(MultiVector, KillNineNeverLosesAcknowledgedNamedOrSparseVectors) {
  test::TempDir dir;
  auto check = [&](const std::set<uint64_t>& acked) -> uint64_t {
    auto db = Database::open(dir.path());
    if (acked.empty()) return 1;
    EXPECT_TRUE(db->has_collection("crash"));
    if (!db->has_collection("crash")) return 1;
    auto& c = db->get("crash");
    auto all = c.scroll({.limit = 10000000, .with_vector = true});
    std::set<uint64_t> present;
    for (const auto& p : all.points) {
      present.insert(p.id.num());
      Point want = make_point(p.id.num());
      EXPECT_TRUE(p.vectors);
      if (!p.vectors) continue;
      EXPECT_EQ(p.vectors->dense.at("text"), want.named.dense.at("text"));
      EXPECT_EQ(p.vectors->dense.count("image"), want.named.dense.count("image"));
      EXPECT_EQ(p.vectors->sparse.at("bm25").indices, want.named.sparse.at("bm25").indices);
      EXPECT_EQ(p.vectors->sparse.at("splade").values, want.named.sparse.at("splade").values);
    }
    for (uint64_t id : acked) {
      EXPECT_TRUE(present.count(id)) << "acknowledged point " << id << " is missing";
      if (!present.count(id)) break;
    }
    return all.points.empty() ? 1 : all.points.back().id.num() + 1;
  };
  auto acked = test::kill_nine_rounds({.rounds = 12, .seed = 77, .min_pause_us = 30000, .extra_pause_us = 200000}, 1,
                                      [&](uint64_t first, int fd) { writer_child(dir.path(), first, fd); }, check);
  EXPECT_GT(acked.size(), 50u) << "the writer hardly ran; the test proves little";
}

}  // namespace
}  // namespace etna::store
