// Reading importance matrices (the GGUF files `etna imatrix` and llama-imatrix write; the
// format is described in eval/imatrix.h) for `etna quantize --imatrix`.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace etna::hub {

// Per matrix name, the mean squared input of each column (sum / count), expert after expert
// (columns * experts values); an expert that saw no token gets 1s, as the peer fills partial
// data.
struct Imatrix {
  std::map<std::string, std::vector<float>> weights;
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;
};

// Throws etna::Error (corrupt) for a malformed file (a sum without its count, sizes that
// disagree, non-finite or negative values), (unsupported) for the legacy .dat format.
Imatrix load_imatrix(const std::string& path);

}  // namespace etna::hub
