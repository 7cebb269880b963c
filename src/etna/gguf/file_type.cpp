#include "etna/gguf/file_type.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace etna::gguf {

namespace {

const char* ftype_name(int64_t v) {
  switch (v) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 19: return "IQ2_XXS";
    case 20: return "IQ2_XS";
    case 21: return "Q2_K_S";
    case 22: return "IQ3_XS";
    case 23: return "IQ3_XXS";
    case 24: return "IQ1_S";
    case 25: return "IQ4_NL";
    case 26: return "IQ3_S";
    case 27: return "IQ3_M";
    case 28: return "IQ2_S";
    case 29: return "IQ2_M";
    case 30: return "IQ4_XS";
    case 31: return "IQ1_M";
    case 32: return "BF16";
    case 36: return "TQ1_0";
    case 37: return "TQ2_0";
    default: return nullptr;
  }
}

}  // namespace

std::string file_type_name(int64_t file_type) {
  if (const char* name = ftype_name(file_type)) return name;
  return fmt::format("file_type {}", file_type);
}

std::string file_type_name(const GgufFile& f) {
  if (const Value* v = f.find("general.file_type"); v && v->is_integer()) return file_type_name(v->as_int());
  std::map<GgmlType, uint64_t> bytes;
  for (const auto& t : f.tensors()) bytes[t.type] += t.n_bytes;
  auto best = std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; });
  return best == bytes.end() ? "unknown" : ggml_type_name(best->first);
}

}  // namespace etna::gguf
