#include "etna/store/storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "etna/base/error.h"
#include "etna/base/log.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace etna::store::detail {

namespace {

constexpr char kWalMagic[8] = {'E', 'T', 'N', 'A', 'W', 'A', 'L', '1'};
constexpr uint32_t kMaxRecord = 1u << 30;

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    t[i] = c;
  }
  return t;
}

uint32_t crc32c_table(const uint8_t* p, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_table();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t n, uint32_t crc) {
  uint64_t c = ~crc & 0xffffffffu;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; i < n; ++i) c32 = _mm_crc32_u8(c32, p[i]);
  return ~c32;
}
#endif

[[noreturn]] void fail_errno(const std::string& what, const std::filesystem::path& path) {
  fail(ErrorKind::io, "{} {}: {}", what, path.string(), std::strerror(errno));
}

void write_all(int fd, const uint8_t* p, size_t n, const std::filesystem::path& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail_errno("cannot write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t n, uint32_t crc) {
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  if (hw) return crc32c_hw(data, n, crc);
#endif
  return crc32c_table(data, n, crc);
}

void ByteWriter::id(const PointId& id) {
  if (id.is_uuid()) {
    u8(1);
    raw(id.uuid_bytes().data(), 16);
  } else {
    u8(0);
    u64(id.num());
  }
}

void ByteReader::raw(void* out, size_t n) { std::memcpy(out, skip(n), n); }

const uint8_t* ByteReader::skip(size_t n) {
  if (n > n_ - pos_) fail(ErrorKind::corrupt, "{} is truncated (needed {} more bytes at offset {})", what_, n, pos_);
  const uint8_t* p = p_ + pos_;
  pos_ += n;
  return p;
}

std::string ByteReader::str() {
  uint32_t n = u32();
  const uint8_t* p = skip(n);
  return std::string(reinterpret_cast<const char*>(p), n);
}

PointId ByteReader::id() {
  uint8_t tag = u8();
  if (tag == 0) return PointId(u64());
  if (tag != 1) fail(ErrorKind::corrupt, "{}: bad point id tag {} at offset {}", what_, tag, pos_ - 1);
  const uint8_t* p = skip(16);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) s.push_back(hex[p[i] >> 4]), s.push_back(hex[p[i] & 15]);
  return PointId::uuid(s);
}

nlohmann::json ByteReader::json() {
  uint32_t n = u32();
  const uint8_t* p = skip(n);
  try {
    return nlohmann::json::from_msgpack(p, p + n);
  } catch (const std::exception& e) {
    fail(ErrorKind::corrupt, "{}: bad payload encoding: {}", what_, e.what());
  }
}

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno("cannot open", path);
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  while (true) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail_errno("cannot read", path);
    }
    if (r == 0) break;
    out.insert(out.end(), buf, buf + r);
  }
  ::close(fd);
  return out;
}

void fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_errno("cannot open directory", dir);
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno("cannot create", tmp);
  try {
    write_all(fd, bytes.data(), bytes.size(), tmp);
    if (::fsync(fd) != 0) fail_errno("cannot fsync", tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail_errno("cannot rename onto", path);
  fsync_dir(path.parent_path());
}

std::unique_ptr<Wal> Wal::open(const std::filesystem::path& path,
                               const std::function<void(const uint8_t*, size_t)>& on_record) {
  bool existed = std::filesystem::exists(path);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno("cannot open log", path);
  std::unique_ptr<Wal> wal(new Wal(path, fd, 0));
  std::vector<uint8_t> data = existed ? read_file(path) : std::vector<uint8_t>{};
  size_t good = 0;
  if (data.size() >= sizeof kWalMagic && std::memcmp(data.data(), kWalMagic, sizeof kWalMagic) == 0) {
    good = sizeof kWalMagic;
    while (data.size() - good >= 8) {
      uint32_t len, crc;
      std::memcpy(&len, &data[good], 4);
      std::memcpy(&crc, &data[good + 4], 4);
      if (len > kMaxRecord || len > data.size() - good - 8) break;
      const uint8_t* payload = &data[good + 8];
      if (crc32c(payload, len) != crc) break;
      on_record(payload, len);
      good += 8 + size_t(len);
    }
    if (good != data.size())
      log::warn("vector store log {}: {} bytes after offset {} are torn or corrupt; truncating them "
                "(writes that were never acknowledged)", path.string(), data.size() - good, good);
  } else if (!data.empty()) {
    log::warn("vector store log {}: bad header; starting an empty log", path.string());
  }
  if (good == 0) {
    if (::ftruncate(fd, 0) != 0) fail_errno("cannot truncate log", path);
    if (::pwrite(fd, kWalMagic, sizeof kWalMagic, 0) != ssize_t(sizeof kWalMagic)) fail_errno("cannot write log", path);
    good = sizeof kWalMagic;
    if (::fsync(fd) != 0) fail_errno("cannot fsync log", path);
    if (!existed) fsync_dir(path.parent_path());
  } else if (good != data.size()) {
    if (::ftruncate(fd, static_cast<off_t>(good)) != 0 || ::fsync(fd) != 0) fail_errno("cannot truncate log", path);
  }
  if (::lseek(fd, static_cast<off_t>(good), SEEK_SET) < 0) fail_errno("cannot seek log", path);
  wal->size_ = good;
  return wal;
}

Wal::~Wal() { ::close(fd_); }

void Wal::append(const std::vector<uint8_t>& payload) {
  if (payload.size() > kMaxRecord) fail(ErrorKind::limit, "operation too large for the log ({} bytes)", payload.size());
  std::vector<uint8_t> rec(8 + payload.size());
  uint32_t len = static_cast<uint32_t>(payload.size()), crc = crc32c(payload.data(), payload.size());
  std::memcpy(&rec[0], &len, 4);
  std::memcpy(&rec[4], &crc, 4);
  std::memcpy(&rec[8], payload.data(), payload.size());
  try {
    write_all(fd_, rec.data(), rec.size(), path_);
    if (::fdatasync(fd_) != 0) fail_errno("cannot fsync log", path_);
  } catch (...) {
    // Cut back to the last acknowledged record so a later append does not follow garbage.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
    throw;
  }
  size_ += rec.size();
}

void Wal::reset() {
  if (::ftruncate(fd_, sizeof kWalMagic) != 0 || ::fsync(fd_) != 0) fail_errno("cannot reset log", path_);
  if (::lseek(fd_, sizeof kWalMagic, SEEK_SET) < 0) fail_errno("cannot seek log", path_);
  size_ = sizeof kWalMagic;
}

}  // namespace etna::store::detail
