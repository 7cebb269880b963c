// A GGUF metadata value: one of the twelve GGUF value types, arrays nested to any depth.
// Values remember their exact on-disk type so that a file written back is byte-identical.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace etna::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* value_type_name(ValueType t);

class Value {
 public:
  Value() : type_(ValueType::UINT8), data_(uint64_t{0}) {}
  static Value unsigned_int(ValueType t, uint64_t v) { return Value(t, v); }
  static Value signed_int(ValueType t, int64_t v) { return Value(t, v); }
  static Value floating(ValueType t, double v) { return Value(t, v); }
  static Value boolean(bool v) { return Value(ValueType::BOOL, v); }
  static Value string(std::string v) { return Value(ValueType::STRING, std::move(v)); }
  static Value array(ValueType element_type, std::vector<Value> items);

  ValueType type() const { return type_; }
  ValueType element_type() const { return element_type_; }  // REQUIRES: type() == ARRAY
  bool is_integer() const;
  bool is_float() const { return type_ == ValueType::FLOAT32 || type_ == ValueType::FLOAT64; }

  // Typed reads. Integers convert between widths (throwing if the value does not fit);
  // a mismatched type throws etna::Error naming the expected and actual type.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;  // integers convert too
  bool as_bool() const;
  const std::string& as_string() const;
  const std::vector<Value>& as_array() const;

  // JSON rendering for `etna info`; arrays longer than max_items are elided with a count.
  nlohmann::json to_json(size_t max_items = SIZE_MAX) const;

 private:
  using Data = std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<Value>>;
  Value(ValueType t, Data d) : type_(t), data_(std::move(d)) {}
  ValueType type_;
  ValueType element_type_ = ValueType::UINT8;
  Data data_;
};

}  // namespace etna::gguf
