#include "etna/hub/imatrix.h"

#include <cmath>
#include <cstring>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"

namespace etna::hub {

Imatrix load_imatrix(const std::string& path) {
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(ErrorKind::not_found, "cannot open the importance matrix {}", path);
    char magic[4] = {};
    const size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n != 4 || std::memcmp(magic, "GGUF", 4) != 0)
      fail(ErrorKind::unsupported, "{}: not a GGUF importance matrix (the legacy .dat format is not read; convert it "
           "with llama.cpp's imatrix tool, or compute one with etna imatrix)", path);
  }
  auto f = gguf::GgufFile::open(path);
  if (f->get_string("general.type").value_or("imatrix") != "imatrix")
    fail(ErrorKind::corrupt, "{}: general.type is '{}', not 'imatrix'", path, *f->get_string("general.type"));
  Imatrix m;
  m.datasets = f->get_string_array("imatrix.datasets");
  m.chunk_count = static_cast<uint32_t>(f->get_uint("imatrix.chunk_count").value_or(0));
  m.chunk_size = static_cast<uint32_t>(f->get_uint("imatrix.chunk_size").value_or(0));
  const std::string kSums = ".in_sum2", kCounts = ".counts";
  for (const auto& t : f->tensors()) {
    if (t.name.size() <= kSums.size() || t.name.compare(t.name.size() - kSums.size(), kSums.size(), kSums) != 0) continue;
    const std::string name = t.name.substr(0, t.name.size() - kSums.size());
    const gguf::TensorInfo* c = f->find_tensor(name + kCounts);
    if (!c) fail(ErrorKind::corrupt, "{}: '{}' has sums but no counts", path, name);
    if (t.type != gguf::GgmlType::F32 || c->type != gguf::GgmlType::F32 || t.dims.size() != 2 || t.dims[0] == 0 ||
        c->n_elements != t.dims[1])
      fail(ErrorKind::corrupt, "{}: '{}': the sums ([{} values]) and counts ({}) do not fit together", path, name,
           t.n_elements, c->n_elements);
    const uint64_t cols = t.dims[0], n_mat = t.dims[1];
    std::vector<float> sums(t.n_elements), counts(c->n_elements);
    std::memcpy(sums.data(), t.data, 4 * sums.size());
    std::memcpy(counts.data(), c->data, 4 * counts.size());
    std::vector<float>& w = m.weights[name];
    w.resize(sums.size());
    for (uint64_t e = 0; e < n_mat; ++e) {
      if (!std::isfinite(counts[e]) || counts[e] < 0)
        fail(ErrorKind::corrupt, "{}: '{}' has the count {} for matrix {}", path, name, counts[e], e);
      for (uint64_t j = 0; j < cols; ++j) {
        const float s = sums[e * cols + j];
        if (!std::isfinite(s) || s < 0) fail(ErrorKind::corrupt, "{}: '{}' holds the sum of squares {}", path, name, s);
        w[e * cols + j] = counts[e] > 0 ? s / counts[e] : 1.0f;
      }
    }
  }
  if (m.weights.empty()) fail(ErrorKind::corrupt, "{}: no importance data (no NAME.in_sum2 tensors)", path);
  return m;
}

}  // namespace etna::hub
