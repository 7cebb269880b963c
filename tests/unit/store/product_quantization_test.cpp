// Product quantisation (Jegou, Douze & Schmid 2011): sub-space shapes, k-means codebooks beat
// codebooks of random sample points, ADC table sums equal the distance to the decoded vector,
// ADC + float rescoring finds the true neighbours, the config parses and echoes like Qdrant's,
// results are identical after reopen, and kill -9 loses no acknowledged point.
#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "etna/base/error.h"
#include "etna/store/database.h"
#include "etna/store/distance.h"
#include "etna/store/product_quantizer.h"
#include "support/clustered_points.h"
#include "support/kill_nine.h"
#include "support/quantized_recall.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;

// Clustered data: 50 random centres, points spread around them.
std::vector<float> point(uint64_t id, size_t dim) { return test::clustered_point(id, dim, 50, 0.6f); }

std::vector<float> dataset(size_t n, size_t dim) {
  std::vector<float> out;
  for (uint64_t i = 0; i < n; ++i) {
    auto v = point(i, dim);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<uint32_t> iota(size_t n) {
  std::vector<uint32_t> s(n);
  for (size_t i = 0; i < n; ++i) s[i] = uint32_t(i);
  return s;
}

CollectionConfig product(const std::string& distance, const std::string& compression, size_t dim = 64) {
  return CollectionConfig::from_create_json(json{
      {"vectors", {{"size", dim}, {"distance", distance}}},
      {"quantization_config", {{"product", {{"compression", compression}, {"always_ram", true}}}}}});
}

TEST(ProductQuantizer, SubSpacesCoverTheDimensionEvenWhenItDoesNotDivide) {
  EXPECT_EQ(ProductQuantizer::code_bytes(128, 16), 32u);  // 512 float bytes / 16
  EXPECT_EQ(ProductQuantizer::code_bytes(768, 64), 48u);
  EXPECT_EQ(ProductQuantizer::code_bytes(10, 4), 10u);    // at most one byte per component
  EXPECT_EQ(ProductQuantizer::code_bytes(3, 64), 1u);     // at least one byte
  EXPECT_EQ(ProductQuantizer::code_bytes(10, 16), 3u);    // 40 / 16 rounded up
  ProductQuantizer pq;
  pq.shape(10, 4);
  EXPECT_EQ(pq.start, (std::vector<uint32_t>{0, 3, 6, 8, 10}));
}

TEST(ProductQuantizer, KMeansCodebooksHaveLessErrorThanRandomOnes) {
  const size_t dim = 32, n = 3000;
  auto data = dataset(n, dim);
  auto pq = ProductQuantizer::train(data.data(), dim, iota(n), 8);  // 16 sub-spaces of 2
  ASSERT_TRUE(pq.trained);
  ASSERT_EQ(pq.m, 16u);
  // Baseline: the same shapes with centroids at random sample points (k-means' own start).
  ProductQuantizer random = pq;
  std::mt19937 rng(9);
  for (size_t j = 0; j < random.m; ++j)
    for (size_t c = 0; c < ProductQuantizer::kCentroids; ++c) {
      const float* x = &data[size_t(rng() % n) * dim + random.start[j]];
      std::copy(x, x + random.width(j), const_cast<float*>(random.centroid(j, c)));
    }
  double e_trained = 0, e_random = 0;
  for (uint64_t i = 0; i < 500; ++i) {  // held-out points
    auto v = point(50000 + i, dim);
    e_trained += pq.squared_error(v.data());
    e_random += random.squared_error(v.data());
  }
  std::printf("PQ squared error: k-means %.1f, random codebook %.1f\n", e_trained, e_random);
  EXPECT_LT(e_trained, 0.8 * e_random);
  // Same input, same codebooks.
  EXPECT_EQ(ProductQuantizer::train(data.data(), dim, iota(n), 8).centroids, pq.centroids);
}

TEST(ProductQuantizer, AdcTableSumsEqualTheDistanceToTheDecodedVector) {
  const size_t dim = 37, n = 1000;  // 37 does not divide into the 10 sub-spaces of x16
  auto data = dataset(n, dim);
  auto pq = ProductQuantizer::train(data.data(), dim, iota(n), 16);
  ASSERT_EQ(pq.m, 10u);
  std::vector<uint8_t> code(pq.m);
  std::vector<float> decoded(dim);
  for (Distance metric : {Distance::Euclid, Distance::Dot, Distance::Manhattan}) {
    for (uint64_t i = 0; i < 20; ++i) {
      auto q = point(70000 + i, dim), x = point(80000 + i, dim);
      pq.encode(x.data(), code.data());
      pq.decode(code.data(), decoded.data());
      auto t = pq.table(q.data(), metric);
      double adc = 0;
      for (size_t j = 0; j < pq.m; ++j) adc += t[j * ProductQuantizer::kCentroids + code[j]];
      float want = detail::distance(metric, q.data(), decoded.data(), dim);
      EXPECT_NEAR(adc, want, 1e-4 * std::max(1.0f, std::fabs(want))) << distance_name(metric) << " query " << i;
    }
  }
}

TEST(ProductQuantizer, AdcShortlistRescoredFindsTheTrueNeighbours) {
  const size_t dim = 64, n = 4000;
  auto data = dataset(n, dim);
  auto pq = ProductQuantizer::train(data.data(), dim, iota(n), 16);  // 16 bytes per vector
  std::vector<uint8_t> codes(n * pq.m);
  for (size_t i = 0; i < n; ++i) pq.encode(&data[i * dim], &codes[i * pq.m]);
  size_t found = 0, total = 0;
  for (uint64_t qi = 0; qi < 30; ++qi) {
    auto q = point(90000 + qi, dim);
    auto t = pq.table(q.data(), Distance::Euclid);
    std::vector<std::pair<float, uint32_t>> adc(n), exact(n);
    for (uint32_t i = 0; i < n; ++i) {
      float s = 0;
      for (size_t j = 0; j < pq.m; ++j) s += t[j * ProductQuantizer::kCentroids + codes[i * pq.m + j]];
      adc[i] = {s, i};
      exact[i] = {detail::distance(Distance::Euclid, q.data(), &data[i * dim], dim), i};
    }
    std::partial_sort(adc.begin(), adc.begin() + 100, adc.end());
    std::partial_sort(exact.begin(), exact.begin() + 10, exact.end());
    std::set<uint32_t> want, shortlist;
    for (size_t i = 0; i < 10; ++i) want.insert(exact[i].second);
    for (size_t i = 0; i < 100; ++i) shortlist.insert(adc[i].second);
    for (uint32_t w : want) found += shortlist.count(w);
    total += 10;
  }
  double r = double(found) / double(total);
  std::printf("PQ x16 ADC top-100 contains %.3f of the true top 10\n", r);
  EXPECT_GE(r, 0.9);
}

TEST(ProductQuantization, ConfigParsesEchoesAndNamesTheAllowedValues) {
  auto c = product("Dot", "x32");
  ASSERT_TRUE(c.product);
  EXPECT_EQ(c.product->compression, 32u);
  EXPECT_FALSE(c.binary);
  EXPECT_FALSE(c.quantization);
  EXPECT_EQ(c.to_json()["quantization_config"], json::parse(R"({"product": {"compression": "x32", "always_ram": true}})"));
  try {
    product("Dot", "x3");
    FAIL() << "x3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantization_config.product.compression"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"x64\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"product": {}}})")),
               Error);
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x4", "always_ram": 1}}})")),
               Error);
  EXPECT_THROW(CollectionConfig::from_create_json(json::parse(
                   R"({"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": {"product": {"compression": "x4"}, "binary": {}}})")),
               Error);
  EXPECT_THROW(product("Hamming", "x4"), Error);
  // PATCH switches between kinds; each excludes the others.
  c.apply_patch(json::parse(R"({"quantization_config": {"binary": {}}})"));
  EXPECT_TRUE(c.binary);
  EXPECT_FALSE(c.product);
  c.apply_patch(json::parse(R"({"quantization_config": {"product": {"compression": "x8"}}})"));
  EXPECT_FALSE(c.binary);
  ASSERT_TRUE(c.product);
  EXPECT_EQ(c.product->compression, 8u);
}

double recall(Collection& c, size_t dim, size_t queries, std::optional<double> oversampling) {
  return test::quantized_recall_at_10(c, queries, [dim](uint64_t q) { return point(100000 + q, dim); }, oversampling);
}

TEST(ProductQuantization, RecallWithRescoringAndReopenGivesTheSameResults) {
  const size_t dim = 64;
  for (const char* metric : {"Cosine", "Euclid"}) {
    test::TempDir dir;
    std::vector<std::vector<std::pair<PointId, float>>> before;
    double r = 0;
    {
      auto db = Database::open(dir.path());
      auto& c = db->create_collection("p", product(metric, "x16", dim));
      std::vector<Point> pts;
      for (uint64_t i = 0; i < 3000; ++i) pts.push_back({i, point(i, dim), {{"i", i}}});
      c.upsert(pts);
      r = recall(c, dim, 50, 4.0);
      for (uint64_t q = 0; q < 10; ++q) {
        std::vector<std::pair<PointId, float>> hits;
        for (const auto& h : c.search({.vector = point(200000 + q, dim), .limit = 5})) hits.push_back({h.id, h.score});
        before.push_back(hits);
      }
      // Written after the checkpoint: encoded again by log replay on open.
      std::vector<Point> more;
      for (uint64_t i = 3000; i < 3100; ++i) more.push_back({i, point(i, dim), {}});
      c.upsert(more);
    }
    std::printf("%s PQ x16 recall@10 with oversampling 4: %.3f\n", metric, r);
    EXPECT_GE(r, 0.9) << metric;
    auto db = Database::open(dir.path());
    auto& c = db->get("p");
    for (uint64_t q = 0; q < 10; ++q) {
      std::vector<std::pair<PointId, float>> hits;
      for (const auto& h : c.search({.vector = point(200000 + q, dim), .limit = 5}))
        if (h.id.num() < 3000) hits.push_back({h.id, h.score});
      hits.resize(std::min(hits.size(), before[q].size()));
      using Hits = std::vector<std::pair<PointId, float>>;
      EXPECT_EQ(hits, Hits(before[q].begin(), before[q].begin() + long(hits.size())))
          << metric << " query " << q;
    }
    auto hits = c.search({.vector = point(3050, dim), .limit = 1});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].id, PointId(3050));
    EXPECT_EQ(c.config().to_json()["quantization_config"]["product"]["compression"], "x16");
    // Off and on again by PATCH.
    c.update_config(json::parse(R"({"quantization_config": "Disabled"})"));
    EXPECT_FALSE(c.config().product);
    c.update_config(json::parse(R"({"quantization_config": {"product": {"compression": "x8"}}})"));
    EXPECT_EQ(c.config().product->compression, 8u);
    hits = c.search({.vector = point(7, dim), .limit = 1});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].id, PointId(7));
  }
}

TEST(ProductQuantization, KillNineNeverLosesAcknowledgedPoints) {
  const size_t dim = 16;
  test::TempDir dir;
  auto writer = [&](uint64_t first, int fd) {
    test::run_writer_child([&] {
      Collection::Options opt;
      opt.checkpoint_bytes = 256 * 1024;
      auto db = Database::open(dir.path(), opt);
      auto& c = db->get("crash");
      for (uint64_t id = first;; id += 16) {
        std::vector<Point> batch;
        for (uint64_t j = id; j < id + 16; ++j) batch.push_back({j, point(j, dim), {{"id", j}}});
        c.upsert(batch);
        test::report_acknowledged(fd, id, id + 16);
      }
    });
  };
  auto check = [&](const std::set<uint64_t>& acked) -> uint64_t {
    auto db = Database::open(dir.path());
    if (acked.empty()) return 0;
    auto& c = db->get("crash");
    EXPECT_GE(c.count(nullptr), 2500u) << "points written before the first kill are missing";
    auto all = c.scroll({.limit = 10000000, .with_vector = true});
    std::set<uint64_t> present;
    for (const auto& p : all.points) {
      present.insert(p.id.num());
      EXPECT_EQ(*p.vector, point(p.id.num(), dim)) << "point " << p.id.num();
    }
    for (uint64_t id : acked) {
      EXPECT_TRUE(present.count(id)) << "acknowledged point " << id << " is missing";
      if (!present.count(id)) break;
    }
    // The quantised walk still finds a stored point (codebooks and codes loaded consistently).
    uint64_t probe = *acked.rbegin();
    auto hits = c.search({.vector = point(probe, dim), .limit = 1, .oversampling = 2.0});
    EXPECT_TRUE(!hits.empty() && hits[0].id == PointId(probe)) << "point " << probe << " not found";
    return all.points.empty() ? 0 : all.points.back().id.num() + 1;
  };
  {  // Trained before the first kill, so every round writes codes and checkpoints codebooks.
    auto db = Database::open(dir.path());
    auto& c = db->create_collection("crash", product("Euclid", "x4", dim));
    std::vector<Point> pts;
    for (uint64_t i = 0; i < 2500; ++i) pts.push_back({i, point(i, dim), {{"id", i}}});
    c.upsert(pts);
    c.checkpoint();  // the children open the data file (codebooks, codes, graph), not a long log
  }
  auto acked = test::kill_nine_rounds({.rounds = 8, .seed = 17, .min_pause_us = 50000, .extra_pause_us = 250000}, 2500,
                                      writer, check);
  std::printf("PQ kill -9: %zu acknowledged points checked\n", acked.size());
  EXPECT_GT(acked.size(), 100u) << "the writer hardly ran; the test proves little";
}

}  // namespace
}  // namespace etna::store
