// `etna quantize` against llama.cpp's quantizer: every quantised tiny-llama file in ../shared
// was written by the peer from an F32 source there; quantising that source must give the
// same file, byte for byte. On a mismatch the test says where: the first differing metadata
// key or tensor header, or the first differing tensor, block and byte.
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/hub/imatrix.h"
#include "etna/hub/quantize.h"
#include "etna/tensor/quantize.h"
#include "etna/tensor/tensor.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;
using gguf::Value;
using gguf::ValueType;

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string dims_text(const std::vector<uint64_t>& dims) {
  std::string s;
  for (auto d : dims) s += (s.empty() ? "" : " x ") + std::to_string(d);
  return s;
}

// "" when the files are identical; otherwise where they first differ, in GGUF terms.
std::string describe_difference(const fs::path& ours_path, const fs::path& theirs_path) {
  const auto ours_bytes = read_all(ours_path), theirs_bytes = read_all(theirs_path);
  if (ours_bytes == theirs_bytes) return "";
  auto ours = gguf::GgufFile::open(ours_path.string());
  auto theirs = gguf::GgufFile::open(theirs_path.string());
  const auto& km = ours->metadata();
  const auto& kt = theirs->metadata();
  for (size_t i = 0; i < std::max(km.size(), kt.size()); ++i) {
    if (i >= km.size()) return fmt::format("metadata: ours lacks key #{} '{}'", i, kt[i].first);
    if (i >= kt.size()) return fmt::format("metadata: ours has an extra key #{} '{}'", i, km[i].first);
    if (km[i].first != kt[i].first)
      return fmt::format("metadata key #{}: ours '{}', theirs '{}'", i, km[i].first, kt[i].first);
    if (km[i].second.type() != kt[i].second.type())
      return fmt::format("metadata key '{}': value types differ", km[i].first);
  }
  const auto& tm = ours->tensors();
  const auto& tt = theirs->tensors();
  if (tm.size() != tt.size()) return fmt::format("tensor count: ours {}, theirs {}", tm.size(), tt.size());
  for (size_t i = 0; i < tm.size(); ++i) {
    if (tm[i].name != tt[i].name) return fmt::format("tensor #{}: ours '{}', theirs '{}'", i, tm[i].name, tt[i].name);
    if (tm[i].type != tt[i].type || tm[i].dims != tt[i].dims)
      return fmt::format("tensor '{}': ours {} [{}], theirs {} [{}]", tm[i].name, gguf::ggml_type_name(tm[i].type),
                         dims_text(tm[i].dims), gguf::ggml_type_name(tt[i].type), dims_text(tt[i].dims));
  }
  for (size_t i = 0; i < tm.size(); ++i) {
    const auto& a = tm[i];
    const auto& b = tt[i];
    if (std::memcmp(a.data, b.data, a.n_bytes) == 0) continue;
    const auto info = *gguf::ggml_type_info(static_cast<uint32_t>(a.type));
    const uint64_t blocks = a.n_bytes / info.block_bytes, per_row = a.dims[0] / info.block_size;
    uint64_t first = blocks, differing = 0;
    for (uint64_t k = 0; k < blocks; ++k)
      if (std::memcmp(a.data + k * info.block_bytes, b.data + k * info.block_bytes, info.block_bytes) != 0) {
        if (first == blocks) first = k;
        ++differing;
      }
    size_t byte = 0;
    while (a.data[first * info.block_bytes + byte] == b.data[first * info.block_bytes + byte]) ++byte;
    return fmt::format(
        "tensor '{}' ({}, [{}]): {} of {} blocks differ; first: block {} (row {}, block {} of the row), byte {} of "
        "{} (ours 0x{:02x}, theirs 0x{:02x})",
        a.name, gguf::ggml_type_name(a.type), dims_text(a.dims), differing, blocks, first, first / per_row,
        first % per_row, byte, info.block_bytes, a.data[first * info.block_bytes + byte],
        b.data[first * info.block_bytes + byte]);
  }
  size_t pos = 0;
  while (pos < std::min(ours_bytes.size(), theirs_bytes.size()) && ours_bytes[pos] == theirs_bytes[pos]) ++pos;
  return fmt::format("files differ at byte {} (sizes: ours {}, theirs {}) outside the tensor data", pos,
                     ours_bytes.size(), theirs_bytes.size());
}

struct Target {
  const char* source;  // under ../shared
  const char* target;
  const char* type;
};

void PrintTo(const Target& t, std::ostream* os) { *os << t.target << " (" << t.type << ")"; }

class PeerQuantizeTest : public ::testing::TestWithParam<Target> {};

TEST_P(PeerQuantizeTest, OutputIsByteIdenticalToThePeers) {
  const Target& t = GetParam();
  ETNA_REQUIRE_SHARED(source, t.source);
  ETNA_REQUIRE_SHARED(target, t.target);
  test::TempDir dir;
  const fs::path out = dir / "out.gguf";
  QuantizeOptions o;
  o.file_type = t.type;
  o.threads = 2;
  quantize_model(source.string(), out.string(), o);
  EXPECT_EQ(describe_difference(out, target), "") << t.target;
}

INSTANTIATE_TEST_SUITE_P(
    SharedModels, PeerQuantizeTest,
    ::testing::Values(Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q8_0.gguf", "Q8_0"},
                      Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q2_k.gguf", "Q2_K"},
                      Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q3_k_m.gguf", "Q3_K_M"},
                      Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q4_k_m.gguf", "Q4_K_M"},
                      Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q5_k_m.gguf", "Q5_K_M"},
                      Target{"next/models/tiny-llama-kq-f32.gguf", "models/tiny-llama-kq-q6_k.gguf", "Q6_K"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-f16.gguf", "F16"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-q4_0.gguf", "Q4_0"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-q4_1.gguf", "Q4_1"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-q5_0.gguf", "Q5_0"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-q5_1.gguf", "Q5_1"},
                      Target{"models/tiny-llama-spm-f32.gguf", "models/tiny-llama-spm-q8_0.gguf", "Q8_0"}),
    [](const auto& info) {
      std::string n = fs::path(info.param.target).stem().string();
      for (auto& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

// The IQ files in next/ cannot be written until the IQ encoders exist, but the type mix that
// produced them can already be checked tensor by tensor.
TEST(QuantizePlan, MatchesThePeersMixForIqFiles) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  auto in = gguf::GgufFile::open(source.string());
  for (const auto& [file, type] : std::vector<std::pair<std::string, std::string>>{
           {"next/models/tiny-llama-kq-iq4_nl.gguf", "IQ4_NL"},
           {"next/models/tiny-llama-kq-iq4_xs.gguf", "IQ4_XS"},
           {"next/models/tiny-llama-kq-iq3_m.gguf", "IQ3_M"}}) {
    ETNA_REQUIRE_SHARED(target, file);
    auto ref = gguf::GgufFile::open(target.string());
    QuantizeOptions o;
    o.file_type = type;
    const auto plan = plan_quantization(*in, o);
    ASSERT_EQ(plan.size(), ref->tensors().size()) << file;
    for (size_t i = 0; i < plan.size(); ++i) {
      EXPECT_EQ(plan[i].name, ref->tensors()[i].name) << file;
      EXPECT_EQ(gguf::ggml_type_name(plan[i].to), gguf::ggml_type_name(ref->tensors()[i].type))
          << file << ": " << plan[i].name;
    }
    EXPECT_EQ(*ref->get_uint("general.file_type"), find_quant_file_type(type)->id) << file;
  }
}

// The IQ files in next/ were quantised by the peer from the same F32 weights, but from a copy
// whose general.name read "tiny-llama-kq-q8_0"; given that name, Etna writes the same bytes.
TEST(Quantize, IqFilesAreByteIdenticalToThePeers) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  test::TempDir dir;
  auto in = gguf::GgufFile::open(source.string());
  gguf::GgufWriter w = gguf::GgufWriter::from_file(*in);
  w.set("general.name", Value::string("tiny-llama-kq-q8_0"));
  const fs::path renamed = dir / "source.gguf";
  w.write(renamed.string());
  for (const auto& [file, type] : std::vector<std::pair<std::string, std::string>>{
           {"next/models/tiny-llama-kq-iq4_nl.gguf", "IQ4_NL"},
           {"next/models/tiny-llama-kq-iq4_xs.gguf", "IQ4_XS"},
           {"next/models/tiny-llama-kq-iq3_m.gguf", "IQ3_M"}}) {
    ETNA_REQUIRE_SHARED(target, file);
    QuantizeOptions o;
    o.file_type = type;
    o.threads = 2;
    const fs::path out = dir / (type + ".gguf");
    quantize_model(renamed.string(), out.string(), o);
    EXPECT_EQ(describe_difference(out, target), "") << file;
  }
}

// The mixes without a peer file in ../shared, by llama.cpp's rules for this model (2 layers,
// 4 query heads per KV head, tied embeddings: token_embd takes the output rule, Q6_K).
TEST(QuantizePlan, OtherKQuantMixesFollowThePeersRules) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  auto in = gguf::GgufFile::open(source.string());
  auto expected = [](const std::string& type, const std::string& name) -> GgmlType {
    if (name.find("_norm") != std::string::npos) return GgmlType::F32;
    if (name == "token_embd.weight") return GgmlType::Q6_K;
    const bool v = name.find("attn_v") != std::string::npos, down = name.find("ffn_down") != std::string::npos,
               out = name.find("attn_output") != std::string::npos;
    if (type == "Q3_K_S") return GgmlType::Q3_K;
    if (type == "Q3_K_L") return v || down || out ? GgmlType::Q5_K : GgmlType::Q3_K;
    if (type == "Q4_K_S") return v ? GgmlType::Q5_K : GgmlType::Q4_K;  // attn_v of the first 4 layers
    return GgmlType::Q5_K;                                              // Q5_K_S
  };
  for (const std::string type : {"Q3_K_S", "Q3_K_L", "Q4_K_S", "Q5_K_S"}) {
    QuantizeOptions o;
    o.file_type = type;
    for (const auto& p : plan_quantization(*in, o))
      EXPECT_EQ(gguf::ggml_type_name(p.to), gguf::ggml_type_name(expected(type, p.name))) << type << ": " << p.name;
  }
}

TEST(Quantize, ResultDoesNotDependOnThreadCount) {
  ETNA_REQUIRE_SHARED(source, "models/tiny-llama-spm-f32.gguf");
  test::TempDir dir;
  QuantizeOptions o;
  o.file_type = "Q4_K_M";  // 64-wide rows: exercises the fallback types too
  o.threads = 1;
  quantize_model(source.string(), (dir / "a.gguf").string(), o);
  o.threads = 3;
  quantize_model(source.string(), (dir / "b.gguf").string(), o);
  EXPECT_EQ(read_all(dir / "a.gguf"), read_all(dir / "b.gguf"));
  auto f = gguf::GgufFile::open((dir / "a.gguf").string());
  EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight")->type, GgmlType::Q5_0);  // Q4_K does not fit 64 columns
  EXPECT_EQ(f->find_tensor("output.weight")->type, GgmlType::Q8_0);       // nor does Q6_K
}

// F16 and BF16 inputs are decoded exactly: quantising them gives the bytes that quantising
// their F32 expansion gives.
TEST(Quantize, HalfPrecisionInputsDecodeExactly) {
  ETNA_REQUIRE_SHARED(f16, "models/tiny-llama-spm-f16.gguf");
  ETNA_REQUIRE_SHARED(f32, "models/tiny-llama-spm-f32.gguf");
  test::TempDir dir;
  QuantizeOptions o;
  o.threads = 2;
  o.file_type = "F16";  // F16 in, F16 out: every tensor copied, the file unchanged
  quantize_model(f16.string(), (dir / "same.gguf").string(), o);
  EXPECT_EQ(describe_difference(dir / "same.gguf", f16), "");
  o.file_type = "BF16";
  quantize_model(f32.string(), (dir / "bf16.gguf").string(), o);
  for (const fs::path& half : {f16, dir / "bf16.gguf"}) {
    o.file_type = "F32";
    quantize_model(half.string(), (dir / "expanded.gguf").string(), o);
    o.file_type = "Q5_1";
    quantize_model(half.string(), (dir / "direct.gguf").string(), o);
    quantize_model((dir / "expanded.gguf").string(), (dir / "via_f32.gguf").string(), o);
    EXPECT_EQ(describe_difference(dir / "direct.gguf", dir / "via_f32.gguf"), "") << half;
  }
  auto bf = gguf::GgufFile::open((dir / "bf16.gguf").string());
  EXPECT_EQ(bf->find_tensor("output.weight")->type, GgmlType::BF16);
  EXPECT_EQ(bf->find_tensor("output_norm.weight")->type, GgmlType::F32);
  EXPECT_EQ(bf->get_uint("general.file_type"), 32u);
}

// A small F32 model with licence and provenance keys, written by the test.
std::vector<float> licensed_weights() {
  std::vector<float> weights(256 * 8 + 256);
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>((i * 7919) % 201) / 100.0f - 1.0f;
  return weights;
}

// REQUIRES: `weights` sized as licensed_weights() makes them.
void write_licensed_model(const fs::path& path, const std::vector<float>& weights) {
  gguf::GgufWriter w;
  w.set("general.architecture", Value::string("llama"));
  w.set("general.name", Value::string("licensed"));
  w.set("general.license", Value::string("apache-2.0"));
  w.set("general.license.name", Value::string("Apache License 2.0"));
  w.set("general.license.link", Value::string("https://www.apache.org/licenses/LICENSE-2.0"));
  w.set("general.base_model.count", Value::unsigned_int(ValueType::UINT32, 1));
  w.set("general.base_model.0.name", Value::string("Base Model"));
  w.set("general.base_model.0.organization", Value::string("Example Org"));
  w.set("general.base_model.0.repo_url", Value::string("https://huggingface.co/example/base"));
  w.set("llama.block_count", Value::unsigned_int(ValueType::UINT32, 1));
  w.set("llama.attention.head_count", Value::unsigned_int(ValueType::UINT32, 2));
  w.set("llama.attention.head_count_kv", Value::unsigned_int(ValueType::UINT32, 2));
  w.set("general.file_type", Value::unsigned_int(ValueType::UINT32, 0));
  w.add_tensor("token_embd.weight", {256, 8}, GgmlType::F32, weights.data());
  w.add_tensor("output_norm.weight", {256}, GgmlType::F32, weights.data() + 256 * 8);
  w.write(path.string());
}

TEST(Quantize, InheritsLicenceAndBaseModelKeysAndAppendsQuantisationKeys) {
  test::TempDir dir;
  std::vector<float> weights = licensed_weights();
  write_licensed_model(dir / "in.gguf", weights);
  QuantizeOptions o;
  o.file_type = "Q4_K_M";
  const auto summary = quantize_model((dir / "in.gguf").string(), (dir / "out.gguf").string(), o);
  EXPECT_EQ(summary.tensors, 2u);
  EXPECT_EQ(summary.quantized, 1u);
  auto in = gguf::GgufFile::open((dir / "in.gguf").string());
  auto out = gguf::GgufFile::open((dir / "out.gguf").string());
  EXPECT_EQ(out->get_string("general.license"), "apache-2.0");
  EXPECT_EQ(out->get_string("general.license.name"), "Apache License 2.0");
  EXPECT_EQ(out->get_string("general.license.link"), "https://www.apache.org/licenses/LICENSE-2.0");
  EXPECT_EQ(out->get_uint("general.base_model.count"), 1u);
  EXPECT_EQ(out->get_string("general.base_model.0.name"), "Base Model");
  EXPECT_EQ(out->get_string("general.base_model.0.organization"), "Example Org");
  EXPECT_EQ(out->get_string("general.base_model.0.repo_url"), "https://huggingface.co/example/base");
  // Same keys in the same order, except the two quantisation keys now at the end (as the peer).
  std::vector<std::string> keys_in, keys_out;
  for (const auto& kv : in->metadata())
    if (kv.first != "general.file_type") keys_in.push_back(kv.first);
  keys_in.push_back("general.quantization_version");
  keys_in.push_back("general.file_type");
  for (const auto& kv : out->metadata()) keys_out.push_back(kv.first);
  EXPECT_EQ(keys_out, keys_in);
  EXPECT_EQ(out->get_uint("general.file_type"), 15u);
  EXPECT_EQ(out->get_uint("general.quantization_version"), 2u);
  // Tied embeddings take the output tensor's type.
  EXPECT_EQ(out->find_tensor("token_embd.weight")->type, GgmlType::Q6_K);
}

TEST(Quantize, DifferenceReportNamesTensorAndBlock) {
  test::TempDir dir;
  std::vector<float> weights = licensed_weights();
  write_licensed_model(dir / "in.gguf", weights);
  QuantizeOptions o;
  o.file_type = "Q8_0";
  quantize_model((dir / "in.gguf").string(), (dir / "a.gguf").string(), o);
  EXPECT_EQ(describe_difference(dir / "a.gguf", dir / "a.gguf"), "");
  weights[256 * 5 + 70] += 0.5f;  // row 5, block 2 of 8 (Q8_0 blocks of 32)
  write_licensed_model(dir / "in2.gguf", weights);
  quantize_model((dir / "in2.gguf").string(), (dir / "b.gguf").string(), o);
  const std::string d = describe_difference(dir / "b.gguf", dir / "a.gguf");
  EXPECT_NE(d.find("tensor 'token_embd.weight' (Q8_0, [256 x 8]): 1 of 64 blocks differ; first: block 42 (row 5, "
                   "block 2 of the row)"),
            std::string::npos)
      << d;
}

TEST(Quantize, OverridesChooseTensorTypes) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  auto in = gguf::GgufFile::open(source.string());
  QuantizeOptions o;
  o.file_type = "Q4_K_M";
  o.tensor_types.push_back(parse_tensor_type_override("attn_v=q8_0"));
  o.tensor_types.push_back(parse_tensor_type_override("blk\\.1\\.ffn_.*=q5_k"));
  o.output_tensor_type = GgmlType::Q4_0;
  const auto plan = plan_quantization(*in, o);
  std::map<std::string, GgmlType> types;
  for (const auto& p : plan) types[p.name] = p.to;
  EXPECT_EQ(types["blk.0.attn_v.weight"], GgmlType::Q8_0);
  EXPECT_EQ(types["blk.1.attn_v.weight"], GgmlType::Q8_0);
  EXPECT_EQ(types["blk.1.ffn_down.weight"], GgmlType::Q5_K);
  EXPECT_EQ(types["blk.0.ffn_down.weight"], GgmlType::Q4_K);
  EXPECT_EQ(types["token_embd.weight"], GgmlType::Q4_0);  // tied: the output type applies
  EXPECT_EQ(types["output_norm.weight"], GgmlType::F32);
  o.pure = true;
  o.tensor_types.clear();
  o.output_tensor_type.reset();
  for (const auto& p : plan_quantization(*in, o))
    EXPECT_EQ(p.to, p.dims.size() == 1 ? GgmlType::F32 : GgmlType::Q4_K) << p.name;  // no mix, no output rule
}

TEST(Quantize, RefusesWhatItCannotDo) {
  ETNA_REQUIRE_SHARED(quantized, "models/tiny-llama-spm-q8_0.gguf");
  ETNA_REQUIRE_SHARED(f32, "models/tiny-llama-spm-f32.gguf");
  test::TempDir dir;
  auto message = [&](const std::string& in, QuantizeOptions o) -> std::string {
    try {
      quantize_model(in, (dir / "out.gguf").string(), o);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  QuantizeOptions o;
  o.file_type = "Q4_K";  // the alias of Q4_K_M
  EXPECT_NE(message(quantized.string(), o).find("already quantised (Q8_0)"), std::string::npos);
  o.file_type = "Q9_X";
  EXPECT_NE(message(f32.string(), o).find("unknown quantisation type 'Q9_X'"), std::string::npos);
  o.file_type = "Q8_0";
  o.token_embedding_type = GgmlType::Q4_K;  // 64 columns cannot hold 256-blocks
  EXPECT_NE(message(f32.string(), o).find("rows of 64 values do not fit Q4_K blocks of 256"), std::string::npos);
  o.token_embedding_type.reset();
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
  EXPECT_FALSE(fs::exists(dir / "out.gguf.tmp"));
  EXPECT_THROW(parse_tensor_type_override("attn_v"), Error);
  EXPECT_THROW(parse_tensor_type_override("attn_v=q9_9"), Error);
  EXPECT_THROW(parse_tensor_type_override("(=q8_0"), Error);
}

TEST(Quantize, RefusesNonFiniteWeights) {
  test::TempDir dir;
  std::vector<float> weights = licensed_weights();
  write_licensed_model(dir / "in.gguf", weights);
  {
    // Poke a NaN into the token embedding of the written file.
    auto f = gguf::GgufFile::open((dir / "in.gguf").string());
    const uint64_t offset = f->data_offset() + f->find_tensor("token_embd.weight")->offset + 4 * 300;
    f.reset();
    std::fstream io(dir / "in.gguf", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(offset));
    const float nan = std::nanf("");
    io.write(reinterpret_cast<const char*>(&nan), 4);
  }
  QuantizeOptions o;
  try {
    quantize_model((dir / "in.gguf").string(), (dir / "out.gguf").string(), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite value (row 1, column 44)"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
}

TEST(QuantizeCli, WritesProgressAndReportsErrorsInOneLine) {
  ETNA_REQUIRE_SHARED(f32, "models/tiny-llama-spm-f32.gguf");
  test::TempDir dir;
  std::string out;
  const std::string bin = test::etna_binary().string();
  int rc = test::run_command(bin + " quantize " + f32.string() + " " + (dir / "q.gguf").string() +
                                 " q8_0 -t 2 --tensor-type 'attn_q=q4_0'",
                             &out, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("[   1/  21] output.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("blk.0.attn_q.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("F32 -> Q4_0"), std::string::npos) << out;
  EXPECT_NE(out.find("wrote "), std::string::npos) << out;
  auto f = gguf::GgufFile::open((dir / "q.gguf").string());
  EXPECT_EQ(f->find_tensor("blk.1.attn_q.weight")->type, GgmlType::Q4_0);
  EXPECT_EQ(f->find_tensor("blk.1.attn_k.weight")->type, GgmlType::Q8_0);

  rc = test::run_command(bin + " quantize " + f32.string() + " " + (dir / "x.gguf").string() + " q7_k", &out, true);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("unknown quantisation type 'q7_k'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "x.gguf"));
}

}  // namespace
}  // namespace etna::hub

namespace etna::hub {
namespace {

// ---- importance matrices ----

fs::path calibration_text(const fs::path& dir) {
  const fs::path p = dir / "calibration.txt";
  std::ofstream f(p);
  for (int i = 0; i < 40; ++i)
    f << "Once upon a time, there was a little girl named Lily. She loved to play outside in the park " << i << ". ";
  return p;
}

// Σ qw_j (x - x̂)² over a tensor's rows: the error the importance weighting minimises.
double weighted_error(const gguf::TensorInfo& source, const gguf::TensorInfo& quantised, const std::vector<float>& qw) {
  const uint64_t cols = source.dims[0], rows = source.n_elements / cols;
  std::vector<float> y(cols);
  const auto* x = reinterpret_cast<const float*>(source.data);
  const size_t row_bytes = gguf::ggml_row_bytes(quantised.type, cols);
  double e = 0;
  for (uint64_t r = 0; r < rows; ++r) {
    tensor::dequantize_row(quantised.type, quantised.data + r * row_bytes, y.data(), static_cast<int64_t>(cols));
    for (uint64_t j = 0; j < cols; ++j) e += qw[j] * std::pow(x[r * cols + j] - y[j], 2);
  }
  return e;
}

// Through the binary: etna imatrix, then quantize --imatrix (attn_v forced to IQ4_XS so every
// covered tensor is IQ4_XS; forced to Q5_1, which has no weighted encoder here, it is refused).
// The weighted file records the matrix, differs from the plain one and has the lower weighted
// error on every weighted tensor.
TEST(QuantizeImatrix, WeightsTheIqEncodersThroughTheBinary) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  test::TempDir dir;
  const std::string bin = "'" + test::etna_binary().string() + "'";
  auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  std::string out;
  ASSERT_EQ(test::run_command(bin + " imatrix -q -m " + q(source) + " -f " + q(calibration_text(dir.path())) + " -o " +
                                  q(dir / "im.gguf") + " -c 64 --chunks 3",
                              &out, true),
            0)
      << out;
  EXPECT_NE(out.find("14 matrices over 3 chunks of 64 tokens"), std::string::npos) << out;
  const std::string base = bin + " quantize -q " + q(source) + " " + q(dir / "w.gguf") + " IQ4_XS --imatrix " + q(dir / "im.gguf");
  ASSERT_NE(test::run_command(base + " --tensor-type attn_v=q5_1 2>&1", &out, false), 0);
  EXPECT_NE(out.find("tensor 'blk.0.attn_v.weight' would be Q5_1"), std::string::npos) << out;
  ASSERT_EQ(test::run_command(base + " --tensor-type attn_v=iq4_xs", &out, true), 0) << out;
  QuantizeOptions o;
  o.file_type = "IQ4_XS";
  o.tensor_types.push_back(parse_tensor_type_override("attn_v=iq4_xs"));
  quantize_model(source.string(), (dir / "plain.gguf").string(), o);

  const Imatrix im = load_imatrix((dir / "im.gguf").string());
  EXPECT_EQ(im.weights.size(), 14u);
  EXPECT_EQ(im.chunk_count, 3u);
  auto src = gguf::GgufFile::open(source.string());
  auto w = gguf::GgufFile::open((dir / "w.gguf").string());
  auto plain = gguf::GgufFile::open((dir / "plain.gguf").string());
  EXPECT_EQ(w->get_string("quantize.imatrix.file"), (dir / "im.gguf").string());
  EXPECT_EQ(w->get_int("quantize.imatrix.entries_count"), 14);
  EXPECT_EQ(w->get_int("quantize.imatrix.chunks_count"), 3);
  EXPECT_FALSE(plain->has("quantize.imatrix.file"));
  // ffn_down of the first eighth of the layers stays IQ4_XS with an importance matrix (the
  // peer bumps it to Q5_K only without one); here n_layer / 8 = 0, so nothing moves.
  for (const auto& [name, qw] : im.weights) {
    const auto* a = w->find_tensor(name);
    const auto* b = plain->find_tensor(name);
    ASSERT_NE(a, nullptr) << name;
    ASSERT_EQ(a->type, GgmlType::IQ4_XS) << name;
    EXPECT_NE(std::memcmp(a->data, b->data, a->n_bytes), 0) << name << ": the weights changed nothing";
    const double ew = weighted_error(*src->find_tensor(name), *a, qw), ep = weighted_error(*src->find_tensor(name), *b, qw);
    EXPECT_LT(ew, ep) << name;
    std::printf("%-26s weighted error with / without the imatrix: %.4g / %.4g (%.1f%%)\n", name.c_str(), ew, ep,
                100.0 * (ew / ep - 1));
  }
  // Tensors the matrix does not cover are as without it.
  EXPECT_EQ(std::memcmp(w->find_tensor("token_embd.weight")->data, plain->find_tensor("token_embd.weight")->data,
                        w->find_tensor("token_embd.weight")->n_bytes),
            0);
}

// For every type with a weighted encoder, weighting by an uneven importance lowers the
// importance-weighted error of a real tensor.
TEST(QuantizeImatrix, WeightingLowersTheWeightedError) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  auto src = gguf::GgufFile::open(source.string());
  const auto* t = src->find_tensor("blk.0.ffn_up.weight");
  const auto* x = reinterpret_cast<const float*>(t->data);
  const int64_t cols = static_cast<int64_t>(t->dims[0]), rows = static_cast<int64_t>(t->dims[1]);
  std::vector<float> qw(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) qw[j] = 0.05f + static_cast<float>((j * 37) % 101) / 10.0f;
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL,
                        GgmlType::IQ4_XS, GgmlType::IQ3_S}) {
    std::vector<uint8_t> a(gguf::ggml_row_bytes(type, t->n_elements)), b(a.size());
    tensor::quantize_for_file_weighted(type, x, a.data(), rows, cols, qw.data());
    tensor::quantize_for_file(type, x, b.data(), rows * cols);
    gguf::TensorInfo ta = *t, tb = *t;
    ta.type = tb.type = type;
    ta.data = a.data();
    tb.data = b.data();
    const double ew = weighted_error(*t, ta, qw), ep = weighted_error(*t, tb, qw);
    EXPECT_LT(ew, ep) << gguf::ggml_type_name(type);
    std::printf("%-7s weighted error with / without importance: %.4g / %.4g (%.1f%%)\n",
                std::string(gguf::ggml_type_name(type)).c_str(), ew, ep, 100.0 * (ew / ep - 1));
  }
}

TEST(QuantizeImatrix, IQ3SWeightingLowersTheWeightedError) {
  ETNA_REQUIRE_SHARED(source, "next/models/tiny-llama-kq-f32.gguf");
  test::TempDir dir;
  auto src = gguf::GgufFile::open(source.string());
  const auto* t = src->find_tensor("blk.0.ffn_up.weight");
  const auto* x = reinterpret_cast<const float*>(t->data);
  const int64_t cols = static_cast<int64_t>(t->dims[0]), rows = static_cast<int64_t>(t->dims[1]);
  std::vector<float> qw(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) qw[j] = 0.05f + static_cast<float>((j * 37) % 101) / 10.0f;  // uneven importance
  std::vector<uint8_t> a(gguf::ggml_row_bytes(GgmlType::IQ3_S, t->n_elements)), b(a.size());
  tensor::quantize_for_file_weighted(GgmlType::IQ3_S, x, a.data(), rows, cols, qw.data());
  tensor::quantize_for_file(GgmlType::IQ3_S, x, b.data(), rows * cols);
  gguf::TensorInfo ta = *t, tb = *t;
  ta.type = tb.type = GgmlType::IQ3_S;
  ta.data = a.data();
  tb.data = b.data();
  EXPECT_LT(weighted_error(*t, ta, qw), weighted_error(*t, tb, qw));
  EXPECT_THROW(tensor::quantize_for_file_weighted(GgmlType::Q5_1, x, a.data(), 1, cols, qw.data()), Error);
}

TEST(QuantizeImatrix, MalformedFilesAreRefused) {
  test::TempDir dir;
  {
    std::ofstream f(dir / "old.dat", std::ios::binary);
    f << "\x01\x00\x00\x00legacy";
  }
  EXPECT_THROW(load_imatrix((dir / "old.dat").string()), Error);
  std::vector<float> sums(8, 1.0f), counts(2, 4.0f);
  gguf::GgufWriter w;
  w.set("general.type", Value::string("imatrix"));
  w.add_tensor("blk.0.attn_q.weight.in_sum2", {8}, GgmlType::F32, sums.data());  // 1-D: not [cols, experts]
  w.add_tensor("blk.0.attn_q.weight.counts", {1, 2}, GgmlType::F32, counts.data());
  w.write((dir / "bad.gguf").string());
  EXPECT_THROW(load_imatrix((dir / "bad.gguf").string()), Error);
  gguf::GgufWriter ok;
  ok.set("general.type", Value::string("imatrix"));
  ok.add_tensor("blk.0.attn_q.weight.in_sum2", {4, 2}, GgmlType::F32, sums.data());
  counts[1] = 0;  // expert 1 saw nothing: its weights become 1
  ok.add_tensor("blk.0.attn_q.weight.counts", {1, 2}, GgmlType::F32, counts.data());
  ok.write((dir / "ok.gguf").string());
  const Imatrix m = load_imatrix((dir / "ok.gguf").string());
  EXPECT_EQ(m.weights.at("blk.0.attn_q.weight"), (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f, 1, 1, 1, 1}));
}

}  // namespace
}  // namespace etna::hub
