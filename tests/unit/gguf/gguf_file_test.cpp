#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "support/test_support.h"

namespace etna::gguf {
namespace {

std::vector<uint8_t> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small valid file built with the writer: every value type, nested arrays, two tensors.
std::vector<uint8_t> sample_file(std::vector<float>* keep) {
  GgufWriter w;
  w.set("general.architecture", Value::string("llama"));
  w.set("u8", Value::unsigned_int(ValueType::UINT8, 200));
  w.set("i8", Value::signed_int(ValueType::INT8, -100));
  w.set("u16", Value::unsigned_int(ValueType::UINT16, 60000));
  w.set("i16", Value::signed_int(ValueType::INT16, -30000));
  w.set("u32", Value::unsigned_int(ValueType::UINT32, 4000000000u));
  w.set("i32", Value::signed_int(ValueType::INT32, -2000000000));
  w.set("u64", Value::unsigned_int(ValueType::UINT64, 1ull << 60));
  w.set("i64", Value::signed_int(ValueType::INT64, -(1ll << 60)));
  w.set("f32", Value::floating(ValueType::FLOAT32, 0.5));
  w.set("f64", Value::floating(ValueType::FLOAT64, 1e-300));
  w.set("b", Value::boolean(true));
  w.set("strings", Value::array(ValueType::STRING, {Value::string("a"), Value::string(""), Value::string("ü")}));
  w.set("nested", Value::array(ValueType::ARRAY, {Value::array(ValueType::INT32, {Value::signed_int(ValueType::INT32, 7)}),
                                                  Value::array(ValueType::INT32, {})}));
  keep->assign(64 + 3, 0.f);
  for (size_t i = 0; i < keep->size(); ++i) (*keep)[i] = static_cast<float>(i);
  w.add_tensor("a", {64}, GgmlType::F32, keep->data());
  w.add_tensor("b", {3}, GgmlType::F32, keep->data() + 64);
  return w.to_bytes();
}

TEST(GgufFile, ParsesEveryValueType) {
  std::vector<float> data;
  auto bytes = sample_file(&data);
  auto f = GgufFile::parse(bytes.data(), bytes.size(), "sample");
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->architecture(), "llama");
  EXPECT_EQ(*f->get_uint("u8"), 200u);
  EXPECT_EQ(*f->get_int("i8"), -100);
  EXPECT_EQ(*f->get_uint("u16"), 60000u);
  EXPECT_EQ(*f->get_int("i16"), -30000);
  EXPECT_EQ(*f->get_uint("u32"), 4000000000u);
  EXPECT_EQ(*f->get_int("i32"), -2000000000);
  EXPECT_EQ(*f->get_uint("u64"), 1ull << 60);
  EXPECT_EQ(*f->get_int("i64"), -(1ll << 60));
  EXPECT_EQ(*f->get_float("f32"), 0.5);
  EXPECT_EQ(*f->get_float("f64"), 1e-300);
  EXPECT_TRUE(*f->get_bool("b"));
  EXPECT_EQ(f->get_string_array("strings"), (std::vector<std::string>{"a", "", "ü"}));
  const Value* nested = f->find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->as_array().size(), 2u);
  EXPECT_EQ(nested->as_array()[0].as_array()[0].as_int(), 7);
  EXPECT_FALSE(f->get_string("missing").has_value());
  EXPECT_THROW(f->get_string("u8"), Error);
  ASSERT_EQ(f->tensors().size(), 2u);
  const TensorInfo* b = f->find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->offset % 32, 0u);
  float v;
  std::memcpy(&v, b->data + 8, 4);
  EXPECT_EQ(v, 66.f);
}

TEST(GgufFile, WriterRoundTripsItsOwnOutput) {
  std::vector<float> data;
  auto bytes = sample_file(&data);
  auto f = GgufFile::parse(bytes.data(), bytes.size(), "sample");
  EXPECT_EQ(GgufWriter::from_file(*f).to_bytes(), bytes);
}

TEST(GgufFile, RoundTripsEverySharedModelByteForByte) {
  ETNA_REQUIRE_SHARED(dir, "models");
  int n = 0;
  for (auto sub : {"models", "tokenizer"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir.parent_path() / sub)) {
      if (entry.path().extension() != ".gguf") continue;
      SCOPED_TRACE(entry.path().string());
      auto f = GgufFile::open(entry.path().string());
      auto original = read_all(entry.path());
      auto written = GgufWriter::from_file(*f).to_bytes();
      ASSERT_EQ(written.size(), original.size());
      EXPECT_TRUE(written == original);
      ++n;
    }
  }
  EXPECT_GT(n, 10);
}

// --- broken files: each must give one etna::Error naming the file, never a crash ---

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    GgufFile::parse(bytes.data(), bytes.size(), "broken.gguf");
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_EQ(m.rfind("broken.gguf: ", 0), 0u) << m;
    return m;
  }
  return "";
}

template <typename T>
void poke(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

TEST(GgufFile, RefusesBrokenFiles) {
  std::vector<float> data;
  const auto good = sample_file(&data);
  EXPECT_NE(error_of({}).find("too short"), std::string::npos);
  auto b = good;
  b[0] = 'X';
  EXPECT_NE(error_of(b).find("magic"), std::string::npos);
  b = good;
  poke<uint32_t>(b, 4, 1);
  EXPECT_NE(error_of(b).find("version 1"), std::string::npos);
  b = good;
  poke<uint32_t>(b, 4, 99);
  EXPECT_NE(error_of(b).find("version 99"), std::string::npos);
  b = good;
  poke<uint64_t>(b, 8, 1ull << 40);  // tensor count lies
  EXPECT_NE(error_of(b).find("tensor count"), std::string::npos);
  b = good;
  poke<uint64_t>(b, 16, 1ull << 62);  // metadata count lies
  EXPECT_NE(error_of(b).find("metadata count"), std::string::npos);
  b = good;
  poke<uint64_t>(b, 24, 1ull << 62);  // first key length lies
  EXPECT_NE(error_of(b).find("length"), std::string::npos);
  // Truncation at every position up to the data section must fail cleanly.
  auto f = GgufFile::parse(good.data(), good.size(), "x");
  for (size_t n = 0; n < f->data_offset() + 8; ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_FALSE(error_of(cut).empty()) << "truncated at " << n;
  }
  // Tensor past the end.
  std::vector<uint8_t> short_data(good.begin(), good.end() - 24);
  EXPECT_NE(error_of(short_data).find("past the end"), std::string::npos);
}

TEST(GgufFile, RefusesUnknownTensorTypeAndBadShapes) {
  std::vector<float> data;
  const auto good = sample_file(&data);
  auto f = GgufFile::parse(good.data(), good.size(), "x");
  // Find the first tensor info: the name "a" (len 1) followed by n_dims.
  std::string needle("\x01\0\0\0\0\0\0\0a", 9);
  auto it = std::find_end(good.begin(), good.end(), needle.begin(), needle.end());  // the tensor, not the metadata string "a"
  ASSERT_NE(it, good.end());
  size_t at = static_cast<size_t>(it - good.begin()) + 9;  // n_dims
  auto b = good;
  poke<uint32_t>(b, at, 9);
  EXPECT_NE(error_of(b).find("dimensions"), std::string::npos);
  b = good;
  poke<uint64_t>(b, at + 4, 0);
  EXPECT_NE(error_of(b).find("invalid dimension"), std::string::npos);
  b = good;
  poke<uint32_t>(b, at + 12, 77);  // type
  EXPECT_NE(error_of(b).find("unknown type"), std::string::npos);
  b = good;
  poke<uint32_t>(b, at + 12, 2);  // Q4_0 needs a multiple of 32... 64 is, so make the row 65 long
  poke<uint64_t>(b, at + 4, 65);
  EXPECT_FALSE(error_of(b).empty());
  b = good;
  poke<uint64_t>(b, at + 16, 3);  // unaligned offset
  EXPECT_NE(error_of(b).find("aligned"), std::string::npos);
}

TEST(GgufFile, OpenNamesMissingFile) {
  try {
    GgufFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace etna::gguf
