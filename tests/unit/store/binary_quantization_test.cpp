// Binary quantisation: 1 bit per dimension, Hamming walk, float rescoring. Recall against exact
// search, results identical after reopen, PATCH on and off, and kill -9 with a binary collection.
#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>
#include <random>
#include <set>

#include "etna/base/error.h"
#include "etna/store/database.h"
#include "support/kill_nine.h"
#include "support/quantized_recall.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;
constexpr size_t kDim = 128;

// Clustered data: 50 random centres, points spread around them.
std::vector<float> point(uint64_t id) {
  std::mt19937 c(uint32_t(id % 50) * 7919u + 1), r(uint32_t(id) * 104729u + 3);
  std::normal_distribution<float> gc(0.0f, 1.0f), gr(0.0f, 1.0f);  // one each: they cache a value
  std::vector<float> v(kDim);
  for (size_t k = 0; k < kDim; ++k) v[k] = gc(c) + 0.6f * gr(r);
  return v;
}

CollectionConfig binary_cosine() {
  return CollectionConfig::from_create_json(
      json::parse(R"({"vectors": {"size": 128, "distance": "Cosine"}, "quantization_config": {"binary": {"always_ram": true}}})"));
}

double recall(Collection& c, size_t queries, std::optional<double> oversampling) {
  return test::quantized_recall_at_10(c, queries, [](uint64_t q) { return point(100000 + q); }, oversampling);
}

TEST(BinaryQuantization, ConfigRoundTripsAndIsRefusedWhereUnsupported) {
  auto c = binary_cosine();
  ASSERT_TRUE(c.binary);
  EXPECT_FALSE(c.quantization);
  EXPECT_TRUE(c.to_json()["quantization_config"].contains("binary"));
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"binary": {}, "scalar": {"type": "int8"}}})")),
               Error);
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"binary": {"encoding": "two_bits"}}})")),
               Error);
}

TEST(BinaryQuantization, RecallWithRescoringAndReopenGivesTheSameResults) {
  test::TempDir dir;
  std::vector<std::vector<PointId>> before;
  double r1 = 0, r4 = 0;
  {
    auto db = Database::open(dir.path());
    auto& c = db->create_collection("b", binary_cosine());
    std::vector<Point> pts;
    for (uint64_t i = 0; i < 3000; ++i) pts.push_back({i, point(i), {{"i", i}}});
    c.upsert(pts);
    r1 = recall(c, 50, std::nullopt);
    r4 = recall(c, 50, 4.0);
    for (uint64_t q = 0; q < 10; ++q) {
      std::vector<PointId> ids;
      for (const auto& h : c.search({.vector = point(200000 + q), .limit = 5})) ids.push_back(h.id);
      before.push_back(ids);
    }
  }
  std::printf("binary quantisation recall@10: %.3f (ef 100), %.3f (oversampling 4)\n", r1, r4);
  EXPECT_GT(r1, 0.8);  // the Hamming walk finds most true neighbours; rescoring orders them
  EXPECT_GE(r4 + 1e-9, r1);
  auto db = Database::open(dir.path());
  auto& c = db->get("b");
  for (uint64_t q = 0; q < 10; ++q) {
    std::vector<PointId> ids;
    for (const auto& h : c.search({.vector = point(200000 + q), .limit = 5})) ids.push_back(h.id);
    EXPECT_EQ(ids, before[q]) << "query " << q;
  }
  // Turned off and on again by PATCH; the scores are float scores either way.
  c.update_config(json::parse(R"({"quantization_config": "Disabled"})"));
  EXPECT_FALSE(c.config().binary);
  c.update_config(json::parse(R"({"quantization_config": {"binary": {}}})"));
  EXPECT_TRUE(c.config().binary);
  auto hits = c.search({.vector = point(7), .limit = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, PointId(7));
  EXPECT_NEAR(hits[0].score, 1.0f, 1e-5);
}

TEST(BinaryQuantization, KillNineNeverLosesAcknowledgedPoints) {
  test::TempDir dir;
  auto writer = [&](uint64_t first, int fd) {
    test::run_writer_child([&] {
      Collection::Options opt;
      opt.checkpoint_bytes = 256 * 1024;
      auto db = Database::open(dir.path(), opt);
      if (!db->has_collection("crash")) db->create_collection("crash", binary_cosine());
      auto& c = db->get("crash");
      for (uint64_t id = first;; id += 4) {
        std::vector<Point> batch;
        for (uint64_t j = id; j < id + 4; ++j) batch.push_back({j, point(j), {{"id", j}}});
        c.upsert(batch);
        test::report_acknowledged(fd, id, id + 4);
      }
    });
  };
  auto check = [&](const std::set<uint64_t>& acked) -> uint64_t {
    auto db = Database::open(dir.path());
    if (acked.empty()) return 0;
    auto& c = db->get("crash");
    auto all = c.scroll({.limit = 10000000, .with_vector = true});
    std::set<uint64_t> present;
    for (const auto& p : all.points) present.insert(p.id.num());
    for (uint64_t id : acked) {
      EXPECT_TRUE(present.count(id)) << "acknowledged point " << id << " is missing";
      if (!present.count(id)) break;
    }
    // The quantised search still answers (codes rebuilt or loaded consistently).
    auto hits = c.search({.vector = point(*acked.begin()), .limit = 1});
    EXPECT_TRUE(hits.size() == 1 && hits[0].id == PointId(*acked.begin()));
    return all.points.empty() ? 0 : all.points.back().id.num() + 1;
  };
  auto acked = test::kill_nine_rounds({.rounds = 8, .seed = 5, .min_pause_us = 50000, .extra_pause_us = 200000}, 0,
                                      writer, check);
  EXPECT_GT(acked.size(), 100u);
}

}  // namespace
}  // namespace etna::store
