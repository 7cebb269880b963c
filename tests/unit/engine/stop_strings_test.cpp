#include "etna/engine/stop_strings.h"

#include <gtest/gtest.h>

namespace etna::engine {
namespace {

TEST(StopStrings, WithoutStopsTextPassesStraightThrough) {
  StopStringFilter f({});
  EXPECT_EQ(f.push("hello"), "hello");
  EXPECT_EQ(f.push(" world"), " world");
  EXPECT_EQ(f.flush(), "");
  EXPECT_FALSE(f.stopped());
}

TEST(StopStrings, StopStringInOnePieceIsCutAndNotEmitted) {
  StopStringFilter f({"\n\nUser:"});
  EXPECT_EQ(f.push("Hi there"), "Hi there");
  EXPECT_EQ(f.push(".\n\nUser: more"), ".");
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(f.matched(), "\n\nUser:");
  EXPECT_EQ(f.push("anything"), "");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStrings, PossibleStartIsHeldBackUntilDecided) {
  StopStringFilter f({"END"});
  EXPECT_EQ(f.push("abcE"), "abc");
  EXPECT_EQ(f.push("N"), "");
  EXPECT_EQ(f.push("X"), "ENX");  // not a stop after all: released
  EXPECT_EQ(f.push("E"), "");
  EXPECT_EQ(f.flush(), "E");      // end of stream releases what was held
  EXPECT_FALSE(f.stopped());
}

TEST(StopStrings, StopSplitAcrossManyPieces) {
  StopStringFilter f({"</s>"});
  std::string out;
  for (char c : std::string("story.</s>tail")) out += f.push(std::string(1, c));
  out += f.flush();
  EXPECT_EQ(out, "story.");
  EXPECT_TRUE(f.stopped());
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStringFilter f({"ab", "b", "zz"});
  EXPECT_EQ(f.push("xab"), "x");
  EXPECT_EQ(f.matched(), "ab");

  StopStringFilter g({"long stop", "op"});
  EXPECT_EQ(g.push("a long st"), "a ");  // "long st" may still become "long stop"
  EXPECT_EQ(g.push("op"), "");  // "long stop" starts before "op"
  EXPECT_EQ(g.matched(), "long stop");
}

TEST(StopStrings, HoldsTheLongestCandidatePrefix) {
  StopStringFilter f({"aab"});
  EXPECT_EQ(f.push("xaa"), "x");
  EXPECT_EQ(f.push("a"), "a");  // "aaa": only the last "aa" can still start "aab"
  EXPECT_EQ(f.push("b"), "");
  EXPECT_TRUE(f.stopped());
}

TEST(StopStrings, MultiByteTextIsKeptWhole) {
  StopStringFilter f({"é!"});
  EXPECT_EQ(f.push("caf\xc3\xa9"), "caf");  // "é" held: it may begin the stop
  EXPECT_EQ(f.push("?"), "\xc3\xa9?");
}

}  // namespace
}  // namespace etna::engine
