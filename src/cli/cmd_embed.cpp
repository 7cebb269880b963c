// `etna embed`: one L2-normalised embedding per text, printed as one JSON array of vectors.
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/engine/embedder.h"

namespace etna::cli {
namespace {

struct EmbedArgs {
  std::string model;
  std::string file;
  std::vector<std::string> texts;
  bool truncate = false;
};

// The non-empty lines of `path` ("-": standard input), without their line endings.
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) fail(ErrorKind::io, "{}: cannot open the text file", path);
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  if (in.bad()) fail(ErrorKind::io, "{}: read failed", path);
  return lines;
}

void run(const EmbedArgs& a) {
  std::vector<std::string> texts = a.texts;
  if (!a.file.empty()) {
    std::vector<std::string> lines = read_lines(a.file);
    texts.insert(texts.end(), lines.begin(), lines.end());
  }
  if (texts.empty()) fail(ErrorKind::invalid_argument, "no text to embed: give TEXT arguments or --file");
  auto embedder = engine::Embedder::load(a.model);
  const std::vector<std::vector<float>> vectors = embedder->embed(texts, a.truncate);
  // Each float as the shortest text that reads back as the same f32 (JSON has no NaN: null).
  std::string out = "[";
  for (size_t i = 0; i < vectors.size(); ++i) {
    out += i ? ",[" : "[";
    for (size_t j = 0; j < vectors[i].size(); ++j) {
      if (j) out += ',';
      const float x = vectors[i][j];
      out += std::isfinite(x) ? fmt::format("{}", x) : std::string("null");
    }
    out += ']';
  }
  std::cout << out << "]\n";
}

CommandRegistrar reg(47, [](CLI::App& root) {
  auto args = std::make_shared<EmbedArgs>();
  auto* c = root.add_subcommand("embed", "Print the embedding of each text as one JSON array of vectors");
  add_model_option(c, args->model, "GGUF model (bert encoder, or a llama-family model: mean-pooled)")
      ->required();
  add_library_option(c);
  c->add_option("--file", args->file, "read more texts from this file, one per non-empty line ('-': stdin)");
  c->add_flag("--truncate", args->truncate, "cut texts longer than the model's limit instead of failing");
  c->add_option("texts", args->texts, "texts to embed (after those, the --file lines)");
  c->callback([args] { run(*args); });
});

}  // namespace
}  // namespace etna::cli
