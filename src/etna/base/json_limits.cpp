#include "etna/base/json_limits.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "etna/base/error.h"

namespace etna {

std::size_t json_nesting_depth(std::string_view text) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{': deepest = std::max(deepest, ++depth); break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default: break;
    }
  }
  return deepest;
}

nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth, std::string_view what) {
  if (json_nesting_depth(text) > max_depth)
    fail(ErrorKind::invalid_argument, "{} nests deeper than {} levels of objects and arrays (the limit)", what, max_depth);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // parse_error, or out_of_range for a number too large for a double (1E400).
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 1, ..."
    std::string message = e.what();
    auto pos = message.find("] ");
    if (pos != std::string::npos) message = message.substr(pos + 2);
    fail(ErrorKind::invalid_argument, "malformed JSON in {}: {}", what, message);
  }
}

std::size_t json_value_depth(const nlohmann::json& value) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> todo{{&value, 0}};
  while (!todo.empty()) {
    auto [v, d] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *v) todo.emplace_back(&child, d + 1);
  }
  return deepest;
}

}  // namespace etna
