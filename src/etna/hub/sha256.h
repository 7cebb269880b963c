// SHA-256 (FIPS 180-4), streaming: pulled files are checked against the hub's LFS digests.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace etna::hub {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // The digest as 64 lower-case hex digits. The object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// The SHA-256 of a whole file as hex. Throws etna::Error(io) when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace etna::hub
