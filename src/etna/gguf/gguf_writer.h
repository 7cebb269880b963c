// Writing GGUF version 3 files. Metadata and tensors are written in the order they are added;
// tensor data is laid out in that order, each aligned to `general.alignment` (default 32) and
// padded with zeros, which is how llama.cpp lays files out: reading a file and writing it back
// gives identical bytes.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "etna/gguf/gguf_file.h"

namespace etna::gguf {

class GgufWriter {
 public:
  GgufWriter() = default;

  // Copies every key/value and tensor of `file` (data referenced, not copied).
  // REQUIRES: `file` outlives write().
  static GgufWriter from_file(const GgufFile& file);

  void set_version(uint32_t version) { version_ = version; }
  // Adds or replaces a key (replacing keeps its position).
  void set(const std::string& key, Value value);
  void remove(const std::string& key);
  // Adds a tensor. `data` must hold ggml_row_bytes(type, n_elements) bytes and outlive write().
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, const void* data);

  // Writes the file atomically (to path + ".tmp", then renamed). Throws etna::Error (io).
  void write(const std::string& path) const;
  // The whole file as bytes.
  std::vector<uint8_t> to_bytes() const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    GgmlType type;
    const void* data;
    uint64_t n_bytes;
  };
  template <typename Sink>
  void emit(Sink& out) const;
  size_t alignment() const;

  uint32_t version_ = 3;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace etna::gguf
