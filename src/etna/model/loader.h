// Reading model weights and hyperparameters from a GGUF file with one-line errors that name the
// file: shared by every architecture's load() (decoders in model.cpp, encoders in bert.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

// Looks up "<arch>.*" metadata and tensors of `file`, checking shapes and types.
class Loader {
 public:
  explicit Loader(const gguf::GgufFile& file) : file_(file), arch_(file.architecture()) {}

  // "<arch>.<suffix>" as a positive integer; throws when absent (unless `fallback` >= 0).
  int count(const std::string& suffix, int64_t fallback = -1) const {
    const std::string key = arch_ + "." + suffix;
    std::optional<uint64_t> v = file_.get_uint(key);
    if (!v) {
      if (fallback >= 0) return static_cast<int>(fallback);
      fail(ErrorKind::corrupt, "{}: metadata key {} is missing", file_.path(), key);
    }
    if (*v == 0 || *v > (1u << 30)) fail(ErrorKind::corrupt, "{}: metadata {} = {} is out of range", file_.path(), key, *v);
    return static_cast<int>(*v);
  }

  std::optional<double> real(const std::string& suffix) const { return file_.get_float(arch_ + "." + suffix); }
  std::optional<std::string> string(const std::string& suffix) const { return file_.get_string(arch_ + "." + suffix); }
  bool has(const std::string& suffix) const { return file_.has(arch_ + "." + suffix); }
  const std::string& arch() const { return arch_; }
  const gguf::GgufFile& file() const { return file_; }

  // The tensor `name` with exactly the dims `dims` (ne0 first). A matrix needs a type the
  // kernels support; a vector (norm weight, bias) must be F32.
  tensor::Matrix tensor(const std::string& name, std::vector<uint64_t> dims, bool required = true) const {
    const gguf::TensorInfo* t = file_.find_tensor(name);
    if (t == nullptr) {
      if (!required) return tensor::Matrix{};
      fail(ErrorKind::corrupt, "{}: missing tensor {} (needed by the {} architecture)", file_.path(), name, arch_);
    }
    // A trailing dimension of 1 is equivalent to its absence.
    std::vector<uint64_t> have = t->dims;
    while (have.size() > dims.size() && have.back() == 1) have.pop_back();
    if (have != dims) {
      fail(ErrorKind::corrupt, "{}: tensor {} has shape {}, expected {}", file_.path(), name, shape(t->dims), shape(dims));
    }
    if (dims.size() == 1 && t->type != gguf::GgmlType::F32) {
      fail(ErrorKind::unsupported, "{}: tensor {} has type {}; norm weights and biases must be F32", file_.path(), name,
           gguf::ggml_type_name(t->type));
    }
    if (!tensor::is_supported(t->type)) {
      fail(ErrorKind::unsupported, "{}: tensor {} has type {}, which this build of Etna cannot compute", file_.path(),
           name, gguf::ggml_type_name(t->type));
    }
    used_.insert(name);
    tensor::Matrix m;
    m.type = t->type;
    m.cols = static_cast<int64_t>(dims[0]);
    m.rows = dims.size() > 1 ? static_cast<int64_t>(dims[1]) : 1;
    m.data = t->data;
    m.row_bytes = tensor::row_bytes(t->type, m.cols);
    return m;
  }

  // A stacked 3-D expert tensor {cols, rows, n_expert}: the matrix of expert 0 (rows = dims[1]);
  // expert e follows at e * rows * row_bytes.
  tensor::Matrix experts(const std::string& name, std::vector<uint64_t> dims) const {
    if (dims.size() != 3) fail(ErrorKind::internal, "experts() takes three dims");
    tensor::Matrix m = tensor(name, dims);
    m.rows = static_cast<int64_t>(dims[1]);
    return m;
  }

  // Whether the file holds tensor `name`.
  bool has_tensor(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
  // Whether a load step asked for (or ignored) tensor `name`.
  bool used(const std::string& name) const { return used_.count(name) != 0; }
  // Records that `name` is known and intentionally not used by the forward pass.
  void ignore(const std::string& name) const { used_.insert(name); }

  // Refuses the file when it holds a tensor no load step asked for: Etna would not know what
  // that tensor changes in the arithmetic, so it must not run the model wrongly.
  void refuse_unknown_tensors() const {
    for (const auto& t : file_.tensors()) {
      if (used_.count(t.name)) continue;
      fail(ErrorKind::unsupported, "{}: tensor {} is not understood by Etna's {} graph; refusing to run the model",
           file_.path(), t.name, arch_);
    }
  }

 private:
  static std::string shape(const std::vector<uint64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
  }

  const gguf::GgufFile& file_;
  std::string arch_;
  mutable std::set<std::string> used_;
};

}  // namespace etna::model
