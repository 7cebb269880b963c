// `etna convert HF_DIR OUT.gguf [--outtype f16|bf16|f32|q8_0]`: a Hugging Face safetensors
// checkpoint to GGUF, as llama.cpp's convert_hf_to_gguf.py writes it.
#include <cstdio>

#include "cli/command.h"
#include "etna/base/error.h"
#include "etna/hub/convert.h"

namespace etna::cli {
namespace {

struct ConvertArgs {
  std::string input, output, outtype = "f16", name;
  bool quiet = false;
};

CommandRegistrar reg(86, [](CLI::App& root) {
  auto a = std::make_shared<ConvertArgs>();
  auto* c = root.add_subcommand("convert", "Convert a Hugging Face checkpoint folder (safetensors, config.json, "
                                           "tokenizer) to GGUF, as llama.cpp's convert_hf_to_gguf.py does");
  c->add_option("input", a->input, "checkpoint folder (model.safetensors or shards + model.safetensors.index.json)")
      ->required()->check(CLI::ExistingDirectory);
  c->add_option("output", a->output, "output .gguf")->required();
  c->add_option("--outtype", a->outtype, "weight matrix type: f16, bf16, f32 or q8_0 (norms and biases stay f32)")
      ->capture_default_str();
  c->add_option("--name", a->name, "general.name (default: the folder's name)");
  c->add_flag("-q,--quiet", a->quiet, "no line per tensor");
  c->footer("Families: llama (incl. Llama 3 rope scaling), mistral, mixtral, qwen2, qwen3, qwen3moe, gemma2, gemma3, phi3, "
            "bert. Tokenizers: SentencePiece "
            "tokenizer.model, byte-level BPE or WordPiece tokenizer.json. The model card's license, license_name, "
            "license_link and base_model go to general.license* and general.base_model.*.");
  c->callback([a] {
    hub::ConvertOptions o;
    o.outtype = a->outtype;
    o.name = a->name;
    const bool quiet = a->quiet;
    const auto s = hub::convert_hf_model(a->input, a->output, o, [quiet](const hub::ConvertProgress& p) {
      if (!quiet) {
        std::printf("[%4zu/%4zu] %s\n", p.index + 1, p.total, p.name.c_str());
        std::fflush(stdout);
      }
    });
    std::printf("wrote %s (%s, %s): %zu tensors, %.2f MiB of tensor data\n", a->output.c_str(), s.architecture.c_str(),
                a->outtype.c_str(), s.tensors, static_cast<double>(s.bytes_out) / (1024.0 * 1024.0));
  });
});

}  // namespace
}  // namespace etna::cli
