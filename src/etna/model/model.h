// Decoder-only transformer models (llama, qwen2, qwen3, qwen3moe, gemma2, gemma3, phi3; see
// families.h for the table) as plain forward passes over GGUF
// weights used in place, computing what llama.cpp computes. A Model is immutable after load()
// and may be shared by threads; all per-sequence state lives in a KvCache owned by the caller.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/model/kv_type.h"
#include "etna/tensor/tensor.h"

namespace etna::model {

// Hyperparameters read from the GGUF metadata ("<arch>.embedding_length", ...).
struct ModelConfig {
  enum RopeStyle { normal, neox };  // normal: rotate (x[2i], x[2i+1]); neox: (x[i], x[i+d/2])

  std::string arch;        // general.architecture ("llama", "qwen2")
  std::string name;        // general.name, or "" when absent
  int n_vocab = 0;
  int n_ctx_train = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int n_ff = 0;
  int head_dim = 0;        // n_embd / n_head unless the file says otherwise
  int n_rot = 0;           // rotated dimensions per head (rope.dimension_count), <= head_dim
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor
  RopeStyle rope = normal;
  bool tied_output = false;  // output matrix is token_embd (no output.weight in the file)
  bool attn_bias = false;    // q/k/v projections carry biases (qwen2)

  // Rotary scaling (rope.scaling.*): linear divides positions by the factor; YaRN (Peng et al.
  // 2023) ramps between interpolated and extrapolated frequencies and scales the magnitude;
  // LongRoPE (phi3) divides each frequency by a per-dimension factor chosen by context length.
  enum RopeScaling { rope_none, rope_linear, rope_yarn, rope_longrope };
  RopeScaling rope_scaling = rope_none;
  int n_ctx_orig = 0;              // rope.scaling.original_context_length (n_ctx_train when absent)
  float rope_attn_factor = 1.0f;   // multiplies cos and sin (YaRN, LongRoPE attention factor)
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;  // the peer's defaults
  bool rope_freq_factors = false;  // rope_freqs.weight divides each frequency (Llama 3.1+)

  // Mixture of experts (expert_count > 0): every layer's feed-forward is a routed expert block.
  int n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
  bool expert_weights_norm = false;  // renormalise the chosen experts' weights to sum 1

  // Attention variants.
  bool qk_norm = false;          // per-head RMS norm of q and k before rope (qwen3, gemma3)
  float q_scale = 0.0f;          // multiplies q before the dot products; 0: 1/sqrt(head_dim)
  float attn_softcap = 0.0f;     // attention scores soft-capped at this (gemma2); 0: off
  float final_softcap = 0.0f;    // output logits soft-capped at this (gemma2); 0: off
  float embd_scale = 1.0f;       // token embeddings multiplied by this (gemma: sqrt(n_embd))
  int sliding_window = 0;        // keys with pos_q - pos_k < sliding_window, on the window layers
  int swa_pattern = 1;           // layer l uses the window when l % swa_pattern < swa_pattern - 1
                                 // (1: every layer when sliding_window > 0)
  float rope_freq_base_swa = 0.0f;   // rope base of window layers (gemma3); 0: rope_freq_base
  float rope_freq_scale_swa = 0.0f;  // rope scale of window layers (gemma3); 0: rope_freq_scale

  int n_embd_kv() const { return n_head_kv * head_dim; }  // width of one K (or V) row
  // Whether layer `l` attends within the sliding window only.
  bool is_swa(int l) const { return sliding_window > 0 && (swa_pattern <= 1 || l % swa_pattern < swa_pattern - 1); }
};

// Per-sequence key/value storage: n_seq sequences x n_layer layers x cells of n_embd_kv values,
// for K and for V, each row encoded as `type` (tensor::quantize_row on the way in,
// dequantize_row on the way out; F32 rows are plain floats). A full-attention layer keeps n_ctx
// cells, cell p holding the token at position p; a sliding-window layer keeps only
// min(n_ctx, window + max_batch) cells as a ring (position p in cell p mod that), which is all
// its attention can read. Not thread-safe; one forward() at a time per cache.
class KvCache {
 public:
  // max_batch: the most tokens of one sequence a forward() may add at once (bounds the window
  // rings). Throws etna::Error for n_seq, n_ctx or max_batch < 1, or (unsupported) a row width
  // the type's blocks do not divide.
  KvCache(const ModelConfig& config, int n_seq, int n_ctx, KvType type = KvType::f32, int max_batch = 512);

  int n_seq() const { return n_seq_; }
  int n_ctx() const { return n_ctx_; }
  int n_layer() const { return n_layer_; }
  int n_embd_kv() const { return n_embd_kv_; }
  int max_batch() const { return max_batch_; }
  bool has_window_layers() const { return has_ring_; }
  // Cells layer `layer` keeps per sequence: n_ctx, or its sliding-window ring.
  int layer_cells(int layer) const { return cells_[layer]; }
  KvType type() const { return type_; }
  size_t row_bytes() const { return row_bytes_; }          // one encoded K (or V) row
  size_t bytes() const { return k_.size() + v_.size(); }  // all cells of all sequences

  // Number of filled cells of sequence `seq` (positions 0..length-1 are valid).
  int length(int seq) const;
  // Forgets everything in sequence `seq`.
  void clear(int seq);
  // The longest prefix of at most n cells of `seq` that truncate() and copy() can keep: n, or 0
  // when a window layer's ring has already overwritten a cell position n still needs.
  int reusable(int seq, int n) const;
  // Keeps the first n cells of `seq` (a server reusing a common prompt prefix, or speculative
  // decoding dropping rejected guesses). REQUIRES n <= length and reusable(seq, n) == n.
  void truncate(int seq, int n);
  // Makes `dst` a copy of the first n cells of `src` (n = -1: all of src's cells).
  // REQUIRES reusable(src, n) == n.
  void copy(int src, int dst, int n = -1);

  // Encoded row of K (V) for layer `layer`, sequence `seq`, position `pos`: row_bytes() bytes.
  uint8_t* k_row(int seq, int layer, int pos) { return k_.data() + offset(seq, layer, pos); }
  uint8_t* v_row(int seq, int layer, int pos) { return v_.data() + offset(seq, layer, pos); }
  const uint8_t* k_row(int seq, int layer, int pos) const { return k_.data() + offset(seq, layer, pos); }
  const uint8_t* v_row(int seq, int layer, int pos) const { return v_.data() + offset(seq, layer, pos); }

  // Writes n_embd_kv floats as the K (V) row of (seq, layer, pos), converted to type().
  void store_k(int seq, int layer, int pos, const float* src) { store(k_row(seq, layer, pos), src); }
  void store_v(int seq, int layer, int pos, const float* src) { store(v_row(seq, layer, pos), src); }

  // The rows as floats. REQUIRES: type() == KvType::f32 (throws etna::Error otherwise).
  float* k(int seq, int layer, int pos) { return as_floats(k_row(seq, layer, pos)); }
  float* v(int seq, int layer, int pos) { return as_floats(v_row(seq, layer, pos)); }
  const float* k(int seq, int layer, int pos) const { return as_floats(k_row(seq, layer, pos)); }
  const float* v(int seq, int layer, int pos) const { return as_floats(v_row(seq, layer, pos)); }

  // Records that cells 0..pos of `seq` now hold data (called by forward()).
  void mark_filled(int seq, int pos);

 private:
  size_t offset(int seq, int layer, int pos) const {
    return static_cast<size_t>(seq) * seq_bytes_ + layer_offset_[layer] +
           static_cast<size_t>(pos % cells_[layer]) * row_bytes_;
  }
  template <typename T>
  T* as_floats(const uint8_t* row) const {
    if (type_ != KvType::f32) fail(ErrorKind::internal, "float view of a {} KV cache", kv_type_name(type_));
    return reinterpret_cast<T*>(const_cast<uint8_t*>(row));
  }
  float* as_floats(uint8_t* row) { return as_floats<float>(row); }
  const float* as_floats(const uint8_t* row) const { return as_floats<const float>(row); }
  void store(uint8_t* row, const float* src);
  void check_seq(int seq) const;

  int n_seq_, n_ctx_, n_layer_, n_embd_kv_, max_batch_;
  KvType type_;
  size_t row_bytes_;
  std::vector<int> cells_, window_;      // per layer: cells kept, window (0: full attention)
  std::vector<size_t> layer_offset_;     // per layer: byte offset within a sequence
  size_t seq_bytes_ = 0;
  bool has_ring_ = false;
  std::vector<uint8_t> k_, v_;  // float-aligned: allocated by operator new
  std::vector<int> length_;
};

// Tokens to evaluate in one forward pass. Tokens of several sequences may be mixed; each token
// attends (causally) to cells 0..pos of its own sequence, and the batch's own keys/values are
// written into the cache before attention. Each sequence's tokens must continue it in order:
// the first at pos == cache.length(seq), the next at pos + 1, ... (truncate to rewind).
// All four vectors have the same length (want_logits may be empty: logits for the last token).
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> pos;
  std::vector<int32_t> seq;
  std::vector<char> want_logits;

  void add(int32_t token, int32_t position, int32_t sequence, bool logits) {
    tokens.push_back(token);
    pos.push_back(position);
    seq.push_back(sequence);
    want_logits.push_back(logits ? 1 : 0);
  }
  size_t size() const { return tokens.size(); }
  void clear() { tokens.clear(); pos.clear(); seq.clear(); want_logits.clear(); }
};

struct Family;  // families.h

class Model {
 public:
  // Memory-maps `path` and checks that every tensor the architecture needs exists with the
  // right shape and a supported type. Throws etna::Error naming the file and what is wrong.
  // Unless repacking is off (set_repack(false) or ETNA_REPACK=0), the Q4_0 / Q8_0 weight
  // matrices the active kernel set has interleaved kernels for are rearranged in place
  // (tensor::repack_rows) in this process's private copy of their pages; file() then holds
  // those bytes for them. Results are the same bit for bit either way.
  static std::unique_ptr<Model> load(const std::string& path);
  ~Model();

  // Process-wide default for load(): repack weights (true unless ETNA_REPACK=0).
  static void set_repack(bool on);
  static bool repack_enabled();

  // Sees the input rows of every weight-matrix product of every forward pass (the weights as
  // loaded: with repacking off, their data lies in file()'s tensors; an expert's matrix is a
  // slice of its stacked tensor). `etna imatrix` collects activation statistics with it.
  // Called on the thread that runs forward(); set it while no forward pass runs (null: none).
  class LinearObserver {
   public:
    virtual ~LinearObserver() = default;
    virtual void observe(const tensor::Matrix& w, const float* x, int n_tokens) = 0;
  };
  static void set_linear_observer(LinearObserver* observer);

  // What load() repacked: matrices and their bytes (0 when off or nothing qualified).
  int repacked_matrices() const { return repacked_matrices_; }
  uint64_t repacked_bytes() const { return repacked_bytes_; }

  const ModelConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }

  // A cache for n_seq sequences of up to n_ctx positions each, rows stored as `type`, taking
  // up to max_batch tokens of a sequence per forward() (see KvCache).
  std::unique_ptr<KvCache> make_cache(int n_seq, int n_ctx, KvType type = KvType::f32, int max_batch = 512) const;

  // Evaluates `batch`, storing its keys/values in `cache`. `logits` is resized to one n_vocab
  // row per token with want_logits set, in batch order. Throws etna::Error (limit) when a
  // position is >= cache.n_ctx(), (invalid_argument) for bad token ids, sequences or positions
  // that skip cells; on error the cache contents of the batch's sequences are unspecified
  // beyond their previous length.
  void forward(const Batch& batch, KvCache& cache, std::vector<float>& logits) const;

  // As forward(), but `hidden` is resized to the final-normalised hidden state (after
  // output_norm, before the output projection) of every batch token: n_embd floats per token,
  // in batch order; want_logits is ignored. Used for mean-pooled decoder embeddings.
  void forward_hidden(const Batch& batch, KvCache& cache, std::vector<float>& hidden) const;

  // Bytes of expert weights the forward passes have read since load (a mixture-of-experts
  // model reads only its chosen experts: tests check this grows by what the routing chose).
  uint64_t expert_bytes_read() const { return expert_bytes_read_.load(); }

  // The weights, used in place from the mapped file. Matrices whose data is null are absent.
  struct Experts {
    tensor::Matrix gate_inp;        // router: n_expert rows of n_embd
    tensor::Matrix gate, up, down;  // expert 0 of each stacked 3-D tensor (see expert())
    int n_expert = 0;
    // Expert e's matrix of a stacked tensor whose expert 0 is m.
    static tensor::Matrix expert(const tensor::Matrix& m, int e) {
      tensor::Matrix r = m;
      r.data += static_cast<size_t>(e) * static_cast<size_t>(m.rows) * m.row_bytes;
      return r;
    }
  };
  struct Layer {
    tensor::Matrix attn_norm, attn_q, attn_k, attn_v, attn_output;
    tensor::Matrix attn_qkv;                               // fused q|k|v (phi3)
    tensor::Matrix attn_q_bias, attn_k_bias, attn_v_bias;  // rows = 1; data null when absent
    tensor::Matrix attn_q_norm, attn_k_norm;               // per-head norms (qwen3, gemma3)
    tensor::Matrix post_attention_norm, post_ffw_norm;     // gemma2, gemma3
    tensor::Matrix ffn_norm, ffn_gate, ffn_up, ffn_down;   // ffn_up is gate|up fused for phi3
    Experts moe;                                           // n_expert > 0 instead of ffn_gate/up/down
  };
  struct Weights {
    tensor::Matrix token_embd, output_norm, output;
    tensor::Matrix rope_freqs;                    // Llama 3.1+ frequency factors (n_rot/2)
    tensor::Matrix rope_factors_long, rope_factors_short;  // LongRoPE (phi3)
    std::vector<Layer> layers;
  };
  const Weights& weights() const { return w_; }
  std::atomic<uint64_t>* expert_counter() const { return &expert_bytes_read_; }

 private:
  Model() = default;
  void check_batch(const Batch& batch, const KvCache& cache) const;
  void repack_weights();

  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
  Weights w_;
  const Family* family_ = nullptr;
  mutable std::atomic<uint64_t> expert_bytes_read_{0};
  int repacked_matrices_ = 0;
  uint64_t repacked_bytes_ = 0;
};

}  // namespace etna::model
