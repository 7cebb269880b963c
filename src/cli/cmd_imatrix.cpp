// `etna imatrix -m MODEL -f TEXT -o imatrix.gguf`: an importance matrix for
// `etna quantize --imatrix` (the method is in src/etna/eval/imatrix.h).
#include <cstdio>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/eval/imatrix.h"
#include "etna/tensor/tensor.h"

namespace etna::cli {
namespace {

struct ImatrixArgs {
  std::string model, file, out = "imatrix.gguf";
  int ctx = 512, chunks = 0, threads = 0;
  bool quiet = false;
};

CommandRegistrar reg(84, [](CLI::App& root) {
  auto a = std::make_shared<ImatrixArgs>();
  auto* c = root.add_subcommand("imatrix", "Compute an importance matrix (mean squared activations per weight column) "
                                           "over a text, for quantize --imatrix");
  add_model_option(c, a->model, "GGUF model (best the F32/F16 one to be quantised)")->required();
  c->add_option("-f,--file", a->file, "calibration text")->required()->check(CLI::ExistingFile);
  c->add_option("-o,--output", a->out, "output file (GGUF, llama-imatrix's format)")->capture_default_str();
  c->add_option("-c,--ctx", a->ctx, "tokens per chunk")->capture_default_str();
  c->add_option("--chunks", a->chunks, "at most this many chunks (default: all)");
  c->add_option("-t,--threads", a->threads, "threads (default: physical cores)");
  c->add_flag("-q,--quiet", a->quiet, "no progress lines");
  c->callback([a] {
    if (a->threads < 0) fail(ErrorKind::invalid_argument, "--threads cannot be negative");
    if (a->chunks < 0) fail(ErrorKind::invalid_argument, "--chunks cannot be negative");
    tensor::set_num_threads(a->threads);
    eval::ImatrixOptions o;
    o.n_ctx = a->ctx;
    o.max_chunks = a->chunks;
    const bool quiet = a->quiet;
    const auto s = eval::compute_imatrix(a->model, a->file, a->out, o, [quiet](int done, int total) {
      if (!quiet) std::fprintf(stderr, "imatrix: chunk %d/%d\n", done, total);
    });
    std::printf("wrote %s: %zu matrices over %d chunks of %d tokens (perplexity %.4f)\n", a->out.c_str(), s.entries,
                s.chunks, a->ctx, s.ppl);
  });
});

}  // namespace
}  // namespace etna::cli
