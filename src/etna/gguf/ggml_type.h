// The GGML tensor element types as numbered in GGUF files, with their block geometry.
// A tensor row of n elements of type t occupies n / block_size(t) * block_bytes(t) bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace etna::gguf {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
  std::string_view name;
  uint32_t block_size;   // elements per block
  uint32_t block_bytes;  // bytes per block
};

// Geometry of a type id read from a file; nullopt for ids GGML does not define.
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id);

// Name of a type ("Q4_K"), or "type#N" for an unknown id.
std::string ggml_type_name(GgmlType type);

// Looks a type up by name, case-insensitively ("q4_0", "F16").
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes taken by `n` elements of `type`. REQUIRES: n is a multiple of the block size.
size_t ggml_row_bytes(GgmlType type, uint64_t n);

}  // namespace etna::gguf
