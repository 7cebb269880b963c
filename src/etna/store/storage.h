// Durable storage primitives for the vector store (internal): CRC32C, little-endian byte
// encoding, atomic file replacement and the write-ahead log. The on-disk formats are described
// in docs/architecture.md, "Vector store durability".
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "etna/store/types.h"

namespace etna::store::detail {

// CRC-32C (Castagnoli), as used by iSCSI, ext4 and LevelDB; hardware instruction when present.
uint32_t crc32c(const uint8_t* data, size_t n, uint32_t crc = 0);

class ByteWriter {
 public:
  std::vector<uint8_t>& bytes() { return b_; }
  void u8(uint8_t v) { b_.push_back(v); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
  }
  void blob(const std::vector<uint8_t>& v) { u32(static_cast<uint32_t>(v.size())); raw(v.data(), v.size()); }
  void str(const std::string& s) { u32(static_cast<uint32_t>(s.size())); raw(s.data(), s.size()); }
  void id(const PointId& id);
  void json(const nlohmann::json& j) { blob(nlohmann::json::to_msgpack(j)); }

 private:
  std::vector<uint8_t> b_;
};

// Bounds-checked reader; every overrun throws etna::Error(corrupt) naming `what`.
class ByteReader {
 public:
  ByteReader(const uint8_t* p, size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  uint8_t u8() { uint8_t v; raw(&v, 1); return v; }
  uint32_t u32() { uint32_t v; raw(&v, 4); return v; }
  uint64_t u64() { uint64_t v; raw(&v, 8); return v; }
  float f32() { float v; raw(&v, 4); return v; }
  void raw(void* out, size_t n);
  const uint8_t* skip(size_t n);
  std::string str();
  PointId id();
  nlohmann::json json();
  size_t remaining() const { return n_ - pos_; }
  size_t pos() const { return pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string what_;
};

// Reads a whole file; throws io when it cannot.
std::vector<uint8_t> read_file(const std::filesystem::path& path);
// Writes `bytes` to `path` so that a crash leaves either the old or the new file: temp file,
// fsync, rename, fsync of the directory.
void write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes);
void fsync_dir(const std::filesystem::path& dir);

// Write-ahead log: a header (magic "ETNAWAL1") then records [u32 length][u32 crc32c][payload].
class Wal {
 public:
  // Opens or creates the log and hands every intact record's payload to on_record in order. A
  // torn or corrupt tail is cut off (with a warning); a bad header is treated the same way.
  static std::unique_ptr<Wal> open(const std::filesystem::path& path,
                                   const std::function<void(const uint8_t*, size_t)>& on_record);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Appends one record and fdatasync()s before returning. On failure the log is cut back to
  // its previous length and etna::Error(io) is thrown.
  void append(const std::vector<uint8_t>& payload);
  // Empties the log (after a checkpoint made its records redundant), durably.
  void reset();
  uint64_t size() const { return size_; }

 private:
  Wal(std::filesystem::path path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::filesystem::path path_;
  int fd_;
  uint64_t size_;
};

}  // namespace etna::store::detail
