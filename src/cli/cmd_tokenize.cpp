// `etna tokenize`: text -> token ids with a model's (or a vocabulary-only file's) tokenizer.
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/tokenizer/tokenizer.h"

namespace etna::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string file;
  std::vector<std::string> text;
  bool no_bos = false;
  bool pieces = false;
  bool parse_special = false;
};

std::string read_text_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::io, "{}: cannot open the text file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::io, "{}: read failed", path);
  return ss.str();
}

void run(const TokenizeArgs& a, bool text_given) {
  if (!a.file.empty() && text_given)
    fail(ErrorKind::invalid_argument, "give the text either as an argument or with --file, not both");
  if (a.file.empty() && !text_given)
    fail(ErrorKind::invalid_argument, "no text: give TEXT, `-- TEXT` (taken verbatim) or --file F");
  std::string text;
  if (!a.file.empty()) {
    text = read_text_file(a.file);
  } else {
    for (size_t i = 0; i < a.text.size(); ++i) text += (i ? " " : "") + a.text[i];
  }

  auto file = gguf::GgufFile::open(a.model);
  auto tok = tokenizer::Tokenizer::from_gguf(*file);
  tokenizer::EncodeOptions opt;
  opt.add_special = !a.no_bos;
  opt.parse_special = a.parse_special;
  const auto ids = tok->encode(text, opt);

  nlohmann::json out = nlohmann::json::array();
  for (auto id : ids) {
    if (a.pieces) out.push_back({id, tok->token_to_piece(id, true)});
    else out.push_back(id);
  }
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

CommandRegistrar reg(40, [](CLI::App& root) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* c = root.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  add_model_option(c, args->model, "GGUF model or vocabulary-only file")->required();
  add_library_option(c);
  c->add_flag("--no-bos", args->no_bos, "do not add BOS/EOS ([CLS]/[SEP]) tokens");
  c->add_flag("--pieces", args->pieces, "print [id, \"piece\"] pairs instead of bare ids");
  c->add_flag("--parse-special", args->parse_special, "turn control-token text such as <s> into its id");
  c->add_option("--file", args->file, "read the text from this file (verbatim; - for stdin)");
  auto* text_opt = c->add_option("text", args->text, "the text (after --, taken verbatim)");
  c->callback([args, text_opt] { run(*args, text_opt->count() > 0); });
});

}  // namespace
}  // namespace etna::cli
