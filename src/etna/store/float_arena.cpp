#include "etna/store/float_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "etna/base/error.h"

namespace etna::store::detail {

FloatArena::~FloatArena() {
  if (map_) munmap(map_, capacity_ * sizeof(float));
  if (fd_ >= 0) close(fd_);
}

void FloatArena::use_file(const std::filesystem::path& path) {
  if (size() != 0 || fd_ >= 0) fail(ErrorKind::internal, "FloatArena::use_file on a non-empty arena");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(ErrorKind::io, "cannot create vector file {}: {}", path.string(), std::strerror(errno));
  fd_ = fd;
  decltype(mem_)().swap(mem_);
}

void FloatArena::resize(size_t n) {
  if (fd_ < 0) {
    mem_.resize(n);
    return;
  }
  if (n > capacity_) {
    const size_t page_floats = size_t(sysconf(_SC_PAGESIZE)) / sizeof(float);
    size_t cap = std::max({n, capacity_ + capacity_ / 2, size_t(1) << 16});
    cap = (cap + page_floats - 1) / page_floats * page_floats;
    if (ftruncate(fd_, off_t(cap * sizeof(float))) != 0)
      fail(ErrorKind::io, "cannot grow vector file to {} bytes: {}", cap * sizeof(float), std::strerror(errno));
    void* p = map_ ? mremap(map_, capacity_ * sizeof(float), cap * sizeof(float), MREMAP_MAYMOVE)
                   : mmap(nullptr, cap * sizeof(float), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) fail(ErrorKind::io, "cannot map vector file ({} bytes): {}", cap * sizeof(float), std::strerror(errno));
    map_ = static_cast<float*>(p);
    capacity_ = cap;
  }
  // Space never used reads as zero (fresh file pages); space used before a shrink is cleared.
  if (n > size_ && used_ > size_) std::memset(map_ + size_, 0, (std::min(n, used_) - size_) * sizeof(float));
  size_ = n;
  used_ = std::max(used_, n);
}

}  // namespace etna::store::detail
