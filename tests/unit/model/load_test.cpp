// Model::load: hyperparameters read from the metadata, and one clear error for files that
// cannot be run (missing or misshapen tensors, missing keys, unsupported architectures).
#include <string>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/model/model.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Writes a copy of `src` with `drop_tensor` left out, `drop_key` removed and tensor
// `reshape` (if named) declared with its first two dims swapped.
std::string rewrite(const gguf::GgufFile& src, const test::TempDir& dir, const std::string& drop_tensor,
                    const std::string& drop_key = "", const std::string& reshape = "") {
  gguf::GgufWriter w;
  for (const auto& [k, v] : src.metadata())
    if (k != drop_key) w.set(k, v);
  for (const auto& t : src.tensors()) {
    if (t.name == drop_tensor) continue;
    std::vector<uint64_t> dims = t.dims;
    if (t.name == reshape) std::swap(dims[0], dims[1]);
    w.add_tensor(t.name, dims, t.type, t.data);
  }
  const std::string out = (dir / "m.gguf").string();
  w.write(out);
  return out;
}

TEST(ModelLoad, ReadsHyperparameters) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-qwen2-gpt2-q8_0.gguf");
  auto m = Model::load(path.string());
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_EQ(c.n_vocab, 50257);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_ff, 160);
  EXPECT_EQ(c.n_ctx_train, 256);
  EXPECT_EQ(c.rope, ModelConfig::neox);
  EXPECT_FLOAT_EQ(c.rope_freq_base, 1e6f);
  EXPECT_FLOAT_EQ(c.rope_freq_scale, 1.0f);
  EXPECT_TRUE(c.attn_bias);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(c.n_embd_kv(), 16);
}

TEST(ModelLoad, TiedOutputUsesTokenEmbedding) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-kq-q8_0.gguf");
  auto m = Model::load(path.string());
  EXPECT_TRUE(m->config().tied_output);
  EXPECT_EQ(m->config().rope, ModelConfig::normal);
  EXPECT_FLOAT_EQ(m->config().rope_freq_base, 500000.0f);
}

TEST(ModelLoad, MissingTensorIsNamed) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-spm-f32.gguf");
  auto f = gguf::GgufFile::open(path.string());
  test::TempDir dir;
  const std::string err = load_error(rewrite(*f, dir, "blk.1.ffn_up.weight"));
  EXPECT_NE(err.find("missing tensor blk.1.ffn_up.weight"), std::string::npos) << err;
}

TEST(ModelLoad, MissingBiasOfQwen2IsNamed) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-qwen2-gpt2-q8_0.gguf");
  auto f = gguf::GgufFile::open(path.string());
  test::TempDir dir;
  const std::string err = load_error(rewrite(*f, dir, "blk.0.attn_k.bias"));
  EXPECT_NE(err.find("missing tensor blk.0.attn_k.bias"), std::string::npos) << err;
}

TEST(ModelLoad, WrongShapeIsNamed) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-spm-f32.gguf");
  auto f = gguf::GgufFile::open(path.string());
  test::TempDir dir;
  const std::string err = load_error(rewrite(*f, dir, "", "", "blk.0.ffn_gate.weight"));
  EXPECT_NE(err.find("tensor blk.0.ffn_gate.weight has shape [192, 64], expected [64, 192]"), std::string::npos) << err;
}

TEST(ModelLoad, MissingKeyIsNamed) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-llama-spm-f32.gguf");
  auto f = gguf::GgufFile::open(path.string());
  test::TempDir dir;
  const std::string err = load_error(rewrite(*f, dir, "", "llama.block_count"));
  EXPECT_NE(err.find("metadata key llama.block_count is missing"), std::string::npos) << err;
}

TEST(ModelLoad, EncoderArchitectureIsUnsupported) {
  ETNA_REQUIRE_SHARED(path, "models/tiny-bert-bge-f32.gguf");
  try {
    Model::load(path.string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("architecture 'bert' is not supported"), std::string::npos) << e.what();
  }
}

TEST(ModelLoad, NonexistentFileIsAnError) {
  EXPECT_THROW(Model::load("/nonexistent/model.gguf"), Error);
}

TEST(KvCache, SequenceBookkeeping) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head_kv = 2;
  c.head_dim = 4;
  KvCache cache(c, 2, 8);
  EXPECT_EQ(cache.length(0), 0);
  cache.k(0, 1, 2)[3] = 7.0f;
  cache.v(0, 1, 2)[0] = 9.0f;
  cache.mark_filled(0, 2);
  EXPECT_EQ(cache.length(0), 3);
  cache.copy(0, 1);
  EXPECT_EQ(cache.length(1), 3);
  EXPECT_EQ(cache.k(1, 1, 2)[3], 7.0f);
  EXPECT_EQ(cache.v(1, 1, 2)[0], 9.0f);
  cache.truncate(1, 1);
  EXPECT_EQ(cache.length(1), 1);
  EXPECT_THROW(cache.truncate(1, 2), Error);
  EXPECT_THROW(cache.copy(1, 0, 5), Error);
  EXPECT_THROW(cache.length(2), Error);
  cache.clear(0);
  EXPECT_EQ(cache.length(0), 0);
  EXPECT_THROW(KvCache(c, 0, 8), Error);
  EXPECT_THROW(KvCache(c, 1, 0), Error);
}

}  // namespace
}  // namespace etna::model
