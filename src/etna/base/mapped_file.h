// A read-only (private) memory mapping of a whole file. Move-only; unmaps on destruction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace etna {

class MappedFile {
 public:
  // Maps `path` read-only. Throws etna::Error (io) naming the file when it cannot.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Makes bytes [p, p + n) of a mapping writable (the pages containing them). The mapping is
  // private: written pages become this process's copies and the file is never changed.
  // Throws etna::Error (io) when the system refuses. make_read_only undoes it.
  static uint8_t* make_writable(const uint8_t* p, size_t n);
  static void make_read_only(const uint8_t* p, size_t n);

  // Replaces the whole 2 MiB pages inside [p, p + n) of a mapping by private anonymous memory
  // holding the same bytes, read-only as before, advised to be backed by transparent huge
  // pages: a range streamed again and again (weights) then costs one TLB entry per 2 MiB instead
  // of 512, which on virtual machines (nested page tables) is a large share of the read time.
  // The moved pages are no longer backed by the file: they count as this process's memory and
  // cannot be paged out without swap. Returns the bytes moved: 0 when the kernel has no
  // transparent huge pages for madvise'd memory, or refuses a step (the range is unchanged then).
  static size_t move_to_huge_pages(const uint8_t* p, size_t n);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace etna
