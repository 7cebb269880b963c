// Inverted file indices (ivf_config; Sivic & Zisserman 2003, IVFADC of Jegou et al. 2011) and
// the search planner: the config parses, echoes and names bad values; IVF-FLAT and IVF-PQ
// recall@10 against exact search on clustered data; filters, deletes and upserts after
// training; PATCH retrains; the structure survives reopen; kill -9 loses no acknowledged point;
// the planner picks flat / HNSW / IVF and says why.
#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include "etna/base/error.h"
#include "etna/store/database.h"
#include "etna/store/filter.h"
#include "etna/store/storage.h"
#include "support/clustered_points.h"
#include "support/kill_nine.h"
#include "support/quantized_recall.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

using nlohmann::json;

// Clustered data: 400 random centres, points spread around them.
std::vector<float> point(uint64_t id, size_t dim) { return test::clustered_point(id, dim, 400, 0.5f); }

CollectionConfig ivf(const std::string& distance, json ivf_config, size_t dim = 32) {
  return CollectionConfig::from_create_json(
      json{{"vectors", {{"size", dim}, {"distance", distance}}}, {"ivf_config", std::move(ivf_config)}});
}

void fill(Collection& c, uint64_t from, uint64_t to, size_t dim, size_t batch = 1000) {
  for (uint64_t b = from; b < to; b += batch) {
    std::vector<Point> pts;
    for (uint64_t i = b; i < std::min(to, b + batch); ++i) pts.push_back({i, point(i, dim), {{"even", i % 2 == 0}, {"i", i}}});
    c.upsert(pts);
  }
}

double recall(Collection& c, size_t dim, std::optional<double> oversampling = std::nullopt) {
  return test::quantized_recall_at_10(c, 50, [&](uint64_t q) { return point(900000 + q, dim); }, oversampling);
}

SearchPlan plan_of(const Collection& c, SearchRequest r) {
  SearchPlan p;
  r.plan = &p;
  c.search(r);
  return p;
}

TEST(Ivf, ConfigParsesEchoesAndNamesBadValues) {
  auto c = ivf("Cosine", {{"nlist", 128}, {"nprobe", 16}, {"pq", {{"compression", "x8"}}}});
  ASSERT_TRUE(c.ivf);
  EXPECT_EQ(*c.ivf->nlist, 128u);
  EXPECT_EQ(c.ivf->pq_compression, 8u);
  json echo = c.to_json()["ivf_config"];
  EXPECT_EQ(echo["nlist"], 128);
  EXPECT_EQ(echo["nprobe"], 16);
  EXPECT_EQ(echo["pq"]["compression"], "x8");
  EXPECT_TRUE(ivf("Dot", json::object()).to_json()["ivf_config"]["nlist"].is_null());  // 4*sqrt(N) at training
  // Also inside `vectors` (where the official JS client's createCollection passes it through).
  auto inside = CollectionConfig::from_create_json(json::parse(R"({"vectors": {"size": 8, "distance": "Dot", "ivf_config": {"nlist": 4}}})"));
  ASSERT_TRUE(inside.ivf);
  EXPECT_EQ(*inside.ivf->nlist, 4u);

  auto message = [](const json& cfg, const std::string& distance = "Cosine") {
    try {
      ivf(distance, cfg);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"nlist", 0}}).find("ivf_config.nlist must be between 1 and 65536"), std::string::npos);
  EXPECT_NE(message({{"nlist", 8}, {"nprobe", 9}}).find("nprobe (9) cannot exceed ivf_config.nlist (8)"), std::string::npos);
  EXPECT_NE(message({{"nprobe", 0}}).find("nprobe must be at least 1"), std::string::npos);
  EXPECT_NE(message({{"pq", {{"compression", "x3"}}}}).find("ivf_config.pq.compression"), std::string::npos);
  EXPECT_NE(message({{"nlists", 4}}).find("ivf_config.nlists: unknown field"), std::string::npos);
  EXPECT_NE(message(json::object(), "Hamming").find("not supported with distance Hamming"), std::string::npos);
  // Training runs under the write lock: its cost is bounded, and it needs a point per list.
  EXPECT_NE(message({{"nlist", 100}, {"training_threshold", 50}}).find("training_threshold (50) must be at least ivf_config.nlist (100)"),
            std::string::npos);
  EXPECT_EQ(IvfConfig::max_nlist(32), 32768u);
  EXPECT_EQ(IvfConfig::max_nlist(128), 8192u);
  EXPECT_EQ(IvfConfig::max_nlist(1024), 2048u);
  std::string big = message({{"nlist", 65536}, {"training_threshold", 65536}});
  EXPECT_NE(big.find("ivf_config.nlist 65536 is too large for 32 dimensions"), std::string::npos) << big;
  EXPECT_NE(big.find("at most 32768 lists"), std::string::npos) << big;
  EXPECT_NO_THROW(ivf("Euclid", {{"nlist", 32768}, {"training_threshold", 65536}}));
  EXPECT_THROW(CollectionConfig::from_create_json(
                   json{{"vectors", {{"size", 4}, {"distance", "Dot"}}},
                        {"ivf_config", json::object()},
                        {"quantization_config", {{"scalar", {{"type", "int8"}}}}}}),
               Error);
}

TEST(Ivf, FlatRecallFiltersDeletesAndUpsertsAfterTraining) {
  const size_t dim = 32;
  for (const char* metric : {"Euclid", "Cosine", "Dot"}) {
    test::TempDir dir;
    auto db = Database::open(dir.path());
    auto cfg = ivf(metric, {{"training_threshold", 2000}}, dim);
    cfg.hnsw.full_scan_threshold = 100;  // KB: the half of the points a filter passes is scanned through the lists
    auto& c = db->create_collection("v", cfg);
    fill(c, 0, 8000, dim);  // trains at 2000 points; the other 6000 are appended to their lists
    ASSERT_TRUE(c.info().ivf_nlist);
    EXPECT_EQ(*c.info().ivf_nlist, 179u) << "4 * sqrt(2000)";
    EXPECT_EQ(c.info().indexed_vectors_count, 8000u);
    double r = recall(c, dim);
    std::printf("%s IVF-FLAT recall@10 at the default nprobe: %.3f\n", metric, r);
    EXPECT_GE(r, 0.9) << metric;
    EXPECT_EQ(plan_of(c, {.vector = point(1, dim)}).index, "ivf_flat");

    // A filter applied during the scan: only even points come back.
    auto even = parse_filter(json::parse(R"({"must": [{"key": "even", "match": {"value": true}}]})"));
    auto hits = c.search({.vector = point(3, dim), .limit = 10, .filter = even});
    ASSERT_EQ(hits.size(), 10u);
    for (const auto& h : hits) EXPECT_EQ(h.id.num() % 2, 0u);
    EXPECT_EQ(plan_of(c, {.vector = point(3, dim), .filter = even}).index, "ivf_flat");

    // Deletes are honoured at once; an upserted point is found in its new place.
    c.delete_points(PointSelector::by_ids({PointId(5)}));
    hits = c.search({.vector = point(5, dim), .limit = 3});
    for (const auto& h : hits) EXPECT_NE(h.id, PointId(5));
    c.upsert({{PointId(6), point(777777, dim), {}}});
    hits = c.search({.vector = point(777777, dim), .limit = 1});
    ASSERT_EQ(hits.size(), 1u);
    if (std::string(metric) != "Dot") {  // a dot product may prefer a longer vector to the point itself
      EXPECT_EQ(hits[0].id, PointId(6));
    }
    EXPECT_EQ(c.info().indexed_vectors_count, 7999u);
  }
}

TEST(Ivf, NprobeOverrideClampsToNlist) {
  const size_t dim = 16;
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("v", ivf("Euclid", {{"nlist", 32}, {"nprobe", 1}, {"training_threshold", 1000}}, dim));
  fill(c, 0, 3000, dim);
  SearchPlan p = plan_of(c, {.vector = point(1, dim), .ivf_nprobe = 1000});
  EXPECT_NE(p.reason.find("32 lists, scanning 32"), std::string::npos) << p.reason;
  // Scanning every list is an exact search.
  for (uint64_t q = 0; q < 10; ++q) {
    auto exact = c.search({.vector = point(500000 + q, dim), .limit = 10, .exact = true});
    auto all = c.search({.vector = point(500000 + q, dim), .limit = 10, .ivf_nprobe = 32});
    ASSERT_EQ(all.size(), exact.size());
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].id, exact[i].id);
  }
}

TEST(Ivf, ProbedListsTooSmallForThePageFallBackToTheExactScan) {
  const size_t dim = 16;
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("v", ivf("Euclid", {{"nlist", 32}, {"nprobe", 1}, {"training_threshold", 1000}}, dim));
  fill(c, 0, 3000, dim);
  // One list of 32 holds far fewer than limit + offset = 1010 points; no filter is set.
  SearchRequest r{.vector = point(1, dim), .limit = 10, .offset = 1000};
  SearchPlan p = plan_of(c, r);
  EXPECT_EQ(p.index, "flat");
  EXPECT_NE(p.reason.find("32 lists, scanning 1; it found "), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("of limit + offset = 1010 points, so an exact scan answered"), std::string::npos) << p.reason;
  auto hits = c.search(r);
  r.exact = true;
  auto exact = c.search(r);
  ASSERT_EQ(hits.size(), 10u);
  ASSERT_EQ(exact.size(), 10u);
  for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i].id, exact[i].id);
  // A page the probed list can fill stays on the inverted file.
  EXPECT_EQ(plan_of(c, {.vector = point(1, dim), .limit = 5}).index, "ivf_flat");
}

TEST(Ivf, StoredConfigWithoutNlistIsCorruptNotUndefined) {
  const size_t dim = 8;
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("v", ivf("Euclid", json::object(), dim));  // nlist and nprobe stored as null
  fill(c, 0, 10, dim);
  auto snap = db->snapshot("v");
  std::string data;
  {
    std::ifstream in(snap, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t at = data.find("\"nlist\":null");
  ASSERT_NE(at, std::string::npos);
  data[at + 4] = 'z';  // "nlizt": the key is gone
  uint32_t crc = detail::crc32c(reinterpret_cast<const uint8_t*>(data.data()), data.size() - 4);
  std::memcpy(&data[data.size() - 4], &crc, 4);
  auto bad = dir.path() / "bad.snapshot";
  std::ofstream(bad, std::ios::binary) << data;
  try {
    db->restore("w", bad);
    ADD_FAILURE() << "a config without ivf.nlist was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::corrupt) << e.what();
    EXPECT_NE(std::string(e.what()).find("ivf.nlist is missing"), std::string::npos) << e.what();
  }
}

TEST(Ivf, ProductCodesRecallWithRescoringAndReopenGivesTheSameResults) {
  const size_t dim = 32;
  test::TempDir dir;
  std::vector<std::vector<PointId>> before;
  {
    auto db = Database::open(dir.path());
    auto& c = db->create_collection("v", ivf("Euclid", {{"nlist", 64}, {"pq", {{"compression", "x8"}}}, {"training_threshold", 3000}}, dim));
    fill(c, 0, 6000, dim);
    double r = recall(c, dim);
    std::printf("IVF-PQ x8 recall@10 with rescoring: %.3f\n", r);
    EXPECT_GE(r, 0.9);
    EXPECT_EQ(plan_of(c, {.vector = point(1, dim)}).index, "ivf_pq");
    for (uint64_t q = 0; q < 10; ++q) {
      std::vector<PointId> ids;
      for (const auto& h : c.search({.vector = point(600000 + q, dim), .limit = 5})) ids.push_back(h.id);
      before.push_back(ids);
    }
    c.checkpoint();
    fill(c, 6000, 6100, dim);  // after the checkpoint: filed again by log replay on open
    c.delete_points(PointSelector::by_ids({PointId(6050)}));
  }
  auto db = Database::open(dir.path());
  auto& c = db->get("v");
  EXPECT_EQ(c.info().indexed_vectors_count, 6099u);
  for (uint64_t q = 0; q < 10; ++q) {
    std::vector<PointId> ids;
    for (const auto& h : c.search({.vector = point(600000 + q, dim), .limit = 5}))
      if (h.id.num() < 6000) ids.push_back(h.id);
    ids.resize(std::min(ids.size(), before[q].size()));
    EXPECT_EQ(ids, std::vector<PointId>(before[q].begin(), before[q].begin() + long(ids.size()))) << "query " << q;
  }
  auto hits = c.search({.vector = point(6070, dim), .limit = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, PointId(6070));
  EXPECT_TRUE(c.search({.vector = point(6050, dim), .limit = 1})[0].id != PointId(6050));
}

TEST(Ivf, PatchRetrainsSwitchesIndexAndBack) {
  const size_t dim = 16;
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& c = db->create_collection("v", ivf("Cosine", {{"nlist", 16}, {"training_threshold", 1000}}, dim));
  fill(c, 0, 3000, dim);
  EXPECT_EQ(*c.info().ivf_nlist, 16u);
  c.update_config(json::parse(R"({"ivf_config": {"nlist": 40, "pq": {"compression": "x4"}}})"));
  EXPECT_EQ(*c.info().ivf_nlist, 40u);
  EXPECT_EQ(plan_of(c, {.vector = point(1, dim)}).index, "ivf_pq");
  EXPECT_THROW(c.update_config(json::parse(R"({"ivf_config": {"nprobe": 41}})")), Error);
  c.update_config(json::parse(R"({"ivf_config": "Disabled"})"));
  EXPECT_FALSE(c.info().ivf_nlist);
  EXPECT_EQ(plan_of(c, {.vector = point(1, dim)}).index, "hnsw");
  EXPECT_EQ(c.info().indexed_vectors_count, 3000u);
  c.update_config(json::parse(R"({"ivf_config": {"nlist": 8, "training_threshold": 1000}})"));
  EXPECT_EQ(plan_of(c, {.vector = point(1, dim)}).index, "ivf_flat");
  auto hits = c.search({.vector = point(42, dim), .limit = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, PointId(42));
}

TEST(Planner, PicksFlatHnswOrIvfAndSaysWhy) {
  const size_t dim = 16;
  test::TempDir dir;
  auto db = Database::open(dir.path());
  auto& h = db->create_collection("h", CollectionConfig::from_create_json(
                                           json{{"vectors", {{"size", dim}, {"distance", "Euclid"}}},
                                                {"hnsw_config", {{"full_scan_threshold", 10}}}}));
  fill(h, 0, 100, dim);
  EXPECT_NE(plan_of(h, {.vector = point(1, dim)}).reason.find("small collection"), std::string::npos);
  fill(h, 100, 3000, dim);
  EXPECT_EQ(plan_of(h, {.vector = point(1, dim)}).index, "hnsw");
  SearchPlan p = plan_of(h, {.vector = point(1, dim), .exact = true});
  EXPECT_EQ(p.index, "flat");
  EXPECT_EQ(p.reason, "params.exact is true");
  // A selective filter on an indexed field: the index cardinality sends it to the exact scan.
  h.create_payload_index("i", PayloadSchemaType::Integer);
  auto few = parse_filter(json::parse(R"({"must": [{"key": "i", "range": {"lt": 5}}]})"));
  p = plan_of(h, {.vector = point(1, dim), .filter = few});
  EXPECT_EQ(p.index, "flat");
  EXPECT_NE(p.reason.find("about 5 of 3000 points match (payload index cardinality)"), std::string::npos) << p.reason;
  auto many = parse_filter(json::parse(R"({"must": [{"key": "i", "range": {"gte": 5}}]})"));
  EXPECT_EQ(plan_of(h, {.vector = point(1, dim), .filter = many}).index, "hnsw");

  auto& v = db->create_collection("v", ivf("Euclid", {{"training_threshold", 2000}}, dim));
  fill(v, 0, 1000, dim);
  p = plan_of(v, {.vector = point(1, dim)});
  EXPECT_EQ(p.index, "flat");
  EXPECT_NE(p.reason.find("not trained yet: 1000 of 2000"), std::string::npos) << p.reason;
  EXPECT_EQ(v.search({.vector = point(7, dim), .limit = 1})[0].id, PointId(7));
  fill(v, 1000, 2000, dim);
  EXPECT_EQ(plan_of(v, {.vector = point(1, dim)}).index, "ivf_flat");
}

TEST(Ivf, KillNineNeverLosesAcknowledgedPoints) {
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
        c.delete_points(PointSelector::by_ids({PointId(id + 1)}));  // deletes must survive too
        test::report_acknowledged(fd, id, id + 1);
        test::report_acknowledged(fd, id + 2, id + 16);
      }
    });
  };
  auto check = [&](const std::set<uint64_t>& acked) -> uint64_t {
    auto db = Database::open(dir.path());
    auto& c = db->get("crash");
    auto all = c.scroll({.limit = 10000000, .with_vector = true});
    std::set<uint64_t> present;
    for (const auto& p : all.points) {
      present.insert(p.id.num());
      EXPECT_EQ(*p.vector, point(p.id.num(), dim)) << "point " << p.id.num();
    }
    EXPECT_EQ(c.info().indexed_vectors_count, present.size()) << "every point is in an inverted list";
    for (uint64_t id : acked) {
      EXPECT_TRUE(present.count(id)) << "acknowledged point " << id << " is missing";
      if (!present.count(id)) break;
      // id + 1 was deleted in the batch that acknowledged id + 2: the delete was acknowledged.
      if (!acked.count(id + 1) && acked.count(id + 2)) {
        EXPECT_FALSE(present.count(id + 1)) << "deleted point " << id + 1;
      }
    }
    if (!acked.empty()) {  // the index (lists loaded and replayed) finds the last acknowledged point
      uint64_t probe = *acked.rbegin();
      auto hits = c.search({.vector = point(probe, dim), .limit = 1});
      EXPECT_TRUE(!hits.empty() && hits[0].id == PointId(probe)) << "point " << probe << " not found";
    }
    return all.points.empty() ? 0 : all.points.back().id.num() + 1;
  };
  {  // Trained before the first kill, so every round files points and checkpoints the lists.
    auto db = Database::open(dir.path());
    auto& c = db->create_collection("crash", ivf("Euclid", {{"nlist", 32}, {"pq", {{"compression", "x4"}}}, {"training_threshold", 2000}}, dim));
    fill(c, 0, 2500, dim);
    c.checkpoint();
  }
  auto acked = test::kill_nine_rounds({.rounds = 8, .seed = 23, .min_pause_us = 50000, .extra_pause_us = 250000}, 2500,
                                      writer, check);
  std::printf("IVF kill -9: %zu acknowledged points checked\n", acked.size());
  EXPECT_GT(acked.size(), 100u) << "the writer hardly ran; the test proves little";
}

}  // namespace
}  // namespace etna::store
