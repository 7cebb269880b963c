#include "etna/gguf/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "etna/base/error.h"

namespace etna::gguf {
namespace {

struct VectorSink {
  std::vector<uint8_t>& out;
  void put(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
};

struct FileSink {
  FILE* f;
  const std::string& path;
  void put(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f) != n) fail(ErrorKind::io, "{}: write failed: {}", path, std::strerror(errno));
  }
};

template <typename Sink, typename T>
void put_scalar(Sink& s, T v) {
  s.put(&v, sizeof v);
}

template <typename Sink>
void put_string(Sink& s, const std::string& str) {
  put_scalar<Sink, uint64_t>(s, str.size());
  s.put(str.data(), str.size());
}

template <typename Sink>
void put_value(Sink& s, const Value& v) {
  switch (v.type()) {
    case ValueType::UINT8: put_scalar<Sink, uint8_t>(s, static_cast<uint8_t>(v.as_uint())); break;
    case ValueType::INT8: put_scalar<Sink, int8_t>(s, static_cast<int8_t>(v.as_int())); break;
    case ValueType::UINT16: put_scalar<Sink, uint16_t>(s, static_cast<uint16_t>(v.as_uint())); break;
    case ValueType::INT16: put_scalar<Sink, int16_t>(s, static_cast<int16_t>(v.as_int())); break;
    case ValueType::UINT32: put_scalar<Sink, uint32_t>(s, static_cast<uint32_t>(v.as_uint())); break;
    case ValueType::INT32: put_scalar<Sink, int32_t>(s, static_cast<int32_t>(v.as_int())); break;
    case ValueType::UINT64: put_scalar<Sink, uint64_t>(s, v.as_uint()); break;
    case ValueType::INT64: put_scalar<Sink, int64_t>(s, v.as_int()); break;
    case ValueType::FLOAT32: put_scalar<Sink, float>(s, static_cast<float>(v.as_float())); break;
    case ValueType::FLOAT64: put_scalar<Sink, double>(s, v.as_float()); break;
    case ValueType::BOOL: put_scalar<Sink, uint8_t>(s, v.as_bool() ? 1 : 0); break;
    case ValueType::STRING: put_string(s, v.as_string()); break;
    case ValueType::ARRAY:
      put_scalar<Sink, uint32_t>(s, static_cast<uint32_t>(v.element_type()));
      put_scalar<Sink, uint64_t>(s, v.as_array().size());
      for (const auto& x : v.as_array()) put_value(s, x);
      break;
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufWriter GgufWriter::from_file(const GgufFile& file) {
  GgufWriter w;
  w.version_ = file.version();
  w.kv_ = file.metadata();
  for (const auto& t : file.tensors()) w.tensors_.push_back({t.name, t.dims, t.type, t.data, t.n_bytes});
  return w;
}

void GgufWriter::set(const std::string& key, Value value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::remove(const std::string& key) {
  std::erase_if(kv_, [&](const auto& kv) { return kv.first == key; });
}

void GgufWriter::add_tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, const void* data) {
  auto info = ggml_type_info(static_cast<uint32_t>(type));
  if (!info) fail(ErrorKind::invalid_argument, "tensor '{}': unknown type", name);
  if (dims.empty() || dims.size() > kMaxDims) fail(ErrorKind::invalid_argument, "tensor '{}': bad rank", name);
  uint64_t n = 1;
  for (auto d : dims) n *= d;
  if (dims[0] % info->block_size)
    fail(ErrorKind::invalid_argument, "tensor '{}': row length {} is not a multiple of {}", name, dims[0],
         info->block_size);
  tensors_.push_back({name, std::move(dims), type, data, n / info->block_size * info->block_bytes});
}

size_t GgufWriter::alignment() const {
  for (const auto& kv : kv_)
    if (kv.first == "general.alignment") return static_cast<size_t>(kv.second.as_uint());
  return kDefaultAlignment;
}

template <typename Sink>
void GgufWriter::emit(Sink& out, const TensorSource& source) const {
  const size_t align = alignment();
  struct Counting {
    Sink& sink;
    uint64_t pos = 0;
    void put(const void* p, size_t n) {
      sink.put(p, n);
      pos += n;
    }
  } s{out};
  uint64_t& pos = s.pos;
  auto put = [&](const void* p, size_t n) { s.put(p, n); };

  put_scalar<Counting, uint32_t>(s, kMagic);
  put_scalar<Counting, uint32_t>(s, version_);
  put_scalar<Counting, uint64_t>(s, tensors_.size());
  put_scalar<Counting, uint64_t>(s, kv_.size());
  for (const auto& [key, value] : kv_) {
    put_string(s, key);
    put_scalar<Counting, uint32_t>(s, static_cast<uint32_t>(value.type()));
    put_value(s, value);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(s, t.name);
    put_scalar<Counting, uint32_t>(s, static_cast<uint32_t>(t.dims.size()));
    for (auto d : t.dims) put_scalar<Counting, uint64_t>(s, d);
    put_scalar<Counting, uint32_t>(s, static_cast<uint32_t>(t.type));
    put_scalar<Counting, uint64_t>(s, offset);
    offset = align_up(offset + t.n_bytes, align);
  }
  static const uint8_t zeros[4096] = {};
  auto pad_to = [&](uint64_t target) {
    while (pos < target) put(zeros, static_cast<size_t>(std::min<uint64_t>(sizeof zeros, target - pos)));
  };
  if (tensors_.empty()) return;
  pad_to(align_up(pos, align));
  const uint64_t data_start = pos;
  offset = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    pad_to(data_start + offset);
    const void* data = t.data;
    if (!data) {
      if (!source) fail(ErrorKind::invalid_argument, "tensor '{}' has no data and no source was given", t.name);
      data = source(i);
    }
    put(data, t.n_bytes);
    offset = align_up(offset + t.n_bytes, align);
  }
  pad_to(data_start + offset);
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> bytes;
  VectorSink sink{bytes};
  emit(sink, {});
  return bytes;
}

void GgufWriter::write(const std::string& path, const TensorSource& source) const {
  std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!f) fail(ErrorKind::io, "{}: cannot create: {}", tmp, std::strerror(errno));
  FileSink sink{f.get(), path};
  try {
    emit(sink, source);
    if (std::fflush(f.get()) != 0) fail(ErrorKind::io, "{}: write failed: {}", path, std::strerror(errno));
  } catch (...) {
    f.reset();
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);  // no half-written file left behind
    throw;
  }
  f.reset();
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(ErrorKind::io, "{}: cannot rename from {}: {}", path, tmp, ec.message());
}

}  // namespace etna::gguf
