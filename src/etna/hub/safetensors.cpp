#include "etna/hub/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/base/half.h"

namespace etna::hub {
namespace fs = std::filesystem;
using nlohmann::json;

const char* st_dtype_name(StDtype t) {
  switch (t) {
    case StDtype::F32: return "F32";
    case StDtype::F16: return "F16";
    case StDtype::BF16: return "BF16";
  }
  return "?";
}

size_t st_dtype_size(StDtype t) { return t == StDtype::F32 ? 4 : 2; }

namespace {

// dtypes the format defines but Etna does not convert: named in the error as unsupported.
const std::set<std::string> kKnownOtherDtypes = {"F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8",
                                                 "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                                 "F6_E3M2", "F4", "C64"};

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->mapping_.emplace(path);
  f->name_ = path;
  f->parse_all(f->mapping_->data(), f->mapping_->size());
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->name_ = name;
  f->parse_all(data, size);
  return f;
}

void SafetensorsFile::parse_all(const uint8_t* data, size_t size) {
  const std::string& n = name_;
  if (size < 8) fail(ErrorKind::corrupt, "{}: not a safetensors file ({} bytes, shorter than the 8-byte header length)", n, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxSafetensorsHeader)
    fail(ErrorKind::corrupt, "{}: safetensors header length {} exceeds the {} MiB limit", n, header_len,
         kMaxSafetensorsHeader >> 20);
  if (header_len > size - 8)
    fail(ErrorKind::corrupt, "{}: safetensors header length {} runs past the end of the {}-byte file", n, header_len, size);
  if (header_len < 2) fail(ErrorKind::corrupt, "{}: safetensors header of {} bytes is not a JSON object", n, header_len);
  json header;
  try {
    header = json::parse(data + 8, data + 8 + header_len);
  } catch (const std::exception& e) {
    fail(ErrorKind::corrupt, "{}: safetensors header is not valid JSON ({})", n, e.what());
  }
  if (!header.is_object()) fail(ErrorKind::corrupt, "{}: safetensors header is not a JSON object", n);
  const uint8_t* body = data + 8 + header_len;
  const uint64_t body_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(ErrorKind::corrupt, "{}: __metadata__ is not an object", n);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(ErrorKind::corrupt, "{}: __metadata__ value '{}' is not a string", n, k);
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      fail(ErrorKind::corrupt, "{}: tensor '{}' lacks dtype, shape or data_offsets", n, name);
    const auto& dt = entry["dtype"];
    if (!dt.is_string()) fail(ErrorKind::corrupt, "{}: tensor '{}': dtype is not a string", n, name);
    const std::string dtype = dt.get<std::string>();
    StTensor t;
    t.name = name;
    if (dtype == "F32") t.dtype = StDtype::F32;
    else if (dtype == "F16") t.dtype = StDtype::F16;
    else if (dtype == "BF16") t.dtype = StDtype::BF16;
    else if (kKnownOtherDtypes.count(dtype))
      fail(ErrorKind::unsupported, "{}: tensor '{}' has dtype {}; etna convert reads F32, F16 and BF16 only", n, name, dtype);
    else
      fail(ErrorKind::corrupt, "{}: tensor '{}' has unknown dtype '{}'", n, name, dtype);
    const auto& shape = entry["shape"];
    if (!shape.is_array() || shape.size() > 8)
      fail(ErrorKind::corrupt, "{}: tensor '{}': shape is not an array of at most 8 dimensions", n, name);
    uint64_t count = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail(ErrorKind::corrupt, "{}: tensor '{}': shape holds a non-integer or negative value", n, name);
      const uint64_t v = d.get<uint64_t>();
      if (mul_overflows(count, v, &count)) fail(ErrorKind::corrupt, "{}: tensor '{}': shape overflows", n, name);
      t.shape.push_back(v);
    }
    t.n_elements = count;
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(ErrorKind::corrupt, "{}: tensor '{}': data_offsets is not a pair of non-negative integers", n, name);
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > body_size)
      fail(ErrorKind::corrupt, "{}: tensor '{}': data_offsets [{}, {}] out of range (data section holds {} bytes)", n, name,
           begin, end, body_size);
    uint64_t need = 0;
    if (mul_overflows(count, st_dtype_size(t.dtype), &need) || need != end - begin)
      fail(ErrorKind::corrupt, "{}: tensor '{}': {} bytes at data_offsets, but {} {} values need {}", n, name, end - begin,
           count, dtype, count * st_dtype_size(t.dtype));
    t.data = body + begin;
    t.n_bytes = need;
    if (need) ranges.emplace_back(begin, end);
    tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      fail(ErrorKind::corrupt, "{}: tensor data ranges overlap (bytes {}..{} and {}..{})", n, ranges[i - 1].first,
           ranges[i - 1].second, ranges[i].first, ranges[i].second);
}

SafetensorsModel SafetensorsModel::open_dir(const std::string& dir) {
  SafetensorsModel m;
  const fs::path d(dir);
  std::vector<fs::path> shards;
  std::map<std::string, std::string> index_map;
  const fs::path index = d / "model.safetensors.index.json";
  if (fs::exists(d / "model.safetensors")) {
    shards.push_back(d / "model.safetensors");
  } else if (fs::exists(index)) {
    json j;
    try {
      std::ifstream in(index);
      j = json::parse(in);
    } catch (const std::exception& e) {
      fail(ErrorKind::corrupt, "{}: not valid JSON ({})", index.string(), e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(ErrorKind::corrupt, "{}: no weight_map object", index.string());
    std::set<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail(ErrorKind::corrupt, "{}: weight_map['{}'] is not a file name", index.string(), name);
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        fail(ErrorKind::corrupt, "{}: weight_map names a file outside the folder: '{}'", index.string(), f);
      index_map[name] = f;
      files.insert(f);
    }
    for (const auto& f : files) shards.push_back(d / f);
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path());
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) fail(ErrorKind::not_found, "{}: no model.safetensors, model.safetensors.index.json or *.safetensors", dir);
  for (const auto& p : shards) {
    if (!fs::exists(p)) fail(ErrorKind::not_found, "{}: shard named by the index is missing", p.string());
    m.files_.push_back(SafetensorsFile::open(p.string()));
    const auto& file = *m.files_.back();
    for (const auto& t : file.tensors()) {
      if (!index_map.empty()) {
        auto it = index_map.find(t.name);
        if (it == index_map.end() || it->second != p.filename().string())
          fail(ErrorKind::corrupt, "{}: tensor '{}' is not listed in model.safetensors.index.json for this shard", p.string(), t.name);
      }
      if (!m.by_name_.emplace(t.name, &t).second)
        fail(ErrorKind::corrupt, "{}: tensor '{}' appears in more than one shard", p.string(), t.name);
    }
  }
  for (const auto& [name, file] : index_map)
    if (!m.by_name_.count(name)) fail(ErrorKind::corrupt, "{}: tensor '{}' is listed in the index but missing from {}", dir, name, file);
  for (const auto& [name, t] : m.by_name_) m.order_.push_back(t);
  return m;
}

const StTensor* SafetensorsModel::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<float> st_to_f32(const StTensor& t) {
  std::vector<float> out(t.n_elements);
  if (t.dtype == StDtype::F32) {
    std::memcpy(out.data(), t.data, t.n_bytes);
    return out;
  }
  for (uint64_t i = 0; i < t.n_elements; ++i) {
    uint16_t h;
    std::memcpy(&h, t.data + 2 * i, 2);
    out[i] = t.dtype == StDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
  }
  return out;
}

}  // namespace etna::hub
