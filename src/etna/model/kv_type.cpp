#include "etna/model/kv_type.h"

#include <algorithm>
#include <string>

#include "etna/base/error.h"
#include "etna/model/model.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

const char* kv_type_name(KvType type) {
  switch (type) {
    case KvType::f32: return "f32";
    case KvType::f16: return "f16";
    case KvType::q8_0: return "q8_0";
  }
  return "unknown";
}

KvType parse_kv_type(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (KvType t : {KvType::f32, KvType::f16, KvType::q8_0})
    if (s == kv_type_name(t)) return t;
  fail(ErrorKind::invalid_argument, "unknown KV cache type '{}' (use f32, f16 or q8_0)", name);
}

gguf::GgmlType kv_ggml_type(KvType type) {
  switch (type) {
    case KvType::f32: return gguf::GgmlType::F32;
    case KvType::f16: return gguf::GgmlType::F16;
    case KvType::q8_0: return gguf::GgmlType::Q8_0;
  }
  return gguf::GgmlType::F32;
}

size_t kv_bytes_per_token(const ModelConfig& config, KvType type) {
  const int64_t width = config.n_embd_kv();
  const int64_t block = type == KvType::q8_0 ? 32 : 1;
  if (width % block != 0)
    fail(ErrorKind::unsupported, "a {} KV cache needs K/V rows of a multiple of {} values; this model's are {} wide",
         kv_type_name(type), block, width);
  return 2 * static_cast<size_t>(config.n_layer) * tensor::row_bytes(kv_ggml_type(type), width);
}

}  // namespace etna::model
