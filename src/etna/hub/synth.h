// Synthetic models: random-weight GGUF files with the exact shapes, tensor-type mixes and
// tokenizer layouts of real models. Speed does not depend on the weights' values, so these
// stand in for models that cannot be downloaded here (benchmarks, memory tests).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace etna::hub {

struct SynthShape {
  std::string name;       // "tinyllama-1.1b"
  std::string arch;       // "llama", "qwen2", "qwen3" or "qwen3moe"
  int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
  float rope_base, rms_eps;
  bool tied_output;
  std::string tokenizer;  // "spm", "llama-bpe", "qwen2"
  int head_dim = 0;         // 0: n_embd / n_head; qwen3 declares its own (attention.key_length)
  bool rope_freqs = false;  // Llama 3.1+ frequency factors (rope_freqs.weight)
  int n_expert = 0, n_expert_used = 0, n_ff_exp = 0;  // routed experts (qwen3moe)
};

// The shapes `etna synth --shape` accepts.
const std::vector<SynthShape>& synth_shapes();

// Active parameters per token: everything but the experts a token's router does not choose
// (equal to the total for dense shapes). Decode reads about this many weights per token.
uint64_t active_parameters(const SynthShape& s);

// Writes a random-weight model of `shape_name` quantised as `type` ("q4_0", "q8_0", "q4_k_m")
// to `path`, following llama.cpp's per-tensor type choices for that file type. Deterministic
// for a given seed. `progress(done, total)` is called as tensors are generated.
// Throws etna::Error (invalid_argument) for unknown shapes or types.
void synthesize_model(const std::string& shape_name, const std::string& type, const std::string& path,
                      uint64_t seed = 1, const std::function<void(size_t, size_t)>& progress = {});

}  // namespace etna::hub
