#include "etna/engine/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "etna/base/error.h"
#include "etna/engine/grammar.h"

namespace etna::engine {

using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kPrimitives = R"(ws ::= ("\n" [ ]{0,16} | " ")?
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* ws )? "}"
array ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
char ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
string ::= "\"" char* "\""
int-digits ::= "0" | [1-9] [0-9]{0,15}
integer ::= "-"? int-digits
number ::= "-"? int-digits ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
boolean ::= "true" | "false"
null ::= "null"
)";

// GBNF literal for raw bytes.
std::string gbnf_literal(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += fmt::format("\\x{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string compact(const ojson& v) { return v.dump(-1, ' ', false, ojson::error_handler_t::strict); }

// Regex character (or class member) as a GBNF class item, escaping what GBNF classes need.
std::string class_item(uint32_t cp) {
  if (cp == ']' || cp == '[' || cp == '\\' || cp == '^' || cp == '-' || cp == '"') return std::string("\\") + static_cast<char>(cp);
  if (cp < 0x20 || cp == 0x7F) return fmt::format("\\x{:02X}", cp);
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// A JSON-string character (as the model writes it inside quotes) standing for code point cp.
std::string json_char_literal(uint32_t cp) {
  switch (cp) {
    case '"': return gbnf_literal("\\\"");
    case '\\': return gbnf_literal("\\\\");
    case '\n': return gbnf_literal("\\n");
    case '\t': return gbnf_literal("\\t");
    case '\r': return gbnf_literal("\\r");
    default: break;
  }
  if (cp < 0x20) return gbnf_literal(fmt::format("\\u{:04x}", cp));
  if (cp < 0x80) return gbnf_literal(std::string(1, static_cast<char>(cp)));
  return gbnf_literal(class_item(cp));
}

// Digit-range grammar for equal-length decimal strings a <= b.
std::string digit_range(const std::string& a, const std::string& b) {
  const size_t n = a.size();
  if (n == 0) return "\"\"";
  if (a == b) return gbnf_literal(a);
  if (a[0] == b[0]) return gbnf_literal(a.substr(0, 1)) + " (" + digit_range(a.substr(1), b.substr(1)) + ")";
  const std::string zeros(n - 1, '0'), nines(n - 1, '9');
  auto cls = [](char lo, char hi) { return lo == hi ? gbnf_literal(std::string(1, lo)) : fmt::format("[{}-{}]", lo, hi); };
  auto tail = [&](size_t k) { return k == 0 ? std::string() : fmt::format(" [0-9]{{{}}}", k); };
  if (a.substr(1) == zeros && b.substr(1) == nines) return cls(a[0], b[0]) + tail(n - 1);
  std::vector<std::string> alts;
  if (a.substr(1) == zeros)
    alts.push_back(cls(a[0], a[0]) + tail(n - 1));
  else
    alts.push_back(gbnf_literal(a.substr(0, 1)) + " (" + digit_range(a.substr(1), nines) + ")");
  if (b[0] - a[0] > 1) alts.push_back(cls(static_cast<char>(a[0] + 1), static_cast<char>(b[0] - 1)) + tail(n - 1));
  if (b.substr(1) == nines)
    alts.push_back(cls(b[0], b[0]) + tail(n - 1));
  else
    alts.push_back(gbnf_literal(b.substr(0, 1)) + " (" + digit_range(zeros, b.substr(1)) + ")");
  std::string out;
  for (const auto& x : alts) out += (out.empty() ? "" : " | ") + x;
  return "(" + out + ")";
}

constexpr int64_t kMaxDigitsValue = 9999999999999999LL;  // 16 digits, the integer grammar's bound

// Non-negative integers lo..hi (hi = -1: unbounded, up to 16 digits) without leading zeros.
std::string natural_range(int64_t lo, int64_t hi) {
  if (hi < 0) hi = kMaxDigitsValue;
  std::vector<std::string> alts;
  for (int d = 1; d <= 16; ++d) {
    const int64_t dlo = d == 1 ? 0 : static_cast<int64_t>(std::pow(10.0, d - 1));
    const int64_t dhi = static_cast<int64_t>(std::pow(10.0, d)) - 1;
    const int64_t a = std::max(lo, dlo), b = std::min(hi, dhi);
    if (a > b) continue;
    alts.push_back(digit_range(std::to_string(a), std::to_string(b)));
  }
  std::string out;
  for (const auto& x : alts) out += (out.empty() ? "" : " | ") + x;
  return out.empty() ? "" : "(" + out + ")";
}

class Compiler {
 public:
  Compiler(const ojson& root, JsonSchemaOptions options) : root_(root), options_(options) {}

  std::string compile() {
    const std::string root = visit(root_, "#", 0);
    std::string out = options_.root_name + " ::= " + root + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out + kPrimitives;
  }

 private:
  [[noreturn]] void unsupported(const std::string& keyword, const std::string& path, const std::string& why = "") {
    throw Error(ErrorKind::unsupported, fmt::format("json_schema: the keyword '{}' is not supported{} (at {})", keyword,
                                                    why.empty() ? "" : " " + why, path));
  }
  [[noreturn]] void invalid(const std::string& path, const std::string& what) {
    throw Error(ErrorKind::invalid_argument, fmt::format("json_schema: {} (at {})", what, path));
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    auto it = by_body_.find(body);
    if (it != by_body_.end()) return it->second;
    std::string name;
    for (char c : hint) name += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0]))) name = "s-" + name;
    name = fmt::format("{}-{}", name.substr(0, 40), rules_.size());
    rules_[name] = body;
    by_body_[body] = name;
    if (rules_.size() > 20000) throw Error(ErrorKind::limit, "json_schema: the schema needs more than 20000 grammar rules");
    return name;
  }

  uint64_t count_field(const ojson& s, const char* key, const std::string& path, uint64_t dflt) {
    auto it = s.find(key);
    if (it == s.end()) return dflt;
    if (!it->is_number_integer() || it->get<int64_t>() < 0) invalid(path, fmt::format("'{}' must be a non-negative integer", key));
    const auto v = it->get<uint64_t>();
    if (v > Grammar::kMaxRepeat)
      throw Error(ErrorKind::limit, fmt::format("json_schema: '{}' = {} is over the limit of {} (at {})", key, v, Grammar::kMaxRepeat, path));
    return v;
  }

  // Returns a grammar expression for values valid under `s`.
  std::string visit(const ojson& s, const std::string& path, int depth) {
    if (depth > kJsonSchemaMaxDepth)
      throw Error(ErrorKind::limit, fmt::format("json_schema: the schema nests deeper than {} (at {})", kJsonSchemaMaxDepth, path));
    if (s.is_boolean()) {
      if (s.get<bool>()) return "value";
      invalid(path, "the schema 'false' allows nothing");
    }
    if (!s.is_object()) invalid(path, "a schema must be an object or a boolean");

    static const std::set<std::string> kIgnored = {"title", "description", "default", "examples", "$schema", "$id",
                                                   "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
                                                   "strict"};
    static const std::set<std::string> kKnown = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties",
                                                 "required", "additionalProperties", "items", "prefixItems", "minItems",
                                                 "maxItems", "minLength", "maxLength", "format", "pattern", "minimum",
                                                 "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (const auto& [k, v] : s.items()) {
      if (kIgnored.count(k) || kKnown.count(k)) continue;
      if (k == "uniqueItems" && v == false) continue;
      unsupported(k, path);
    }

    if (auto it = s.find("$ref"); it != s.end()) {
      if (s.size() > 1) {
        for (const auto& [k, v] : s.items())
          if (k != "$ref" && !kIgnored.count(k)) unsupported(k, path, "next to $ref");
      }
      return ref(*it, path, depth);
    }
    if (auto it = s.find("const"); it != s.end()) {
      const std::string text = compact(*it);
      if (text.size() > kJsonSchemaMaxEnumBytes) throw Error(ErrorKind::limit, fmt::format("json_schema: const is too large (at {})", path));
      return gbnf_literal(text);
    }
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) invalid(path, "'enum' must be a non-empty array");
      std::string alts;
      size_t bytes = 0;
      for (const auto& v : *it) {
        const std::string text = compact(v);
        bytes += text.size() + 4;
        if (bytes > kJsonSchemaMaxEnumBytes || it->size() > 10000)
          throw Error(ErrorKind::limit, fmt::format("json_schema: the enum at {} has {} values, more than the limit allows ({} values or {} bytes)",
                                                    path, it->size(), 10000, kJsonSchemaMaxEnumBytes));
        alts += (alts.empty() ? "" : " | ") + gbnf_literal(text);
      }
      return add_rule("enum", alts);
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (auto it = s.find(key); it != s.end()) {
        if (!it->is_array() || it->empty()) invalid(path, fmt::format("'{}' must be a non-empty array", key));
        std::string alts;
        for (size_t i = 0; i < it->size(); ++i)
          alts += (alts.empty() ? "" : " | ") + visit((*it)[i], fmt::format("{}/{}/{}", path, key, i), depth + 1);
        return add_rule(key, alts);
      }
    }
    if (auto it = s.find("allOf"); it != s.end()) {
      if (!it->is_array() || it->size() != 1) unsupported("allOf", path, "with more than one schema");
      return visit((*it)[0], path + "/allOf/0", depth + 1);
    }

    std::vector<std::string> types;
    if (auto it = s.find("type"); it != s.end()) {
      if (it->is_string()) {
        types.push_back(it->get<std::string>());
      } else if (it->is_array()) {
        for (const auto& t : *it) {
          if (!t.is_string()) invalid(path, "'type' must be a string or an array of strings");
          types.push_back(t.get<std::string>());
        }
      } else {
        invalid(path, "'type' must be a string or an array of strings");
      }
    } else {
      // Infer from the keywords present, as validators apply them only to their type.
      if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) types.push_back("object");
      if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) types.push_back("array");
      if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern") || s.contains("format")) types.push_back("string");
      if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum"))
        types.push_back("number");
      if (types.empty()) return "value";
    }
    std::string alts;
    for (const auto& t : types) alts += (alts.empty() ? "" : " | ") + typed(s, t, path, depth);
    return types.size() == 1 ? alts : add_rule("types", alts);
  }

  std::string ref(const ojson& r, const std::string& path, int depth) {
    if (!r.is_string()) invalid(path, "'$ref' must be a string");
    const std::string target = r.get<std::string>();
    auto it = ref_rules_.find(target);
    if (it != ref_rules_.end()) return it->second;
    const ojson* node = nullptr;
    if (target == "#") {
      node = &root_;
    } else {
      for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
        const std::string p = prefix;
        if (target.compare(0, p.size(), p) != 0) continue;
        const std::string key = p.substr(2, p.size() - 3);
        std::string name = target.substr(p.size());
        // JSON pointer unescaping of the one level we support.
        for (size_t k; (k = name.find("~1")) != std::string::npos;) name.replace(k, 2, "/");
        for (size_t k; (k = name.find("~0")) != std::string::npos;) name.replace(k, 2, "~");
        auto defs = root_.find(key);
        if (defs != root_.end() && defs->is_object()) {
          auto d = defs->find(name);
          if (d != defs->end()) node = &*d;
        }
        if (!node) invalid(path, fmt::format("'$ref' points to '{}', which the schema does not define", target));
      }
    }
    if (!node) unsupported("$ref", path, fmt::format("to '{}' (only '#', '#/$defs/...' and '#/definitions/...')", target));
    // A named rule first, so recursive references resolve to it.
    std::string name;
    for (char c : target.substr(std::min<size_t>(target.size(), 2))) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    name = fmt::format("ref-{}-{}", name.substr(0, 40), ref_rules_.size());
    ref_rules_[target] = name;
    rules_[name] = "";  // reserved
    rules_[name] = visit(*node, target, depth + 1);
    return name;
  }

  std::string typed(const ojson& s, const std::string& type, const std::string& path, int depth) {
    if (type == "null") return "null";
    if (type == "boolean") return "boolean";
    if (type == "string") return string_rule(s, path);
    if (type == "integer") return integer_rule(s, path);
    if (type == "number") return number_rule(s, path);
    if (type == "array") return array_rule(s, path, depth);
    if (type == "object") return object_rule(s, path, depth);
    invalid(path, fmt::format("unknown type '{}'", type));
  }

  std::string string_rule(const ojson& s, const std::string& path) {
    const bool has_len = s.contains("minLength") || s.contains("maxLength");
    if (auto f = s.find("format"); f != s.end()) {
      if (!f->is_string()) invalid(path, "'format' must be a string");
      if (has_len || s.contains("pattern")) unsupported("format", path, "together with minLength, maxLength or pattern");
      return format_rule(f->get<std::string>(), path);
    }
    if (auto p = s.find("pattern"); p != s.end()) {
      if (!p->is_string()) invalid(path, "'pattern' must be a string");
      if (has_len) unsupported("pattern", path, "together with minLength or maxLength");
      return add_rule("pattern", "\"\\\"\" " + Regex(*this, p->get<std::string>(), path + "/pattern").compile() + " \"\\\"\"");
    }
    if (!has_len) return "string";
    const uint64_t lo = count_field(s, "minLength", path, 0);
    const uint64_t hi = count_field(s, "maxLength", path, UINT64_MAX);
    if (hi < lo) invalid(path, "maxLength is below minLength");
    const std::string rep = hi == UINT64_MAX ? fmt::format("{{{},}}", lo) : fmt::format("{{{},{}}}", lo, hi);
    return add_rule("string", "\"\\\"\" char" + rep + " \"\\\"\"");
  }

  std::string format_rule(const std::string& format, const std::string& path) {
    static const std::map<std::string, std::string> kFormats = {
        {"date", R"("\"" date "\"")"},
        {"time", R"("\"" time "\"")"},
        {"date-time", R"("\"" date "T" time "\"")"},
        {"uuid", R"("\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\"")"},
        {"email", R"("\"" email-local "@" email-label ("." email-label){1,3} "\"")"},
    };
    auto it = kFormats.find(format);
    if (it == kFormats.end()) unsupported("format", path, fmt::format("with the value '{}' (date, time, date-time, uuid, email)", format));
    if (format == "date" || format == "date-time") {
      rules_["date"] = R"([0-9]{4} "-" ( ("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02" "-" ("0" [1-9] | "1" [0-9] | "2" [0-8]) ))";
    }
    if (format == "time" || format == "date-time")
      rules_["time"] = R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))";
    if (format == "email") {
      rules_["email-local"] = R"([a-zA-Z0-9_+-]{1,32} ("." [a-zA-Z0-9_+-]{1,32}){0,3})";
      rules_["email-label"] = R"([a-zA-Z0-9] ([a-zA-Z0-9-]{0,30} [a-zA-Z0-9])?)";
    }
    return add_rule(format, it->second);
  }

  std::optional<int64_t> int_bound(const ojson& s, const char* key, const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return std::nullopt;
    if (!it->is_number()) invalid(path, fmt::format("'{}' must be a number", key));
    const double v = it->get<double>();
    if (std::fabs(v) > static_cast<double>(kMaxDigitsValue)) unsupported(key, path, "beyond 16 digits");
    return static_cast<int64_t>(v);
  }

  std::string integer_rule(const ojson& s, const std::string& path) {
    std::optional<int64_t> lo, hi;
    if (auto it = s.find("minimum"); it != s.end()) {
      lo = int_bound(s, "minimum", path);
      if (static_cast<double>(*lo) < it->get<double>()) ++*lo;  // a fractional minimum rounds up
    }
    if (auto it = s.find("exclusiveMinimum"); it != s.end()) {
      int64_t v = *int_bound(s, "exclusiveMinimum", path);
      v = static_cast<double>(v) <= it->get<double>() ? v + 1 : v;
      lo = lo ? std::max(*lo, v) : v;
    }
    if (auto it = s.find("maximum"); it != s.end()) {
      hi = int_bound(s, "maximum", path);
      if (static_cast<double>(*hi) > it->get<double>()) --*hi;
    }
    if (auto it = s.find("exclusiveMaximum"); it != s.end()) {
      int64_t v = *int_bound(s, "exclusiveMaximum", path);
      v = static_cast<double>(v) >= it->get<double>() ? v - 1 : v;
      hi = hi ? std::min(*hi, v) : v;
    }
    if (!lo && !hi) return "integer";
    if (lo && hi && *lo > *hi) invalid(path, "the integer bounds leave no value");
    std::vector<std::string> alts;
    // Negative part: -(max(1, -hi) .. -lo).
    const int64_t neg_hi = lo ? -*lo : kMaxDigitsValue;  // largest magnitude
    const int64_t neg_lo = hi ? std::max<int64_t>(1, -*hi) : 1;
    if ((!lo || *lo < 0) && neg_lo <= neg_hi) alts.push_back("\"-\" " + natural_range(neg_lo, neg_hi));
    const int64_t pos_lo = lo ? std::max<int64_t>(0, *lo) : 0;
    const int64_t pos_hi = hi ? *hi : -1;
    if (!hi || *hi >= 0) {
      if (pos_hi < 0 || pos_lo <= pos_hi) alts.push_back(natural_range(pos_lo, pos_hi));
    }
    std::string body;
    for (const auto& a : alts) body += (body.empty() ? "" : " | ") + a;
    return add_rule("integer", body);
  }

  std::string number_rule(const ojson& s, const std::string& path) {
    for (const char* key : {"maximum", "exclusiveMaximum"})
      if (s.contains(key)) unsupported(key, path, "on a 'number' (only on 'integer')");
    bool non_negative = false;
    for (const char* key : {"minimum", "exclusiveMinimum"}) {
      auto it = s.find(key);
      if (it == s.end()) continue;
      if (!it->is_number() || it->get<double>() != 0.0) unsupported(key, path, "on a 'number' other than 0 (use 'integer' for other bounds)");
      non_negative = true;
    }
    if (!non_negative) return "number";
    if (s.contains("exclusiveMinimum"))
      return add_rule("positive", R"(( "0" "." [0-9]{0,15} [1-9] | [1-9] [0-9]{0,15} ( "." [0-9]{1,16} )? ) ( [eE] [-+]? [0-9]{1,3} )?)");
    return add_rule("non-negative", R"(int-digits ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?)");
  }

  std::string array_rule(const ojson& s, const std::string& path, int depth) {
    const uint64_t lo = count_field(s, "minItems", path, 0);
    const uint64_t hi = count_field(s, "maxItems", path, UINT64_MAX);
    if (hi < lo) invalid(path, "maxItems is below minItems");
    std::vector<std::string> prefix;
    if (auto p = s.find("prefixItems"); p != s.end()) {
      if (!p->is_array()) invalid(path, "'prefixItems' must be an array");
      for (size_t i = 0; i < p->size(); ++i) prefix.push_back(visit((*p)[i], fmt::format("{}/prefixItems/{}", path, i), depth + 1));
    }
    std::string item = "value";
    bool extra_allowed = true;
    if (auto it = s.find("items"); it != s.end()) {
      if (it->is_boolean() && !it->get<bool>())
        extra_allowed = false;
      else
        item = visit(*it, path + "/items", depth + 1);
    }
    if (prefix.empty()) {
      if (hi == 0) return add_rule("array", R"("[" ws "]")");
      std::string more;
      const uint64_t rest_lo = lo == 0 ? 0 : lo - 1;
      if (hi == UINT64_MAX)
        more = fmt::format("( ws \",\" ws {} ){{{},}}", item, rest_lo);
      else
        more = fmt::format("( ws \",\" ws {} ){{{},{}}}", item, rest_lo, hi - 1);
      std::string body = item + " " + more + " ws";
      if (lo == 0) body = "( " + body + " )?";
      return add_rule("array", "\"[\" ws " + body + " \"]\"");
    }
    // Tuple: the prefix in order (items beyond minItems optional), then `items` if allowed.
    const size_t n = prefix.size();
    if (lo > n && !extra_allowed) invalid(path, "minItems is larger than the tuple allows");
    // Build from the end: tail_i = "," ws p_i tail_{i+1}, optional when i >= lo.
    std::string tail;
    if (extra_allowed && hi > n) {
      const uint64_t extra_lo = lo > n ? lo - n : 0;
      tail = hi == UINT64_MAX ? fmt::format("( ws \",\" ws {} ){{{},}}", item, extra_lo)
                              : fmt::format("( ws \",\" ws {} ){{{},{}}}", item, extra_lo, hi - n);
    }
    const size_t count = std::min<uint64_t>(n, hi);
    for (size_t i = count; i-- > 1;) {
      std::string part = "ws \",\" ws " + prefix[i] + (tail.empty() ? "" : " " + tail);
      tail = i >= lo ? "( " + part + " )?" : part;
    }
    std::string body = prefix[0] + (tail.empty() ? "" : " " + tail) + " ws";
    if (lo == 0) body = "( " + body + " )?";
    return add_rule("tuple", "\"[\" ws " + body + " \"]\"");
  }

  std::string object_rule(const ojson& s, const std::string& path, int depth) {
    struct Prop {
      std::string kv;
      bool required;
    };
    std::vector<Prop> props;
    std::set<std::string> names;
    std::set<std::string> required;
    if (auto r = s.find("required"); r != s.end()) {
      if (!r->is_array()) invalid(path, "'required' must be an array of strings");
      for (const auto& x : *r) {
        if (!x.is_string()) invalid(path, "'required' must be an array of strings");
        required.insert(x.get<std::string>());
      }
    }
    if (auto p = s.find("properties"); p != s.end()) {
      if (!p->is_object()) invalid(path, "'properties' must be an object");
      if (p->size() > 1000) throw Error(ErrorKind::limit, fmt::format("json_schema: more than 1000 properties (at {})", path));
      for (const auto& [name, sub] : p->items()) {
        const std::string key = gbnf_literal(compact(ojson(name)));
        const std::string v = visit(sub, path + "/properties/" + name, depth + 1);
        props.push_back({key + " ws \":\" ws " + v, required.count(name) > 0});
        names.insert(name);
      }
    }
    for (const auto& r : required)
      if (!names.count(r)) {
        if (options_.strict) invalid(path, fmt::format("'{}' is required but not among the properties", r));
        props.push_back({gbnf_literal(compact(ojson(r))) + " ws \":\" ws value", true});
      }
    std::string extra;  // grammar of one additional member, "" when none are allowed
    if (auto a = s.find("additionalProperties"); a != s.end()) {
      if (a->is_boolean()) {
        if (a->get<bool>()) extra = "string ws \":\" ws value";
      } else {
        extra = "string ws \":\" ws " + visit(*a, path + "/additionalProperties", depth + 1);
      }
    } else if (!options_.strict) {
      extra = "string ws \":\" ws value";
    }
    if (!extra.empty()) extra = add_rule("member", extra);
    // first_i: members i.. with nothing written yet; next_i: with a member already written.
    std::string first = extra.empty() ? "" : fmt::format("( {} ( ws \",\" ws {} )* )?", extra, extra);
    std::string next = extra.empty() ? "" : fmt::format("( ws \",\" ws {} )*", extra);
    for (size_t i = props.size(); i-- > 0;) {
      const std::string kv = add_rule("kv", props[i].kv);
      const std::string after = next.empty() ? kv : kv + " " + next;
      std::string nfirst = props[i].required ? after : "( " + after + " )" + (first.empty() ? "?" : " | " + first);
      std::string nnext = props[i].required ? "ws \",\" ws " + after : "( ws \",\" ws " + after + " )" + (next.empty() ? "?" : " | " + next);
      if (!props[i].required && !first.empty()) nfirst = "( " + nfirst + " )";
      if (!props[i].required && !next.empty()) nnext = "( " + nnext + " )";
      first = add_rule("props", nfirst);
      next = add_rule("props", nnext);
    }
    if (first.empty()) return add_rule("object", R"("{" ws "}")");
    // When every member is optional, first may be empty: "{" ws "}" then.
    return add_rule("object", "\"{\" ws " + first + " ws \"}\"");
  }

  // ---- pattern: a regular-expression subset -> GBNF over the JSON-escaped string ----
  class Regex {
   public:
    Regex(Compiler& c, const std::string& re, std::string path) : c_(c), re_(re), path_(std::move(path)) {}
    std::string compile() {
      if (!re_.empty() && re_[0] == '^') ++pos_;
      std::string end_anchor_free = re_;
      size_t end = re_.size();
      if (end > pos_ && re_[end - 1] == '$' && (end < 2 || re_[end - 2] != '\\')) --end;
      end_ = end;
      std::string out = alternatives(0);
      if (pos_ != end_) bad(fmt::format("unexpected '{}'", re_[pos_]));
      return "(" + out + ")";
    }

   private:
    [[noreturn]] void bad(const std::string& what) {
      c_.unsupported("pattern", path_, fmt::format("as written: {} at offset {} of '{}'", what, pos_, re_));
    }
    bool more() const { return pos_ < end_; }
    char peek() const { return more() ? re_[pos_] : '\0'; }

    std::string alternatives(int depth) {
      if (depth > 32) bad("groups nest too deeply");
      std::string out = sequence(depth);
      while (more() && peek() == '|') {
        ++pos_;
        out += " | " + sequence(depth);
      }
      return out;
    }
    std::string sequence(int depth) {
      std::string out;
      while (more() && peek() != '|' && peek() != ')') {
        std::string atom = this->atom(depth);
        if (more()) {
          const char q = peek();
          if (q == '*' || q == '+' || q == '?') {
            ++pos_;
            atom = "(" + atom + ")" + std::string(1, q);
            if (peek() == '?') ++pos_;  // lazy: same language
          } else if (q == '{') {
            const size_t close = re_.find('}', pos_);
            if (close == std::string::npos || close >= end_) bad("an unclosed '{'");
            const std::string body = re_.substr(pos_ + 1, close - pos_ - 1);
            for (char ch : body)
              if (!(std::isdigit(static_cast<unsigned char>(ch)) || ch == ',')) bad("a malformed {m,n}");
            pos_ = close + 1;
            atom = "(" + atom + "){" + body + "}";
            if (peek() == '?') ++pos_;
          }
        }
        out += (out.empty() ? "" : " ") + atom;
      }
      return out.empty() ? "\"\"" : out;
    }
    std::string atom(int depth) {
      const char ch = peek();
      if (ch == '(') {
        ++pos_;
        if (peek() == '?') {
          if (pos_ + 1 < end_ && re_[pos_ + 1] == ':')
            pos_ += 2;
          else
            bad("lookaround and named groups");
        }
        std::string inner = alternatives(depth + 1);
        if (peek() != ')') bad("an unclosed '('");
        ++pos_;
        return "(" + inner + ")";
      }
      if (ch == '[') return char_class();
      if (ch == '.') {
        ++pos_;
        return "char";
      }
      if (ch == '^' || ch == '$') bad("an anchor inside the pattern");
      if (ch == '*' || ch == '+' || ch == '?' || ch == '{') bad("a quantifier with nothing before it");
      if (ch == '\\') {
        ++pos_;
        const char e = peek();
        ++pos_;
        switch (e) {
          case 'd': return "[0-9]";
          case 'D': return "[^0-9\"\\\\\\x00-\\x1f]";
          case 'w': return "[a-zA-Z0-9_]";
          case 'W': return "[^a-zA-Z0-9_\"\\\\\\x00-\\x1f]";
          case 's': return "(\" \" | \"\\\\t\" | \"\\\\n\" | \"\\\\r\")";
          case 'S': return "[^ \"\\\\\\x00-\\x1f]";
          case 'n': return json_char_literal('\n');
          case 't': return json_char_literal('\t');
          case 'r': return json_char_literal('\r');
          case 'b': case 'B': bad("word boundaries");
          default:
            if (std::isalnum(static_cast<unsigned char>(e)) || e == '\0') bad(fmt::format("the escape '\\{}'", e));
            return json_char_literal(static_cast<unsigned char>(e));
        }
      }
      return literal_char();
    }
    uint32_t code_point() {
      const auto b0 = static_cast<unsigned char>(re_[pos_]);
      int n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
      if (n == 0 || pos_ + static_cast<size_t>(n) > end_) bad("invalid UTF-8");
      uint32_t cp = n == 1 ? b0 : b0 & (0x7F >> n);
      for (int i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(re_[pos_ + static_cast<size_t>(i)]) & 0x3F);
      pos_ += static_cast<size_t>(n);
      return cp;
    }
    std::string literal_char() { return json_char_literal(code_point()); }
    std::string char_class() {
      ++pos_;
      bool negated = false;
      if (peek() == '^') {
        negated = true;
        ++pos_;
      }
      std::string items;
      bool first = true;
      while (more() && (peek() != ']' || first)) {
        first = false;
        auto one = [&]() -> std::string {
          if (peek() == '\\') {
            ++pos_;
            const char e = peek();
            ++pos_;
            if (e == 'd') return "0-9";
            if (e == 'w') return "a-zA-Z0-9_";
            if (e == 's') return " ";
            if (e == 'n' || e == 't' || e == 'r') bad("control characters inside a class");
            if (std::isalnum(static_cast<unsigned char>(e))) bad(fmt::format("the escape '\\{}' inside a class", e));
            return class_item(static_cast<unsigned char>(e));
          }
          const uint32_t cp = code_point();
          if (cp == '"' || cp == '\\') bad("a quote or backslash inside a class");
          return class_item(cp);
        };
        std::string lo = one();
        if (peek() == '-' && pos_ + 1 < end_ && re_[pos_ + 1] != ']') {
          ++pos_;
          lo += "-" + one();
        }
        items += lo;
      }
      if (peek() != ']') bad("an unclosed '['");
      ++pos_;
      if (negated) return "[^" + items + "\\\"\\\\\\x00-\\x1f]";
      return "[" + items + "]";
    }

    Compiler& c_;
    std::string re_;
    std::string path_;
    size_t pos_ = 0, end_ = 0;
  };

  const ojson& root_;
  JsonSchemaOptions options_;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> by_body_;
  std::map<std::string, std::string> ref_rules_;
};

}  // namespace

std::string json_schema_to_gbnf(const ojson& schema, const JsonSchemaOptions& options) {
  return Compiler(schema, options).compile();
}

std::string json_any_gbnf(bool object_only) {
  return std::string(object_only ? "root ::= object\n" : "root ::= value\n") + kPrimitives;
}

}  // namespace etna::engine
