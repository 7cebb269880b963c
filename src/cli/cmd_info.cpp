// `etna info MODEL.gguf [--tensors] [--json]`: what a GGUF file holds, without loading the model.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/info.h"
#include "cli/memory_report.h"
#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/hub/library.h"
#include "etna/hub/licence.h"
#include "etna/tensor/tensor.h"

namespace etna::cli {
namespace {

using json = nlohmann::ordered_json;  // metadata keeps the file order

constexpr size_t kMaxArrayItems = 8;     // longer metadata arrays are elided
constexpr size_t kMaxTextValueChars = 160;  // text output shortens long strings (chat templates)

std::string human_count(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1000000ull) return fmt::format("{:.2f} M", n / 1e6);
  if (n >= 1000ull) return fmt::format("{:.2f} K", n / 1e3);
  return std::to_string(n);
}

std::string human_bytes(uint64_t n) {
  if (n >= (1ull << 30)) return fmt::format("{:.2f} GiB", n / double(1ull << 30));
  if (n >= (1ull << 20)) return fmt::format("{:.2f} MiB", n / double(1ull << 20));
  if (n >= (1ull << 10)) return fmt::format("{:.2f} KiB", n / double(1ull << 10));
  return fmt::format("{} B", n);
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The value of `key` as JSON, or null when absent.
json meta(const gguf::GgufFile& f, const std::string& key) {
  const gguf::Value* v = f.find(key);
  return v ? json(v->to_json(kMaxArrayItems)) : json(nullptr);
}

std::string file_type_name(int64_t ft) { return hub::file_type_name(ft); }

json describe(const gguf::GgufFile& f, bool with_tensors) {
  const std::string arch = f.architecture();
  json out;
  out["path"] = f.path();
  out["file_size"] = f.file_size();
  out["gguf_version"] = f.version();
  out["architecture"] = arch;
  out["name"] = meta(f, "general.name");
  out["license"] = meta(f, "general.license");
  out["licence"] = json::parse(hub::licence_from_gguf(f).to_json().dump());
  const gguf::Value* ft = f.find("general.file_type");
  out["file_type"] = ft && ft->is_integer() ? json(file_type_name(ft->as_int())) : json(nullptr);

  uint64_t params = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> mix;  // type -> (tensors, bytes)
  for (const auto& t : f.tensors()) {
    params += t.n_elements;
    auto& m = mix[gguf::ggml_type_name(t.type)];
    m.first += 1;
    m.second += t.n_bytes;
  }
  out["parameters"] = params;
  out["tensor_count"] = f.tensors().size();
  json types = json::array();
  for (const auto& [name, m] : mix) types.push_back({{"type", name}, {"tensors", m.first}, {"bytes", m.second}});
  out["types"] = types;

  out["context_length"] = meta(f, arch + ".context_length");
  out["embedding_length"] = meta(f, arch + ".embedding_length");
  out["block_count"] = meta(f, arch + ".block_count");
  out["feed_forward_length"] = meta(f, arch + ".feed_forward_length");
  out["head_count"] = meta(f, arch + ".attention.head_count");
  out["head_count_kv"] = meta(f, arch + ".attention.head_count_kv");

  json tok;
  tok["model"] = meta(f, "tokenizer.ggml.model");
  tok["pre"] = meta(f, "tokenizer.ggml.pre");
  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  tok["vocab_size"] = tokens && tokens->type() == gguf::ValueType::ARRAY ? json(tokens->as_array().size()) : json(nullptr);
  out["tokenizer"] = tok;

  json md = json::object();
  for (const auto& [key, value] : f.metadata()) md[key] = json(value.to_json(kMaxArrayItems));
  out["metadata"] = md;

  if (with_tensors) {
    json ts = json::array();
    for (const auto& t : f.tensors())
      ts.push_back({{"name", t.name}, {"type", gguf::ggml_type_name(t.type)}, {"shape", t.dims}, {"bytes", t.n_bytes}});
    out["tensors"] = ts;
  }
  return out;
}

std::string text_of(const json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return j.get<std::string>();
  return dump(j);
}

void print_text(const json& d) {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    out += fmt::format("{:<18} {}\n", label, value);
  };
  line("file", d["path"].get<std::string>());
  line("size", fmt::format("{} ({} bytes), GGUF v{}", human_bytes(d["file_size"].get<uint64_t>()),
                           d["file_size"].get<uint64_t>(), d["gguf_version"].get<uint32_t>()));
  line("architecture", text_of(d["architecture"]));
  line("name", text_of(d["name"]));
  print_licence_lines(d["licence"], out);
  line("file type", text_of(d["file_type"]));
  line("parameters", fmt::format("{} ({})", human_count(d["parameters"].get<uint64_t>()), d["parameters"].get<uint64_t>()));
  line("context length", text_of(d["context_length"]));
  line("embedding", text_of(d["embedding_length"]));
  line("layers", text_of(d["block_count"]));
  line("feed-forward", text_of(d["feed_forward_length"]));
  line("heads", fmt::format("{} (kv {})", text_of(d["head_count"]), text_of(d["head_count_kv"])));
  line("tokenizer", fmt::format("{} (pre {}), {} tokens", text_of(d["tokenizer"]["model"]),
                                text_of(d["tokenizer"]["pre"]), text_of(d["tokenizer"]["vocab_size"])));
  out += fmt::format("tensors            {}\n", d["tensor_count"].get<size_t>());
  for (const auto& t : d["types"])
    out += fmt::format("  {:<8} {:>6} tensors {:>12}\n", t["type"].get<std::string>(), t["tensors"].get<uint64_t>(),
                       human_bytes(t["bytes"].get<uint64_t>()));
  out += "metadata\n";
  for (const auto& [key, value] : d["metadata"].items()) {
    std::string v = dump(value);
    if (v.size() > kMaxTextValueChars)
      v = fmt::format("{}... ({} chars)", v.substr(0, kMaxTextValueChars), v.size());
    out += fmt::format("  {} = {}\n", key, v);
  }
  if (d.contains("tensors")) {
    out += "tensor list\n";
    for (const auto& t : d["tensors"])
      out += fmt::format("  {:<40} {:<6} {:<24} {}\n", t["name"].get<std::string>(), t["type"].get<std::string>(),
                         dump(t["shape"]), t["bytes"].get<uint64_t>());
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

nlohmann::ordered_json describe_model_file(const std::string& path, bool with_tensors) {
  auto file = gguf::GgufFile::open(path);
  return describe(*file, with_tensors);
}

void print_model_description(const nlohmann::ordered_json& d) { print_text(d); }

void print_licence_lines(const nlohmann::ordered_json& l, std::string& out) {
  auto line = [&out](std::string_view label, const std::string& value) { out += fmt::format("{:<18} {}\n", label, value); };
  auto str = [&l](const char* k) { return l.contains(k) && l[k].is_string() ? l[k].get<std::string>() : std::string(); };
  line("licence", str("summary") + (str("source").empty() ? "" : " [from " + str("source") + "]"));
  if (!str("link").empty()) line("  link", str("link"));
  line("  weights", str("weights"));
  line("  training data", str("training_data"));
  line("  outputs", str("outputs"));
  line("  commercial use", str("commercial") + (str("clause").empty() ? "" : ": " + str("clause")));
  if (!str("attribution").empty()) line("  attribution", str("attribution"));
  if (l.contains("base_models") && l["base_models"].is_array() && !l["base_models"].empty()) {
    std::string b;
    for (const auto& x : l["base_models"]) b += (b.empty() ? "" : ", ") + x.get<std::string>();
    line("  base models", b);
  }
}

namespace {

CommandRegistrar reg(30, [](CLI::App& root) {
  auto* c = root.add_subcommand("info", "Describe a GGUF model file: architecture, size, quantisation, metadata");
  struct Opts {
    std::string path;
    bool tensors = false;
    bool json = false;
    bool memory = false;
    int ctx = 0;
    std::string cache_type = "f32";
    bool cpu = false;
  };
  auto o = std::make_shared<Opts>();
  c->add_option("model", o->path, "the .gguf file (optional with --cpu)");
  c->add_flag("--cpu", o->cpu, "describe this CPU: SIMD features, the kernel set in use, threads");
  c->add_flag("--tensors", o->tensors, "list every tensor (name, type, shape, bytes)");
  c->add_flag("--json", o->json, "print one JSON object instead of text");
  c->add_flag("--memory", o->memory, "estimate memory use: weights, KV cache per token and for --ctx, scratch, total");
  c->add_option("--ctx", o->ctx, "context size for --memory (default: the model's)");
  c->add_option("--cache-type", o->cache_type, "KV cache type for --memory: f32, f16 or q8_0")->capture_default_str();
  c->callback([o] {
    if (o->memory) {
      if (o->path.empty()) fail(ErrorKind::invalid_argument, "--memory needs a model file");
      print_memory_report(o->path, o->ctx, o->cache_type, o->json);
      return;
    }
    if (o->cpu) {
      const std::string kernels = tensor::active_kernels_name();
      if (o->json) {
        json j{{"cpu", base::cpu_features_string()}, {"kernels", kernels},
               {"physical_cores", base::physical_core_count()}, {"threads", tensor::num_threads()}};
        std::string s = dump(j) + "\n";
        std::fwrite(s.data(), 1, s.size(), stdout);
      } else {
        std::string s = fmt::format("cpu      {}\nkernels  {}\ncores    {}\nthreads  {}\n", base::cpu_features_string(),
                                    kernels, base::physical_core_count(), tensor::num_threads());
        std::fwrite(s.data(), 1, s.size(), stdout);
      }
      if (o->path.empty()) return;
    }
    if (o->path.empty()) fail(ErrorKind::invalid_argument, "info: give a model file (or --cpu)");
    auto file = gguf::GgufFile::open(o->path);
    json d = describe(*file, o->tensors);
    if (o->json) {
      std::string s = dump(d) + "\n";
      std::fwrite(s.data(), 1, s.size(), stdout);
    } else {
      print_text(d);
    }
  });
});

}  // namespace
}  // namespace etna::cli
