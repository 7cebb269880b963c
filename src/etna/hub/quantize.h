// Quantising a GGUF model file (`etna quantize`): F32 / F16 / BF16 weights in, one of
// llama.cpp's file types out (Q4_0 .. Q8_0, the K-quant mixes Q2_K .. Q6_K, F16, BF16).
//
// The output is meant to be the file llama.cpp's llama-quantize writes for the same input,
// byte for byte: the same per-tensor type mix (llama.cpp's rules by tensor role, layer and
// model shape, with the same fallbacks for rows that do not fit a block), the reference
// encoders of etna/tensor/quantize.h, tensors in the peer's order (by layer, then name), and
// the input's metadata with general.quantization_version and general.file_type appended. Everything else the input
// carries is kept, so licence and provenance keys (general.license*, general.base_model.*,
// general.source.*) are inherited by the quantised file.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etna/gguf/ggml_type.h"
#include "etna/gguf/gguf_file.h"

namespace etna::hub {

using gguf::GgmlType;

// One of llama.cpp's file types (LLAMA_FTYPE_*).
struct QuantFileType {
  std::string_view name;         // "Q4_K_M"
  uint32_t id;                   // the value written to general.file_type
  GgmlType base;                 // the type most weight matrices get
  std::string_view description;  // for help text
};

// Every file type `etna quantize` knows, in help order.
const std::vector<QuantFileType>& quant_file_types();

// Looks a file type up by name, case-insensitively; "Q3_K", "Q4_K", "Q5_K" mean the _M mixes,
// as in llama-quantize. nullptr when unknown.
const QuantFileType* find_quant_file_type(std::string_view name);

// --tensor-type PATTERN=TYPE: tensors whose name matches the ECMAScript regex PATTERN
// (searched, not anchored) get TYPE instead of the mix's choice; the first match wins.
struct TensorTypeOverride {
  std::string pattern;
  GgmlType type;
};

// Parses "PATTERN=TYPE" (TYPE a GGML type name such as q4_k, q8_0, f16). Throws etna::Error
// (invalid_argument) for a missing '=', an invalid regex or a type that cannot be written.
TensorTypeOverride parse_tensor_type_override(const std::string& spec);

struct QuantizeOptions {
  std::string file_type = "Q8_0";   // a name find_quant_file_type accepts
  int threads = 0;                  // < 1: one per hardware thread
  std::vector<TensorTypeOverride> tensor_types;
  std::optional<GgmlType> output_tensor_type;    // output.weight (and a tied token_embd)
  std::optional<GgmlType> token_embedding_type;  // token_embd.weight
  bool leave_output_tensor = false;  // copy output.weight unchanged
  bool pure = false;                 // no mix: every quantisable tensor gets the base type
  bool allow_requantize = false;     // accept already-quantised tensors (quality suffers)
  // An importance matrix (hub/imatrix.h's file): tensors it covers are quantised with their
  // columns' importance as the encoders' weights (GGML's weighted K-quant and IQ searches); a
  // covered tensor bound for Q5_1 is refused (no weighted form here yet).
  std::string imatrix;
};

// What happens to one tensor.
struct TensorPlan {
  std::string name;
  std::vector<uint64_t> dims;
  GgmlType from;
  GgmlType to;
  bool fallback = false;  // the chosen type did not fit the row length; `to` is the fallback
  uint64_t bytes_in = 0, bytes_out = 0;
};

// The tensors of `in` in output order with their target types (what --dry-run prints; a type
// this build cannot encode yet, such as IQ4_NL, may appear). Throws etna::Error for an unknown
// file type, a tensor that cannot be converted (already quantised without allow_requantize, a
// forced type that does not fit its rows) or a file that is not a model.
std::vector<TensorPlan> plan_quantization(const gguf::GgufFile& in, const QuantizeOptions& options);

struct QuantizeProgress {
  size_t index;  // 0-based position of the tensor just written
  size_t total;
  const TensorPlan& tensor;
};

struct QuantizeSummary {
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor data only
  size_t tensors = 0, quantized = 0, fallbacks = 0;
};

// Quantises `in_path` into `out_path` (written atomically; nothing is left behind on error).
// Rows are split over `threads`; the bytes do not depend on the thread count. Tensors are
// converted one at a time, so memory stays near one tensor's size beyond the input mapping.
// `progress` is called after each tensor. Throws etna::Error.
QuantizeSummary quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& options,
                               const std::function<void(const QuantizeProgress&)>& progress = {});

}  // namespace etna::hub
