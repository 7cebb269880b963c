#include "etna/base/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etna/base/error.h"

namespace etna {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::io, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(ErrorKind::io, "{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::io, "{}: not a regular file", path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail(ErrorKind::io, "{}: cannot map into memory: {}", path, std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

namespace {
void protect(const uint8_t* p, size_t n, int prot) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  if (::mprotect(reinterpret_cast<void*>(begin), end - begin, prot) != 0)
    fail(ErrorKind::io, "cannot change the protection of a file mapping: {}", std::strerror(errno));
}
}  // namespace

uint8_t* MappedFile::make_writable(const uint8_t* p, size_t n) {
  protect(p, n, PROT_READ | PROT_WRITE);
  return const_cast<uint8_t*>(p);
}

void MappedFile::make_read_only(const uint8_t* p, size_t n) { protect(p, n, PROT_READ); }

namespace {
constexpr size_t kHugePage = size_t{2} << 20;

// True when /sys says madvise(MADV_HUGEPAGE) memory gets transparent huge pages.
bool huge_pages_for_madvise() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(f, line)) return false;
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
}
}  // namespace

size_t MappedFile::move_to_huge_pages(const uint8_t* p, size_t n) {
#if defined(MADV_HUGEPAGE)
  static const bool available = huge_pages_for_madvise();
  if (!available) return 0;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(kHugePage - 1);
  if (end <= begin) return 0;
  // One huge page at a time through a bounce buffer, so the move needs 2 MiB extra, not n.
  std::unique_ptr<uint8_t[]> bounce(new uint8_t[kHugePage]);
  for (uintptr_t a = begin; a < end; a += kHugePage) {
    void* page = reinterpret_cast<void*>(a);
    std::memcpy(bounce.get(), page, kHugePage);
    if (::mmap(page, kHugePage, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
      fail(ErrorKind::io, "cannot replace a file mapping by anonymous memory: {}", std::strerror(errno));
    ::madvise(page, kHugePage, MADV_HUGEPAGE);  // advice only: without it the bytes are still right
    std::memcpy(page, bounce.get(), kHugePage);
  }
  protect(reinterpret_cast<const uint8_t*>(begin), end - begin, PROT_READ);
  return end - begin;
#else
  (void)p;
  (void)n;
  return 0;
#endif
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace etna
