// The element type a KvCache stores its K and V rows in. F32 is exact; F16 halves the memory
// with ~1e-3 relative rounding; Q8_0 (blocks of 32 int8 with one F16 scale) takes ~27% of F32.
#pragma once
#include <cstddef>
#include <string_view>

#include "etna/gguf/ggml_type.h"

namespace etna::model {

struct ModelConfig;

enum class KvType { f32, f16, q8_0 };

// "f32", "f16", "q8_0".
const char* kv_type_name(KvType type);
// Parses kv_type_name()'s spellings (case-insensitive). Throws etna::Error (invalid_argument).
KvType parse_kv_type(std::string_view name);
// The GGML block type rows are stored as.
gguf::GgmlType kv_ggml_type(KvType type);
// Bytes of K and V for one position over all layers. Throws etna::Error (unsupported) when
// the model's K/V row width is not a whole number of the type's blocks.
size_t kv_bytes_per_token(const ModelConfig& config, KvType type);

}  // namespace etna::model
