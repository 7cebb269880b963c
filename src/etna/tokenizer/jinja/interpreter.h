// Renders a parsed Jinja template: statements, expressions, the filters, tests, string and dict
// methods, and the globals (range, namespace, dict, raise_exception, strftime_now) that chat
// templates use. Every render is bounded: output and string sizes, list lengths, evaluation
// steps, recursion depth and macro call depth are limited, so hostile templates fail with an
// etna::Error instead of crashing or hanging.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "etna/tokenizer/jinja/parser.h"
#include "etna/tokenizer/jinja/value.h"

namespace etna::tokenizer::jinja {

struct Limits {
  size_t max_output = size_t{16} << 20;  // bytes of rendered text (and of any one string)
  size_t max_list = size_t{1} << 20;     // elements in a list built by the template (range, *, +)
  uint64_t max_steps = 2'000'000;        // expression evaluations + statements + loop iterations
  int max_call_depth = 64;               // nested macro calls
  int max_depth = 400;                   // nested evaluation (bounds native stack use)
};

struct RenderOptions {
  Limits limits;
  // strftime_now() formats this Unix time (UTC) instead of the local clock, for reproducible output.
  std::optional<int64_t> now_unix;
};

class Template {
 public:
  // Parses `source`. Throws etna::Error "chat template syntax error at line L, column C: ...".
  explicit Template(std::string_view source);

  // Renders with `context` (a dict) as the global variables. raise_exception(msg) throws
  // etna::Error(invalid_argument, msg); other failures throw etna::Error naming the line.
  std::string render(const Value& context, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const Body> body_;
};

}  // namespace etna::tokenizer::jinja
