// Writing GGUF version 3 files. Metadata and tensors are written in the order they are added;
// tensor data is laid out in that order, each aligned to `general.alignment` (default 32) and
// padded with zeros, which is how llama.cpp lays files out: reading a file and writing it back
// gives identical bytes.
#pragma once
#include <cstdint>
#include <functional>
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
  // A null `data` defers the bytes to the TensorSource given to write() (streamed writing).
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, const void* data);

  // Produces the bytes of deferred tensor `index` (in add order) just before they are written;
  // the pointer must stay valid until the source is called again or write() returns.
  using TensorSource = std::function<const void*(size_t index)>;

  // Writes the file atomically (to path + ".tmp", then renamed). Throws etna::Error (io).
  void write(const std::string& path) const { write(path, {}); }
  // As write(), asking `source` for the tensors added without data, one at a time in file order,
  // so a file larger than memory can be written.
  void write(const std::string& path, const TensorSource& source) const;
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
  void emit(Sink& out, const TensorSource& source) const;
  size_t alignment() const;

  uint32_t version_ = 3;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace etna::gguf
