// etna::Error keeps the whole message through what(): NUL and control bytes from user input are
// written as \xNN instead of cutting the message or reaching a terminal raw (issue 16, item 15).
#include "etna/base/error.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace etna {
namespace {

TEST(Error, NulInsideTheMessageDoesNotCutIt) {
  std::string message = "collection 'a";
  message.push_back('\0');
  message.append("zzz' not found");
  const Error e(ErrorKind::not_found, message);
  const std::string what = e.what();
  EXPECT_EQ(what, "collection 'a\\x00zzz' not found");
  EXPECT_EQ(std::strlen(e.what()), what.size());
  EXPECT_EQ(e.kind(), ErrorKind::not_found);
}

TEST(Error, ControlBytesAreEscapedButNewlinesAndTabsStay) {
  const Error e(ErrorKind::invalid_argument, "bad \x1b[31mname\x7f\r\nnext line\tcolumn");
  EXPECT_STREQ(e.what(), "bad \\x1b[31mname\\x7f\\x0d\nnext line\tcolumn");
}

TEST(Error, FailFormatsAndEscapes) {
  try {
    fail(ErrorKind::limit, "file '{}' is {} bytes", std::string("x\0y", 3), 7);
    FAIL() << "fail() returned";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "file 'x\\x00y' is 7 bytes");
    EXPECT_EQ(e.kind(), ErrorKind::limit);
  }
}

TEST(Error, UnicodeIsKept) {
  const Error e(ErrorKind::not_found, "no file \xe2\x80\x9cr\xc3\xa9sum\xc3\xa9\xe2\x80\x9d");
  EXPECT_STREQ(e.what(), "no file \xe2\x80\x9cr\xc3\xa9sum\xc3\xa9\xe2\x80\x9d");
}

}  // namespace
}  // namespace etna
