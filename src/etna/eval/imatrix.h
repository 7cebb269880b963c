// Importance matrices (`etna imatrix`): for every weight matrix of a model's blocks, the sum of
// squares of each input column over a calibration text, which the IQ encoders of
// `etna quantize --imatrix` use to weight their error (llama.cpp's llama-imatrix; Kawrakow,
// llama.cpp PR #4861). hub/imatrix.h reads the file back.
//
// Collection follows the peer: the text is tokenised once and cut into chunks of n_ctx tokens,
// each evaluated from an empty cache with its first token replaced by BOS (perplexity.h's
// method; the perplexity is computed on the way). Every product of a "blk.*" matrix with at
// least 16 input rows adds each row's squares to that matrix's column sums and the rows to its
// count; an expert's matrix counts the tokens routed to it. The output matrix is not
// collected (the peer's default). The file is the peer's GGUF form: general.type "imatrix",
// imatrix.datasets / chunk_count / chunk_size, and per matrix NAME the tensors NAME.in_sum2
// (F32, [columns, experts]) and NAME.counts (F32, [1, experts]), names in sorted order.
#pragma once
#include <functional>
#include <string>

namespace etna::eval {

struct ImatrixOptions {
  int n_ctx = 512;     // tokens per chunk (the peer's -c)
  int max_chunks = 0;  // 0: every whole chunk of the text (the peer's --chunks)
};

struct ImatrixSummary {
  int chunks = 0;
  size_t entries = 0;  // matrices with data
  double ppl = 0;      // the text's perplexity over the same chunks
};

// Runs the model at `model_path` over the text file `text_path` and writes the importance
// matrix to `out_path` (atomically). `on_chunk(done, total)` after each chunk. Throws
// etna::Error for unreadable inputs or a text shorter than 2 * n_ctx tokens. Turns weight
// repacking off for its own load (Model::set_repack) and leaves it off.
ImatrixSummary compute_imatrix(const std::string& model_path, const std::string& text_path, const std::string& out_path,
                               const ImatrixOptions& options, const std::function<void(int, int)>& on_chunk = {});

}  // namespace etna::eval
