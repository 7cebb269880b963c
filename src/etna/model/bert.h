// BERT-style encoders (GGUF architecture "bert": bge, all-MiniLM, e5, ...) as a plain forward
// pass over GGUF weights used in place, computing what llama.cpp's bert graph computes:
// token + token-type (always type 0) + absolute position embeddings, LayerNorm, then per layer
// bidirectional attention and a GELU feed-forward, each followed by residual add + LayerNorm.
// A BertModel is immutable after load() and may be used by several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "etna/gguf/gguf_file.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

// How per-token hidden states become one vector (`<arch>.pooling_type`, llama.cpp's numbering).
enum class Pooling { none = 0, mean = 1, cls = 2, last = 3, rank = 4 };

// Name of a pooling type for messages ("mean", "cls", ...).
const char* pooling_name(Pooling p);

struct BertConfig {
  std::string arch;         // general.architecture ("bert")
  std::string name;         // general.name, or "" when absent
  int n_vocab = 0;
  int n_ctx_train = 0;      // number of position embeddings: the longest input
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_ff = 0;
  int head_dim = 0;         // n_embd / n_head
  float norm_eps = 1e-12f;  // attention.layer_norm_epsilon
  Pooling pooling = Pooling::none;  // as the file says (none when absent)
  int n_cls_out = 0;        // outputs of the classification head (cross-encoders); 0 without one
};

class BertModel {
 public:
  // Memory-maps `path` and checks every tensor the bert architecture needs (shape and type).
  // Throws etna::Error naming the file and what is wrong; (unsupported) for other
  // architectures and for causal encoders.
  static std::unique_ptr<BertModel> load(const std::string& path);
  ~BertModel();

  const BertConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }

  // Per-token hidden states of one sequence after the last layer: hidden is resized to
  // tokens.size() x n_embd floats (row t = token t). Every token attends to every token.
  // Throws etna::Error (invalid_argument) for an empty sequence or a token id outside the
  // vocabulary, (limit) for more than n_ctx_train tokens.
  void forward(const std::vector<int32_t>& tokens, std::vector<float>& hidden) const;

  // The classification head of a cross-encoder (pooling "rank", as llama.cpp loads rerankers):
  // the first token's hidden state h, then cls_out · tanh(cls · h + cls_b) + cls_out_b (without
  // cls.output the tanh layer's n_embd values are the output). Returns config().n_cls_out values;
  // for a reranker the first is the relevance score. Throws etna::Error (unsupported) when the
  // model has no head, else as forward().
  std::vector<float> classify(const std::vector<int32_t>& tokens) const;

  struct Layer {
    tensor::Matrix attn_q, attn_k, attn_v, attn_output;
    tensor::Matrix attn_q_bias, attn_k_bias, attn_v_bias, attn_output_bias;
    tensor::Matrix attn_output_norm, attn_output_norm_bias;
    tensor::Matrix ffn_up, ffn_up_bias, ffn_down, ffn_down_bias;
    tensor::Matrix layer_output_norm, layer_output_norm_bias;
  };

 private:
  BertModel() = default;

  std::unique_ptr<gguf::GgufFile> file_;
  BertConfig config_;
  tensor::Matrix token_embd_, token_types_, position_embd_, embd_norm_, embd_norm_bias_;
  tensor::Matrix cls_, cls_bias_, cls_out_, cls_out_bias_;  // data null when absent
  std::vector<Layer> layers_;
};

}  // namespace etna::model
