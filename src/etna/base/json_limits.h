// Bounds for JSON that comes from outside (request bodies, saved files). nlohmann's parser is
// iterative, but everything that walks a parsed value afterwards (dump, payload flattening,
// filter parsing, our own tree walks) recurses once per nesting level, so a 200 KB body of
// nested arrays would overflow the stack. Text is checked here, before it is parsed.
#pragma once
#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

namespace etna {

// Default bound on the nesting of a request body or a stored document (objects + arrays).
inline constexpr std::size_t kMaxJsonDepth = 128;

// Deepest nesting of objects and arrays in `text` (brackets inside strings are ignored). Linear,
// allocation-free; malformed text gives some depth and is left for the parser to refuse.
std::size_t json_nesting_depth(std::string_view text);

// Parses `text` as JSON after checking its nesting: deeper than `max_depth` throws
// etna::Error(invalid_argument) "<what> nests deeper than N levels"; malformed text throws
// etna::Error(invalid_argument) naming the position.
nlohmann::json parse_json_bounded(std::string_view text, std::size_t max_depth, std::string_view what);

// Depth of an already-built value (iterative): for values not parsed from text.
std::size_t json_value_depth(const nlohmann::json& value);

}  // namespace etna
