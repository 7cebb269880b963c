// Reading GGUF files (versions 2 and 3). The file is memory-mapped; tensor data is used in
// place. Everything is validated before use: a file that passes open() has in-range strings,
// arrays, tensor shapes and byte ranges, so later layers may trust it.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "etna/base/mapped_file.h"
#include "etna/gguf/ggml_type.h"
#include "etna/gguf/gguf_value.h"

namespace etna::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;
constexpr size_t kDefaultAlignment = 32;

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ne[0] (contiguous, row length) first, as GGML orders them
  GgmlType type;
  uint64_t offset;             // from the start of the data section
  uint64_t n_elements;
  uint64_t n_bytes;
  const uint8_t* data;         // into the mapping; valid while the GgufFile lives

  uint64_t rows() const { return dims.empty() ? 0 : n_elements / dims[0]; }
};

class GgufFile {
 public:
  // Maps and validates `path`. Throws etna::Error (corrupt / io) with one line
  // "<path>: <what is wrong>" when the file cannot be used.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  // Parses and validates an in-memory image (not owned; must outlive the result).
  // `name` is used in error messages. Used by tests and the fuzzer.
  static std::unique_ptr<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  uint64_t file_size() const { return size_; }
  const uint8_t* bytes() const { return base_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed lookups: nullopt when absent; throw etna::Error when present with the wrong type.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  // Arrays of one scalar kind; empty vector when the key is absent.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  // `general.architecture`, or "" when absent.
  std::string architecture() const { return get_string("general.architecture").value_or(""); }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  void parse_all();

  std::optional<MappedFile> mapping_;
  std::string name_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  size_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace etna::gguf
