// `etna quantize IN.gguf OUT.gguf TYPE`: llama.cpp-compatible model quantisation.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/hub/quantize.h"
#include "etna/tensor/quantize.h"

namespace etna::cli {
namespace {

struct QuantizeArgs {
  std::string input, output, type;
  int threads = 0;
  std::vector<std::string> tensor_types;
  std::string output_tensor_type, token_embedding_type, imatrix;
  bool leave_output = false, pure = false, allow_requantize = false, dry_run = false, quiet = false;
};

gguf::GgmlType parse_tensor_type(const std::string& flag, const std::string& name) {
  const auto t = gguf::ggml_type_from_name(name);
  if (!t || !tensor::can_quantize_for_file(*t))
    fail(ErrorKind::invalid_argument, "{} '{}': unknown or unsupported tensor type (use f32, f16, bf16, q4_0, q4_1, "
         "q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs or iq3_s)", flag, name);
  return *t;
}

std::string shape(const std::vector<uint64_t>& dims) {
  std::string s;
  for (auto d : dims) s += (s.empty() ? "" : " x ") + std::to_string(d);
  return s;
}

double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

void print_tensor_line(const hub::TensorPlan& p, size_t index, size_t total) {
  const std::string from = gguf::ggml_type_name(p.from), to = gguf::ggml_type_name(p.to);
  if (p.from == p.to)
    std::printf("[%4zu/%4zu] %-36s %-14s %6s  %9.3f MiB (copied)\n", index + 1, total, p.name.c_str(),
                shape(p.dims).c_str(), from.c_str(), mib(p.bytes_in));
  else
    std::printf("[%4zu/%4zu] %-36s %-14s %6s -> %-6s %9.3f MiB -> %9.3f MiB%s\n", index + 1, total, p.name.c_str(),
                shape(p.dims).c_str(), from.c_str(), to.c_str(), mib(p.bytes_in), mib(p.bytes_out),
                p.fallback ? " (fallback: rows do not fit the mix's type)" : "");
  std::fflush(stdout);
}

std::string types_help() {
  std::string s = "TYPE is one of (llama.cpp's file types; the output matches llama-quantize's byte for byte):\n";
  for (const auto& ft : hub::quant_file_types())
    s += "  " + std::string(ft.name) + std::string(8 - std::min<size_t>(8, ft.name.size()), ' ') +
         std::string(ft.description) + "\n";
  s += "Q3_K, Q4_K and Q5_K mean the _M mixes. Licence and base-model keys (general.license*, "
       "general.base_model.*) are carried into the output.";
  return s;
}

CommandRegistrar reg(85, [](CLI::App& root) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* c = root.add_subcommand("quantize", "Quantise a GGUF model (F32/F16/BF16 weights) to Q4_0 .. Q8_0, "
                                            "the K-quant mixes Q2_K .. Q6_K, IQ4_NL, IQ4_XS, IQ3_M, F16 or BF16, as llama.cpp does");
  c->add_option("input", a->input, "source .gguf (F32, F16 or BF16 weights)")->required()->check(CLI::ExistingFile);
  c->add_option("output", a->output, "output .gguf")->required();
  c->add_option("type", a->type, "file type, e.g. Q4_K_M (see below)")->required();
  c->add_option("-t,--threads", a->threads, "threads (default: all hardware threads)");
  c->add_option("--tensor-type", a->tensor_types,
                "PATTERN=TYPE: tensors whose name matches the regex PATTERN get TYPE (repeatable; first match wins), "
                "e.g. --tensor-type attn_v=q8_0 --tensor-type 'blk\\.1\\..*'=q6_k");
  c->add_option("--output-tensor-type", a->output_tensor_type, "type of output.weight (and of a tied token_embd)");
  c->add_option("--token-embedding-type", a->token_embedding_type, "type of token_embd.weight");
  c->add_flag("--leave-output-tensor", a->leave_output, "copy output.weight unchanged");
  c->add_flag("--pure", a->pure, "no per-tensor mix: every weight matrix gets TYPE's base type");
  c->add_flag("--allow-requantize", a->allow_requantize,
              "accept already-quantised tensors (decoded, then quantised again: quality suffers)");
  c->add_option("--imatrix", a->imatrix,
                "importance matrix (etna imatrix / llama-imatrix GGUF) weighting the K-quant and IQ encoders")
      ->check(CLI::ExistingFile);
  c->add_flag("--dry-run", a->dry_run, "print the per-tensor types and sizes, write nothing");
  c->add_flag("-q,--quiet", a->quiet, "no line per tensor");
  c->footer(types_help());
  c->callback([a] {
    hub::QuantizeOptions o;
    o.file_type = a->type;
    o.threads = a->threads > 0 ? a->threads : default_threads();
    for (const auto& spec : a->tensor_types) o.tensor_types.push_back(hub::parse_tensor_type_override(spec));
    if (!a->output_tensor_type.empty()) o.output_tensor_type = parse_tensor_type("--output-tensor-type", a->output_tensor_type);
    if (!a->token_embedding_type.empty())
      o.token_embedding_type = parse_tensor_type("--token-embedding-type", a->token_embedding_type);
    o.leave_output_tensor = a->leave_output;
    o.pure = a->pure;
    o.allow_requantize = a->allow_requantize;
    o.imatrix = a->imatrix;
    if (!hub::find_quant_file_type(o.file_type)) {
      std::string names;
      for (const auto& ft : hub::quant_file_types()) names += (names.empty() ? "" : ", ") + std::string(ft.name);
      fail(ErrorKind::invalid_argument, "unknown quantisation type '{}' (choose one of: {})", o.file_type, names);
    }
    if (a->dry_run) {
      auto in = gguf::GgufFile::open(a->input);
      const auto plan = hub::plan_quantization(*in, o);
      uint64_t bytes_in = 0, bytes_out = 0;
      for (size_t i = 0; i < plan.size(); ++i) {
        print_tensor_line(plan[i], i, plan.size());
        bytes_in += plan[i].bytes_in;
        bytes_out += plan[i].bytes_out;
      }
      std::printf("dry run: %.2f MiB -> %.2f MiB of tensor data; nothing written\n", mib(bytes_in), mib(bytes_out));
      return;
    }
    const bool quiet = a->quiet;
    const auto summary = hub::quantize_model(a->input, a->output, o, [quiet](const hub::QuantizeProgress& p) {
      if (!quiet) print_tensor_line(p.tensor, p.index, p.total);
    });
    std::printf("wrote %s (%s): %zu tensors, %zu quantised%s, %.2f MiB -> %.2f MiB of tensor data\n",
                a->output.c_str(), hub::find_quant_file_type(o.file_type)->name.data(), summary.tensors,
                summary.quantized,
                summary.fallbacks ? fmt::format(" ({} with a fallback type)", summary.fallbacks).c_str() : "",
                mib(summary.bytes_in), mib(summary.bytes_out));
  });
});

}  // namespace
}  // namespace etna::cli
