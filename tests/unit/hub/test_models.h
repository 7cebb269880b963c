// Small GGUF files with licence keys, made from the shared stories260K model with the GGUF writer.
#pragma once
#include <fstream>
#include <string>

#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "support/test_support.h"

namespace etna::test {

// stories260K with general.license = `licence` (and optional extra keys), as bytes; "" when
// ../shared is absent.
inline std::string licensed_gguf(const std::string& licence, const std::string& name = "") {
  const auto src = shared_file("models/stories260K.gguf");
  if (src.empty()) return "";
  auto in = gguf::GgufFile::open(src.string());
  auto w = gguf::GgufWriter::from_file(*in);
  if (!licence.empty()) w.set("general.license", gguf::Value::string(licence));
  if (!name.empty()) w.set("general.name", gguf::Value::string(name));
  auto bytes = w.to_bytes();
  return std::string(bytes.begin(), bytes.end());
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace etna::test
