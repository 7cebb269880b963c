// Durability: kill -9 during writes loses no acknowledged point, a damaged log tail is cut off
// with a warning, checkpoints bound the log, snapshots round-trip.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

// GCC warns about designated initialisers that leave defaulted members out (GCC bug 96868).
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cmath>
#include <fstream>
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
constexpr size_t kDim = 16;

// The vector every test writes for an id, so a reader can check a point is intact.
std::vector<float> vector_for(uint64_t id) {
  std::vector<float> v(kDim);
  for (size_t k = 0; k < kDim; ++k) v[k] = std::sin(float(id) * 0.37f + float(k)) * 10.0f;
  return v;
}

CollectionConfig euclid() {
  CollectionConfig c;
  c.dim = kDim;
  c.distance = Distance::Euclid;
  return c;
}

void expect_intact(Collection& c, uint64_t id) {
  auto r = c.retrieve({id}, PayloadSelector::all(), true);
  ASSERT_EQ(r.size(), 1u) << "acknowledged point " << id << " is missing";
  EXPECT_EQ(*r[0].vector, vector_for(id)) << "point " << id;
  EXPECT_EQ((*r[0].payload)["id"], id) << "point " << id;
}

// Child: upserts batches of new points forever, reporting each acknowledged id.
void writer_child(const std::filesystem::path& dir, uint64_t first_id, int out_fd) {
  test::run_writer_child([&] {
    Collection::Options opt;
    opt.checkpoint_bytes = 64 * 1024;  // checkpoint often so kills land inside checkpoints too
    auto db = Database::open(dir, opt);
    if (!db->has_collection("crash")) db->create_collection("crash", euclid());
    auto& c = db->get("crash");
    std::mt19937 rng(unsigned(first_id) * 2654435761u + 1);
    uint64_t id = first_id;
    while (true) {
      size_t n = 1 + rng() % 8;
      std::vector<Point> batch;
      for (size_t i = 0; i < n; ++i) batch.push_back({id + i, vector_for(id + i), {{"id", id + i}, {"pad", std::string(rng() % 200, 'x')}}});
      c.upsert(batch);
      test::report_acknowledged(out_fd, id, id + n);
      id += n;
    }
  });
}

TEST(StoreDurability, KillNineNeverLosesAcknowledgedPoints) {
  test::TempDir dir;
  auto check = [&](const std::set<uint64_t>& acked) -> uint64_t {
    // Reopen in this process and check every acknowledged point so far.
    auto db = Database::open(dir.path());
    if (acked.empty()) return 1;
    EXPECT_TRUE(db->has_collection("crash"));
    if (!db->has_collection("crash")) return 1;
    auto& c = db->get("crash");
    for (uint64_t id : acked) expect_intact(c, id);
    // Unacknowledged points may exist, but never torn ones.
    auto all = c.scroll({.limit = 1000000, .with_vector = true});
    for (const auto& p : all.points) EXPECT_EQ(*p.vector, vector_for(p.id.num()));
    return all.points.empty() ? 1 : all.points.back().id.num() + 1;
  };
  // Pauses from 20 ms: opening + some writes; sometimes mid-open.
  auto acked = test::kill_nine_rounds({.rounds = 24, .seed = 20240601, .min_pause_us = 20000, .extra_pause_us = 250000}, 1,
                                      [&](uint64_t first, int fd) { writer_child(dir.path(), first, fd); }, check);
  EXPECT_GT(acked.size(), 100u) << "the writer hardly ran; the test proves little";
}

TEST(StoreDurability, GarbageAfterTheLogIsTruncated) {
  test::TempDir dir;
  {
    auto db = Database::open(dir.path());
    auto& c = db->create_collection("g", euclid());
    for (uint64_t i = 0; i < 10; ++i) c.upsert({{i, vector_for(i), {{"id", i}}}});
  }
  auto wal = dir.path() / "collections" / "g" / "wal.log";
  auto good_size = std::filesystem::file_size(wal);
  {
    std::ofstream f(wal, std::ios::app | std::ios::binary);
    std::mt19937 rng(1);
    for (int i = 0; i < 1000; ++i) f.put(char(rng()));
  }
  {
    auto db = Database::open(dir.path());
    auto& c = db->get("g");
    EXPECT_EQ(c.count(nullptr), 10u);
    for (uint64_t i = 0; i < 10; ++i) expect_intact(c, i);
    EXPECT_EQ(std::filesystem::file_size(wal), good_size);
    c.upsert({{100, vector_for(100), {{"id", 100}}}});  // appends after the cut
  }
  // Flip a byte inside the last record: that record is dropped, the earlier ones survive.
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  auto db = Database::open(dir.path());
  auto& c = db->get("g");
  EXPECT_EQ(c.count(nullptr), 10u);
  EXPECT_TRUE(c.retrieve({100}, PayloadSelector::all(), false).empty());
}

TEST(StoreDurability, CheckpointBoundsTheLog) {
  test::TempDir dir;
  Collection::Options opt;
  opt.checkpoint_bytes = 32 * 1024;
  {
    auto db = Database::open(dir.path(), opt);
    auto& c = db->create_collection("k", euclid());
    for (uint64_t i = 0; i < 2000; ++i) c.upsert({{i, vector_for(i), {{"id", i}}}});
    c.delete_points(PointSelector::by_ids({7, 8}));
  }
  EXPECT_LE(std::filesystem::file_size(dir.path() / "collections" / "k" / "wal.log"), 40u * 1024);
  auto db = Database::open(dir.path(), opt);
  auto& c = db->get("k");
  EXPECT_EQ(c.count(nullptr), 1998u);
  expect_intact(c, 1999);
  auto hits = c.search({.vector = vector_for(1234), .limit = 1});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id.num(), 1234u);
}

TEST(StoreDurability, SnapshotRoundTrip) {
  test::TempDir dir;
  auto db = Database::open(dir.path());
  CollectionConfig cfg = euclid();
  cfg.hnsw.m = 8;
  auto& c = db->create_collection("s", cfg);
  for (uint64_t i = 0; i < 500; ++i) c.upsert({{i, vector_for(i), {{"id", i}, {"tag", i % 2 ? "odd" : "even"}}}});
  c.delete_points(PointSelector::by_ids({0, 1}));
  c.create_payload_index("tag", PayloadSchemaType::Keyword);
  auto snap = db->snapshot("s");
  EXPECT_TRUE(std::filesystem::exists(snap));
  EXPECT_EQ(db->list_snapshots("s"), std::vector<std::filesystem::path>{snap});
  c.upsert({{9999, vector_for(9999), {{"id", 9999}}}});  // after the snapshot

  auto& r = db->restore("copy", snap);
  EXPECT_EQ(r.count(nullptr), 498u);
  EXPECT_EQ(r.config().hnsw.m, 8u);
  EXPECT_EQ(r.info().payload_schema.count("tag"), 1u);
  for (uint64_t i = 2; i < 500; ++i) expect_intact(r, i);
  auto hits = r.search({.vector = vector_for(42), .limit = 1});
  EXPECT_EQ(hits[0].id.num(), 42u);
  // Restoring over an existing collection replaces it.
  auto& s2 = db->restore("s", snap);
  EXPECT_EQ(s2.count(nullptr), 498u);
  EXPECT_TRUE(s2.retrieve({9999}, PayloadSelector::all(), false).empty());
  // A damaged snapshot is refused and leaves the collection alone.
  auto bad = dir.path() / "bad.snapshot";
  {
    auto bytes = std::filesystem::file_size(snap);
    std::ifstream in(snap, std::ios::binary);
    std::string data(bytes, '\0');
    in.read(data.data(), std::streamsize(bytes));
    data[bytes / 2] ^= 0x55;
    std::ofstream(bad, std::ios::binary) << data;
  }
  try {
    db->restore("s", bad);
    ADD_FAILURE() << "a damaged snapshot was restored";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::corrupt) << e.what();
  }
  EXPECT_EQ(db->get("s").count(nullptr), 498u);
  EXPECT_THROW(db->restore("s", dir.path() / "missing.snapshot"), Error);
  // Everything survives a reopen.
  db.reset();
  db = Database::open(dir.path());
  EXPECT_EQ(db->list_collections(), (std::vector<std::string>{"copy", "s"}));
  EXPECT_EQ(db->get("copy").count(nullptr), 498u);
}

}  // namespace
}  // namespace etna::store
