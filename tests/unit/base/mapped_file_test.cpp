// MappedFile::move_to_huge_pages: the moved range reads exactly the bytes the file holds, only
// whole 2 MiB pages inside the range move, and the file itself is never written.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include "etna/base/mapped_file.h"

namespace etna {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

bool huge_pages_offered() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  return std::getline(f, line) && (line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos);
}

TEST(MappedFile, MoveToHugePagesKeepsEveryByte) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("etna_mapped_file_test_" + std::to_string(::getpid()) + ".bin");
  const std::vector<uint8_t> bytes = random_bytes(9 * kMiB + 12345, 7);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  {
    MappedFile f(path.string());
    ASSERT_EQ(f.size(), bytes.size());
    // A range that starts and ends off any page boundary.
    const size_t begin = 3 * kMiB / 2 + 77, n = 6 * kMiB + 1000;
    const size_t moved = MappedFile::move_to_huge_pages(f.data() + begin, n);
    EXPECT_EQ(moved % (2 * kMiB), 0u);
    EXPECT_LE(moved, n);
    // Where the kernel offers huge pages, the 2 or 3 whole 2 MiB pages inside the range move
    // (how many depends on where the mapping starts).
    if (huge_pages_offered()) {
      EXPECT_GE(moved, 4 * kMiB);
    }
    for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(f.data()[i], bytes[i]) << "byte " << i << " moved " << moved;
    // A second move of the same range moves anonymous pages again, still byte for byte.
    EXPECT_EQ(MappedFile::move_to_huge_pages(f.data() + begin, n), moved);
    for (size_t i = 0; i < bytes.size(); i += 4093) ASSERT_EQ(f.data()[i], bytes[i]) << "byte " << i;
    // Too small a range to hold a whole huge page moves nothing.
    EXPECT_EQ(MappedFile::move_to_huge_pages(f.data() + 10, kMiB), 0u);
  }
  // The file is unchanged.
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> back(bytes.size());
  in.read(reinterpret_cast<char*>(back.data()), static_cast<std::streamsize>(back.size()));
  EXPECT_EQ(back, bytes);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace etna
