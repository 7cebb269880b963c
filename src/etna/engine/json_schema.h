// JSON Schema -> GBNF (engine/grammar.h), for response_format json_schema, forced tool-call
// arguments and any API that asks for structured output. The grammar produces compact JSON
// (after '{', '[', ':' and ',' at most one space, or a newline and up to 16 spaces of indent).
//
// Supported keywords
//   type (a name or a list), enum, const, anyOf, oneOf (as anyOf: exclusivity is not enforced),
//   allOf with one schema, $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion allowed);
//   object: properties (generated in the schema's order), required, additionalProperties
//     (false, true or a schema; absent means allowed unless strict, as OpenAI's strict mode asks);
//   array: items, prefixItems, minItems, maxItems;
//   string: minLength, maxLength, format (date, time, date-time, uuid, email), pattern;
//   integer: minimum, maximum, exclusiveMinimum, exclusiveMaximum (exact digit-range grammars);
//   number: minimum / exclusiveMinimum of 0 (no minus sign); other bounds are refused.
//   Annotations (title, description, default, examples, $schema, $id, $comment, deprecated,
//   readOnly, writeOnly) are ignored.
// Numbers are bounded in size: at most 16 integer digits, 16 fraction digits, 3 exponent digits.
// pattern is a regular-expression subset matched against the whole string (leading ^ and trailing
// $ are accepted and implied): literals, escapes \d \w \s \D \W \S and escaped punctuation, '.',
// classes [...] / [^...] with ranges, groups (...) and (?:...), '|', and the quantifiers * + ?
// {m} {m,} {m,n} (a lazy '?' after a quantifier is accepted and means the same). Backreferences,
// lookaround, \b and anchors elsewhere are refused.
// Every other keyword is refused with etna::Error(unsupported) naming it and where it is.
// Bounds: schema nesting depth kMaxDepth, enum/const size kMaxEnumBytes, counts kMaxRepeat.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace etna::engine {

struct JsonSchemaOptions {
  bool strict = false;          // absent additionalProperties means false
  std::string root_name = "root";  // the start rule's name (to embed the rules in a larger grammar)
};

constexpr int kJsonSchemaMaxDepth = 64;
constexpr size_t kJsonSchemaMaxEnumBytes = size_t{1} << 18;

// A GBNF grammar (start rule "root") of the JSON texts valid under `schema`. Throws
// etna::Error(unsupported) "json_schema: the keyword 'K' is not supported (at #/path)",
// (invalid_argument) for malformed schemas, (limit) beyond the bounds above.
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options = {});

// A GBNF grammar of any JSON value (object_only: any JSON object), with the same whitespace and
// number bounds as the schema grammars.
std::string json_any_gbnf(bool object_only);

}  // namespace etna::engine
