// `etna convert`: a Hugging Face checkpoint folder (safetensors + config.json + tokenizer files)
// to a GGUF file laid out as llama.cpp's convert_hf_to_gguf.py writes it: the same tensor names,
// metadata keys, token lists and types, and the same q/k row permutation for llama-family
// attention (HF stores the two rotary halves of each head apart; GGUF interleaves them).
//
// Families: llama (LlamaForCausalLM, incl. Llama 3 rope_scaling -> rope_freqs.weight),
// mistral (MistralForCausalLM) and mixtral (MixtralForCausalLM, experts stacked into 3-D
// ffn_*_exps), all written as llama like the peer does; qwen2; qwen3 and qwen3moe (q/k norms,
// experts); gemma2 and gemma3 (Gemma*ForCausalLM: norms stored as 1 + w, the tied lm_head
// dropped, soft-capping and sliding-window keys; layouts Etna cannot run are refused); phi3
// (fused qkv and gate/up kept fused, LongRoPE factor tensors and attention factor); bert
// (BertModel / BertForMaskedLM / ...). Tokenizers: SentencePiece `tokenizer.model`
// (llama / mistral / qwen2, tried first as the peer does), byte-level BPE `tokenizer.json` (qwen2, Llama 3) and WordPiece
// `tokenizer.json` (bert). Anything else is refused with one clear error.
//
// Licence and provenance from the model card (README.md YAML front matter: license,
// license_name, license_link, base_model) go to general.license*, general.base_model.*.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace etna::hub {

struct ConvertOptions {
  std::string outtype = "f16";  // f32, f16, bf16 or q8_0 (weight matrices; norms, biases stay F32)
  std::string name;             // general.name (default: the folder's name)
};

struct ConvertProgress {
  size_t index, total;
  const std::string& name;  // GGUF tensor name
};

struct ConvertSummary {
  std::string architecture;  // GGUF general.architecture
  size_t tensors = 0;
  uint64_t bytes_out = 0;
};

// Converts the checkpoint in `hf_dir` into `out_path` (written atomically). Throws etna::Error
// for a missing or malformed file, an unsupported architecture, tokenizer or dtype, or a tensor
// the family's mapping does not know (never writes a file it does not fully understand).
ConvertSummary convert_hf_model(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& options,
                                const std::function<void(const ConvertProgress&)>& progress = {});

}  // namespace etna::hub
