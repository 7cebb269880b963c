// libFuzzer target for the GGUF reader: any byte string must either parse into a file whose
// every tensor byte range lies inside the input, or be refused with etna::Error. Nothing else.
#include <cstdint>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = etna::gguf::GgufFile::parse(data, size, "fuzz.gguf");
    for (const auto& t : f->tensors()) {
      if (t.data < data || t.data + t.n_bytes > data + size) std::abort();
    }
    // Touch every metadata value through the typed accessors.
    for (const auto& [key, value] : f->metadata()) {
      (void)value.to_json(16);
    }
    // Writing back a parsed file must not fail and must parse again.
    auto bytes = etna::gguf::GgufWriter::from_file(*f).to_bytes();
    auto g = etna::gguf::GgufFile::parse(bytes.data(), bytes.size(), "fuzz-rewritten.gguf");
    if (g->tensors().size() != f->tensors().size() || g->metadata().size() != f->metadata().size()) std::abort();
  } catch (const etna::Error&) {
  }
  return 0;
}
