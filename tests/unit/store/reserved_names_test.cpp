// The store's own working folders (a drop in progress, a restore being built) live outside the
// users' namespace: a collection called "v.old" or "x.tmp" is an ordinary collection that
// survives a restart, and restoring one collection never touches another.
#include <gtest/gtest.h>

#include "etna/store/database.h"
#include "support/test_support.h"

namespace etna::store {
namespace {

CollectionConfig two_dims() {
  CollectionConfig c;
  c.dim = 2;
  c.distance = Distance::Dot;
  return c;
}

TEST(StoreReservedNames, NamesLikeWorkingFoldersSurviveARestart) {
  etna::test::TempDir dir;
  const std::vector<std::string> names = {"v.old", "x.tmp", "y.restore.tmp", "a.old.b"};
  {
    auto db = Database::open(dir.path());
    for (const auto& n : names) db->create_collection(n, two_dims()).upsert({{1, {1.0f, 0.0f}, {{"n", n}}}});
  }
  auto db = Database::open(dir.path());
  for (const auto& n : names) {
    ASSERT_TRUE(db->has_collection(n)) << n << " was deleted at start";
    EXPECT_EQ(db->get(n).count(nullptr), 1u) << n;
  }
}

TEST(StoreReservedNames, RestoreNeverTouchesAnotherCollection) {
  etna::test::TempDir dir;
  auto db = Database::open(dir.path());
  db->create_collection("v", two_dims()).upsert({{1, {1.0f, 0.0f}, {}}});
  db->create_collection("v.old", two_dims()).upsert({{7, {0.0f, 1.0f}, {}}, {8, {1.0f, 1.0f}, {}}});
  auto snap = db->snapshot("v");
  db->get("v").upsert({{2, {0.5f, 0.5f}, {}}});
  EXPECT_NO_THROW(db->restore("v", snap));
  ASSERT_TRUE(db->has_collection("v"));
  EXPECT_EQ(db->get("v").count(nullptr), 1u);
  ASSERT_TRUE(db->has_collection("v.old"));
  EXPECT_EQ(db->get("v.old").count(nullptr), 2u);
  db.reset();
  auto again = Database::open(dir.path());
  EXPECT_TRUE(again->has_collection("v.old"));
  EXPECT_TRUE(again->has_collection("v"));
}

}  // namespace
}  // namespace etna::store
