#include "etna/gguf/gguf_file.h"

#include <cstring>

#include "etna/base/error.h"

namespace etna::gguf {
namespace {

constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxNameLength = 64 * 1024;  // tensor names; GGML itself caps at 63

// Bounds-checked little-endian cursor over the mapped bytes. Every read checks the remaining
// size first, so a lying count or length can never read past the end or allocate unboundedly.
class Reader {
 public:
  Reader(const uint8_t* p, uint64_t n, const std::string& name) : p_(p), n_(n), name_(name) {}

  [[noreturn]] void bad(const std::string& what) const {
    throw Error(ErrorKind::corrupt, fmt::format("{}: invalid GGUF file: {} (at byte {})", name_, what, pos_));
  }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return n_ - pos_; }

  void need(uint64_t bytes, const char* what) const {
    if (bytes > remaining()) bad(fmt::format("truncated while reading {}", what));
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > remaining()) bad(fmt::format("{} claims length {} but only {} bytes remain", what, len, remaining()));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
  const std::string& name_;
};

// Smallest encoding of one value of type t, used to bound array counts before allocating.
uint64_t min_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

Value read_value(Reader& r, ValueType t, int depth) {
  switch (t) {
    case ValueType::UINT8: return Value::unsigned_int(t, r.read<uint8_t>("uint8 value"));
    case ValueType::INT8: return Value::signed_int(t, r.read<int8_t>("int8 value"));
    case ValueType::UINT16: return Value::unsigned_int(t, r.read<uint16_t>("uint16 value"));
    case ValueType::INT16: return Value::signed_int(t, r.read<int16_t>("int16 value"));
    case ValueType::UINT32: return Value::unsigned_int(t, r.read<uint32_t>("uint32 value"));
    case ValueType::INT32: return Value::signed_int(t, r.read<int32_t>("int32 value"));
    case ValueType::UINT64: return Value::unsigned_int(t, r.read<uint64_t>("uint64 value"));
    case ValueType::INT64: return Value::signed_int(t, r.read<int64_t>("int64 value"));
    case ValueType::FLOAT32: return Value::floating(t, r.read<float>("float32 value"));
    case ValueType::FLOAT64: return Value::floating(t, r.read<double>("float64 value"));
    case ValueType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) r.bad(fmt::format("bool value {} is neither 0 nor 1", b));
      return Value::boolean(b != 0);
    }
    case ValueType::STRING: return Value::string(r.read_string("string value"));
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth) r.bad("arrays nested too deeply");
      uint32_t et = r.read<uint32_t>("array element type");
      if (!valid_value_type(et)) r.bad(fmt::format("unknown array element type {}", et));
      auto elem = static_cast<ValueType>(et);
      uint64_t count = r.read<uint64_t>("array length");
      if (count > r.remaining() / min_size(elem))
        r.bad(fmt::format("array claims {} elements but only {} bytes remain", count, r.remaining()));
      std::vector<Value> items;
      items.reserve(count);
      for (uint64_t i = 0; i < count; ++i) items.push_back(read_value(r, elem, depth + 1));
      return Value::array(elem, std::move(items));
    }
  }
  r.bad("unknown value type");
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->mapping_.emplace(path);
  f->name_ = path;
  f->base_ = f->mapping_->data();
  f->size_ = f->mapping_->size();
  f->parse_all();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = name;
  f->base_ = data;
  f->size_ = size;
  f->parse_all();
  return f;
}

void GgufFile::parse_all() {
  Reader r(base_, size_, name_);
  if (size_ < 4) r.bad("file is too short to be GGUF");
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) r.bad("bad magic (not a GGUF file)");
  version_ = r.read<uint32_t>("version");
  if (version_ == 1) r.bad("GGUF version 1 is not supported (re-convert the model with a current tool)");
  if (version_ != 2 && version_ != 3) r.bad(fmt::format("unsupported GGUF version {}", version_));
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
  if (n_kv > r.remaining() / 13) r.bad(fmt::format("metadata count {} is larger than the file allows", n_kv));
  if (n_tensors > r.remaining() / 32) r.bad(fmt::format("tensor count {} is larger than the file allows", n_tensors));

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (!valid_value_type(t)) r.bad(fmt::format("metadata key '{}' has unknown value type {}", key, t));
    Value v = read_value(r, static_cast<ValueType>(t), 0);
    if (kv_index_.count(key)) r.bad(fmt::format("duplicate metadata key '{}'", key));
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    if (!a->is_integer()) r.bad("general.alignment is not an integer");
    uint64_t al = a->as_uint();
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
      r.bad(fmt::format("general.alignment {} is not a power of two", al));
    alignment_ = static_cast<size_t>(al);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo ti;
    ti.name = r.read_string("tensor name");
    if (ti.name.size() > kMaxNameLength) r.bad("tensor name is too long");
    uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      r.bad(fmt::format("tensor '{}' has {} dimensions (1 to {} allowed)", ti.name, n_dims, kMaxDims));
    ti.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (uint64_t{1} << 48))
        r.bad(fmt::format("tensor '{}' has invalid dimension {}", ti.name, ne));
      if (mul_overflows(ti.n_elements, ne, &ti.n_elements))
        r.bad(fmt::format("tensor '{}' element count overflows", ti.name));
      ti.dims.push_back(ne);
    }
    uint32_t type_id = r.read<uint32_t>("tensor type");
    auto info = ggml_type_info(type_id);
    if (!info) r.bad(fmt::format("tensor '{}' has unknown type {}", ti.name, type_id));
    ti.type = static_cast<GgmlType>(type_id);
    if (ti.dims[0] % info->block_size != 0)
      r.bad(fmt::format("tensor '{}' row length {} is not a multiple of the {} block size {}", ti.name, ti.dims[0],
                        info->name, info->block_size));
    uint64_t blocks = ti.n_elements / info->block_size;
    if (mul_overflows(blocks, info->block_bytes, &ti.n_bytes))
      r.bad(fmt::format("tensor '{}' byte size overflows", ti.name));
    ti.offset = r.read<uint64_t>("tensor data offset");
    if (ti.offset % alignment_ != 0)
      r.bad(fmt::format("tensor '{}' data offset {} is not aligned to {}", ti.name, ti.offset, alignment_));
    if (tensor_index_.count(ti.name)) r.bad(fmt::format("duplicate tensor name '{}'", ti.name));
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  uint64_t header_end = r.pos();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_offset_ > size_)
    r.bad("tensor data section starts past the end of the file");
  for (auto& ti : tensors_) {
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(data_offset_, ti.offset, &begin) || __builtin_add_overflow(begin, ti.n_bytes, &end) ||
        end > size_)
      throw Error(ErrorKind::corrupt,
                  fmt::format("{}: invalid GGUF file: tensor '{}' data (bytes {}..{}) lies past the end of the file "
                              "({} bytes); the file is probably truncated",
                              name_, ti.name, data_offset_ + ti.offset, data_offset_ + ti.offset + ti.n_bytes, size_));
    ti.data = base_ + begin;
  }
}

const Value* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
template <typename T, typename F>
std::optional<T> typed(const GgufFile& f, std::string_view key, F get) {
  const Value* v = f.find(key);
  if (!v) return std::nullopt;
  try {
    return get(*v);
  } catch (const Error& e) {
    fail(ErrorKind::corrupt, "{}: metadata '{}': {}", f.path(), key, e.what());
  }
}
}  // namespace

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  return typed<std::string>(*this, key, [](const Value& v) { return v.as_string(); });
}
std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  return typed<int64_t>(*this, key, [](const Value& v) { return v.as_int(); });
}
std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  return typed<uint64_t>(*this, key, [](const Value& v) { return v.as_uint(); });
}
std::optional<double> GgufFile::get_float(std::string_view key) const {
  return typed<double>(*this, key, [](const Value& v) { return v.as_float(); });
}
std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  return typed<bool>(*this, key, [](const Value& v) { return v.as_bool(); });
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  return typed<std::vector<std::string>>(*this, key, [](const Value& v) {
           std::vector<std::string> out;
           out.reserve(v.as_array().size());
           for (const auto& x : v.as_array()) out.push_back(x.as_string());
           return out;
         }).value_or(std::vector<std::string>{});
}
std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  return typed<std::vector<float>>(*this, key, [](const Value& v) {
           std::vector<float> out;
           out.reserve(v.as_array().size());
           for (const auto& x : v.as_array()) out.push_back(static_cast<float>(x.as_float()));
           return out;
         }).value_or(std::vector<float>{});
}
std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  return typed<std::vector<int64_t>>(*this, key, [](const Value& v) {
           std::vector<int64_t> out;
           out.reserve(v.as_array().size());
           for (const auto& x : v.as_array()) out.push_back(x.as_int());
           return out;
         }).value_or(std::vector<int64_t>{});
}

}  // namespace etna::gguf
