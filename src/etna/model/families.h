// The table of decoder families: each family is one file (forward_<family>.cpp) holding its
// hyperparameters, the tensors of one layer and its forward pass, written with blocks.h.
// Internal to model/.
#pragma once
#include <string>
#include <vector>

#include "etna/model/loader.h"
#include "etna/model/model.h"

namespace etna::model {

struct Family {
  const char* arch;  // general.architecture
  // Reads the family's own hyperparameters after the common ones (model.cpp's read_config);
  // refuses (etna::Error) what the forward pass does not compute.
  void (*configure)(ModelConfig& c, const Loader& ld);
  // Loads the model-wide tensors only this family knows (null: none), before the layers.
  void (*load_model)(const ModelConfig& c, const Loader& ld, Model::Weights& w);
  // Loads the tensors of one layer ("blk.N." prefix) into L.
  void (*load_layer)(const ModelConfig& c, const Loader& ld, const std::string& prefix, Model::Layer& L);
  // Evaluates a checked batch: logits of the asked-for tokens, or (hidden) every token's
  // final-normalised hidden state.
  void (*forward)(const Model& m, const Batch& batch, KvCache& cache, bool hidden, std::vector<float>& out);
};

extern const Family kLlamaFamily;    // llama (incl. Mixtral-style experts), qwen2
extern const Family kQwen2Family;
extern const Family kQwen3Family;    // qwen3, qwen3moe
extern const Family kQwen3MoeFamily;
extern const Family kGemma2Family;   // gemma2, gemma3
extern const Family kGemma3Family;
extern const Family kPhi3Family;

// Tensors of one layer shared by most families (attention projections and norms); `q_width`
// is n_head * head_dim.
void load_attention(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L);
// The dense SwiGLU/GELU feed-forward, or the expert block when c.n_expert > 0.
void load_ffn(const ModelConfig& c, const Loader& ld, const std::string& p, Model::Layer& L);
// Reads expert_count / expert_used_count (and the expert feed-forward width) into c.
void configure_experts(ModelConfig& c, const Loader& ld, bool normalise_weights);

}  // namespace etna::model
