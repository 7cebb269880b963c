// Reading Hugging Face safetensors checkpoints: one `model.safetensors` file, or shards listed
// by `model.safetensors.index.json`. A file is an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}} and the raw
// tensor bytes. Files are memory-mapped; every offset and length is checked before use, so a
// tensor that passes open() lies wholly inside its file, does not overlap another and has
// exactly the bytes its dtype and shape need.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "etna/base/mapped_file.h"

namespace etna::hub {

// The dtypes Etna converts. Others (F64, I8, ..., F8_E4M3) are refused with a clear error.
enum class StDtype { F32, F16, BF16 };
const char* st_dtype_name(StDtype t);
size_t st_dtype_size(StDtype t);

struct StTensor {
  std::string name;
  StDtype dtype;
  std::vector<uint64_t> shape;  // row-major (PyTorch order): the last dimension is contiguous
  uint64_t n_elements = 0;
  const uint8_t* data = nullptr;  // into the mapping of the file that holds it
  uint64_t n_bytes = 0;
};

// Header sizes beyond this are refused (the reference implementation's limit is 100 MB).
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws etna::Error (corrupt / unsupported / io) with one line
  // "<path>: <what is wrong>".
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory image (not owned; must outlive the result). For tests.
  static std::unique_ptr<SafetensorsFile> parse(const uint8_t* data, size_t size, const std::string& name);

  const std::vector<StTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void parse_all(const uint8_t* data, size_t size);
  std::optional<MappedFile> mapping_;
  std::string name_;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a checkpoint folder: `model.safetensors`, or the shards named by
// `model.safetensors.index.json` (each tensor must be in the shard the index says), or else
// every `*.safetensors` file in the folder. A tensor name appearing twice is an error.
class SafetensorsModel {
 public:
  static SafetensorsModel open_dir(const std::string& dir);
  const std::vector<const StTensor*>& tensors() const { return order_; }  // by name
  const StTensor* find(const std::string& name) const;
  size_t n_files() const { return files_.size(); }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const StTensor*> by_name_;
  std::vector<const StTensor*> order_;
};

// The tensor as floats (F16 / BF16 widened exactly).
std::vector<float> st_to_f32(const StTensor& t);

}  // namespace etna::hub
