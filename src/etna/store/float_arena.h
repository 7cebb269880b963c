// Growable contiguous float array (internal), in anonymous memory or in a memory-mapped file.
// The file form keeps large arrays (the float originals of an int8-quantised collection, read
// only for rescoring) in the page cache, which the kernel can write back and evict, instead of
// in anonymous memory. The file is scratch: its content is rebuilt from the data file and the
// log on open, so it is never a source of truth. Not thread-safe; growing moves the data.
// data() is 64-byte aligned in both forms, so a vector whose size is a multiple of 16 floats
// starts on a cache line and spans no more lines than it must.
#pragma once
#include <cstddef>
#include <filesystem>
#include <new>
#include <vector>

namespace etna::store::detail {

// Allocates on 64-byte (cache-line) boundaries.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
};

class FloatArena {
 public:
  FloatArena() = default;
  ~FloatArena();
  FloatArena(const FloatArena&) = delete;
  FloatArena& operator=(const FloatArena&) = delete;

  // Switches to a file mapping at `path` (created or truncated). REQUIRES: size() == 0.
  // Throws etna::Error(io) when the file cannot be created or mapped.
  void use_file(const std::filesystem::path& path);
  bool file_backed() const { return fd_ >= 0; }

  float* data() { return fd_ >= 0 ? map_ : mem_.data(); }
  const float* data() const { return fd_ >= 0 ? map_ : mem_.data(); }
  size_t size() const { return fd_ >= 0 ? size_ : mem_.size(); }
  float& operator[](size_t i) { return data()[i]; }
  const float& operator[](size_t i) const { return data()[i]; }
  // Grows (new elements are zero) or shrinks to n floats. Throws etna::Error(io) when a file
  // mapping cannot grow.
  void resize(size_t n);

 private:
  std::vector<float, CacheLineAllocator<float>> mem_;  // when not file-backed
  int fd_ = -1;
  float* map_ = nullptr;
  size_t size_ = 0, capacity_ = 0, used_ = 0;  // in floats (file-backed); used_: high-water mark
};

}  // namespace etna::store::detail
