// The values a Jinja template computes with, modelled on the Python objects Jinja2 sees when
// Hugging Face renders a chat template: undefined, None, bool, int, float, str, list, dict and
// callables. Lists and dicts are shared by reference (as in Python), so namespace() attributes
// set inside a loop are visible after it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace etna::tokenizer::jinja {

class Value;
struct Object;
struct Function;
using Array = std::vector<Value>;
using ArrayPtr = std::shared_ptr<Array>;
using ObjectPtr = std::shared_ptr<Object>;
using FunctionPtr = std::shared_ptr<Function>;

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, array, object, function };

  Value() = default;  // undefined
  static Value none() { return Value(Data(nullptr)); }
  Value(bool b) : data_(b) {}                                  // NOLINT
  Value(int64_t i) : data_(i) {}                               // NOLINT
  Value(int i) : data_(int64_t{i}) {}                          // NOLINT
  Value(double d) : data_(d) {}                                // NOLINT
  Value(std::string s) : data_(std::move(s)) {}                // NOLINT
  Value(const char* s) : data_(std::string(s)) {}              // NOLINT
  Value(ArrayPtr a) : data_(std::move(a)) {}                   // NOLINT
  Value(ObjectPtr o) : data_(std::move(o)) {}                  // NOLINT
  Value(FunctionPtr f) : data_(std::move(f)) {}                // NOLINT
  static Value array(Array items = {}) { return Value(std::make_shared<Array>(std::move(items))); }
  static Value object();

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::undefined; }
  bool is_none() const { return kind() == Kind::none; }
  bool is_bool() const { return kind() == Kind::boolean; }
  bool is_int() const { return kind() == Kind::integer; }
  bool is_float() const { return kind() == Kind::floating; }
  bool is_number() const { return is_int() || is_float(); }  // int or float (not bool)
  bool is_string() const { return kind() == Kind::string; }
  bool is_array() const { return kind() == Kind::array; }
  bool is_object() const { return kind() == Kind::object; }
  bool is_function() const { return kind() == Kind::function; }

  // REQUIRES: the matching kind.
  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_float() const { return std::get<double>(data_); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const ArrayPtr& as_array() const { return std::get<ArrayPtr>(data_); }
  const ObjectPtr& as_object() const { return std::get<ObjectPtr>(data_); }
  const FunctionPtr& as_function() const { return std::get<FunctionPtr>(data_); }
  // Numeric value of an int, float or bool (as Python treats bool as int).
  double to_double() const;

  // Python truthiness: undefined, None, False, 0, 0.0, "" and empty containers are false.
  bool truthy() const;
  // The Python type name, for error messages ("str", "int", "list", "dict", "NoneType", ...).
  const char* type_name() const;

 private:
  using Data = std::variant<std::monostate, std::nullptr_t, bool, int64_t, double, std::string, ArrayPtr, ObjectPtr,
                            FunctionPtr>;
  explicit Value(Data d) : data_(std::move(d)) {}
  Data data_;
};

// A dict that keeps insertion order (as Python dicts do). Namespaces are dicts whose attributes
// may be assigned with `{% set ns.attr = ... %}`.
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  std::unordered_map<std::string, size_t> index;
  bool is_namespace = false;

  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

// Something callable: a macro, a builtin global, or a bound method such as "abc".upper.
struct Function {
  std::string name;
  std::function<Value(CallArgs&)> call;
};

// Converts JSON (either flavour) to a Value; depth-limited (throws etna::Error limit).
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

// Python str(): what {{ value }} prints. None prints "None", booleans "True"/"False", undefined "".
// Throws etna::Error (limit) for values nested deeper than a fixed bound (cyclic namespaces).
std::string to_str(const Value& v);
// Python repr(): strings quoted, used for elements inside printed lists and dicts.
std::string to_repr(const Value& v);
// Python json.dumps(v, ensure_ascii=False, indent=indent) as Hugging Face's tojson filter does;
// indent < 0 means single-line with ", " and ": " separators.
std::string to_json_text(const Value& v, int indent = -1, bool sort_keys = false);
// Python float repr: shortest round-trip digits, "1.0", "1e-05", "1.5e+16", "inf", "nan".
std::string float_repr(double d);

// Python ==, with int/float/bool comparing numerically. Depth-limited.
bool equals(const Value& a, const Value& b);
// Python <: numbers, strings (code point order), lists lexicographically. Throws etna::Error otherwise.
bool less_than(const Value& a, const Value& b);

// UTF-8 helpers: Python strings index code points, not bytes.
size_t utf8_length(std::string_view s);
// Byte offset of every code point start, plus s.size() at the end.
std::vector<size_t> utf8_offsets(std::string_view s);

}  // namespace etna::tokenizer::jinja
