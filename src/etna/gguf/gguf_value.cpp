#include "etna/gguf/gguf_value.h"

#include <limits>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"

namespace etna::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "uint8";
    case ValueType::INT8: return "int8";
    case ValueType::UINT16: return "uint16";
    case ValueType::INT16: return "int16";
    case ValueType::UINT32: return "uint32";
    case ValueType::INT32: return "int32";
    case ValueType::FLOAT32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "uint64";
    case ValueType::INT64: return "int64";
    case ValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

Value Value::array(ValueType element_type, std::vector<Value> items) {
  Value v(ValueType::ARRAY, std::move(items));
  v.element_type_ = element_type;
  return v;
}

bool Value::is_integer() const {
  return std::holds_alternative<uint64_t>(data_) || std::holds_alternative<int64_t>(data_);
}

int64_t Value::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&data_)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(ErrorKind::corrupt, "integer value {} is too large", *u);
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&data_)) return *i;
  fail(ErrorKind::corrupt, "expected an integer value, found {}", value_type_name(type_));
}

uint64_t Value::as_uint() const {
  if (auto* u = std::get_if<uint64_t>(&data_)) return *u;
  if (auto* i = std::get_if<int64_t>(&data_)) {
    if (*i < 0) fail(ErrorKind::corrupt, "expected a non-negative integer, found {}", *i);
    return static_cast<uint64_t>(*i);
  }
  fail(ErrorKind::corrupt, "expected an integer value, found {}", value_type_name(type_));
}

double Value::as_float() const {
  if (auto* d = std::get_if<double>(&data_)) return *d;
  if (auto* u = std::get_if<uint64_t>(&data_)) return static_cast<double>(*u);
  if (auto* i = std::get_if<int64_t>(&data_)) return static_cast<double>(*i);
  fail(ErrorKind::corrupt, "expected a number, found {}", value_type_name(type_));
}

bool Value::as_bool() const {
  if (auto* b = std::get_if<bool>(&data_)) return *b;
  fail(ErrorKind::corrupt, "expected a bool, found {}", value_type_name(type_));
}

const std::string& Value::as_string() const {
  if (auto* s = std::get_if<std::string>(&data_)) return *s;
  fail(ErrorKind::corrupt, "expected a string, found {}", value_type_name(type_));
}

const std::vector<Value>& Value::as_array() const {
  if (auto* a = std::get_if<std::vector<Value>>(&data_)) return *a;
  fail(ErrorKind::corrupt, "expected an array, found {}", value_type_name(type_));
}

nlohmann::json Value::to_json(size_t max_items) const {
  return std::visit(
      [&](const auto& v) -> nlohmann::json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<Value>>) {
          nlohmann::json arr = nlohmann::json::array();
          for (size_t i = 0; i < v.size() && i < max_items; ++i) arr.push_back(v[i].to_json(max_items));
          if (v.size() > max_items) arr.push_back(fmt::format("... {} more", v.size() - max_items));
          return arr;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return nlohmann::json(v);  // may hold invalid UTF-8: callers dump with replace handler
        } else {
          return nlohmann::json(v);
        }
      },
      data_);
}

}  // namespace etna::gguf
