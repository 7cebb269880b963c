#include <map>
#include <set>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/hub/synth.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {

std::map<std::string, int> type_counts(const gguf::GgufFile& f) {
  std::map<std::string, int> counts;
  for (const auto& t : f.tensors()) counts[gguf::ggml_type_name(t.type)]++;
  return counts;
}

TEST(Synth, WritesLlamaShapeWithQ4KMMix) {
  test::TempDir dir;
  const std::string path = (dir / "m.gguf").string();
  synthesize_model("test-llama", "q4_k_m", path);
  auto f = gguf::GgufFile::open(path);
  EXPECT_EQ(f->architecture(), "llama");
  EXPECT_EQ(*f->get_uint("llama.block_count"), 2u);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 2000u);
  auto counts = type_counts(*f);
  // With 2 layers llama.cpp's rule (integer eighths) gives layer 1 more bits: its attn_v and
  // ffn_down are Q6_K, as is output.weight; everything else is Q4_K.
  EXPECT_EQ(counts["Q6_K"], 3);
  EXPECT_EQ(counts["Q4_K"], 1 + 7 + 5);  // token_embd, layer 0's seven matrices, layer 1's other five
  EXPECT_EQ(counts["F32"], 2 * 2 + 1);
  ASSERT_NE(f->find_tensor("output.weight"), nullptr);
}

TEST(Synth, QwenShapeIsTiedWithBiasesAndChatML) {
  test::TempDir dir;
  const std::string path = (dir / "q.gguf").string();
  synthesize_model("test-qwen2", "q8_0", path);
  auto f = gguf::GgufFile::open(path);
  EXPECT_EQ(f->architecture(), "qwen2");
  EXPECT_EQ(f->find_tensor("output.weight"), nullptr);
  ASSERT_NE(f->find_tensor("blk.0.attn_q.bias"), nullptr);
  EXPECT_EQ(f->find_tensor("token_embd.weight")->type, gguf::GgmlType::Q8_0);
  EXPECT_EQ(*f->get_string("tokenizer.ggml.pre"), "qwen2");
  EXPECT_NE(f->get_string("tokenizer.chat_template")->find("<|im_start|>"), std::string::npos);
  // Merges produce tokens that exist in the vocabulary.
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  auto merges = f->get_string_array("tokenizer.ggml.merges");
  ASSERT_FALSE(merges.empty());
  std::set<std::string> vocab(tokens.begin(), tokens.end());
  for (size_t i = 0; i < 50 && i < merges.size(); ++i) {
    auto sp = merges[i].find(' ');
    EXPECT_TRUE(vocab.count(merges[i].substr(0, sp) + merges[i].substr(sp + 1))) << merges[i];
  }
}

// qwen3moe: the head size of its own, per-head q/k norms, stacked experts and a router; the
// active parameters count the used experts only.
TEST(Synth, Qwen3MoeShapeHasExpertsAndHeadSize) {
  test::TempDir dir;
  const std::string path = (dir / "m.gguf").string();
  synthesize_model("test-qwen3moe", "q4_k_m", path);
  auto f = gguf::GgufFile::open(path);
  EXPECT_EQ(f->architecture(), "qwen3moe");
  EXPECT_EQ(*f->get_uint("qwen3moe.attention.key_length"), 128u);
  EXPECT_EQ(*f->get_uint("qwen3moe.expert_count"), 8u);
  EXPECT_EQ(*f->get_uint("qwen3moe.expert_used_count"), 2u);
  const auto* q = f->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dims[1], 4u * 128);
  ASSERT_NE(f->find_tensor("blk.1.attn_k_norm.weight"), nullptr);
  const auto* down = f->find_tensor("blk.0.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->dims.size(), 3u);
  EXPECT_EQ(down->dims[2], 8u);
  for (const auto& s : synth_shapes())
    if (s.name == "test-qwen3moe") {
      uint64_t total = 0;
      for (const auto& t : f->tensors()) total += t.n_elements;
      const uint64_t experts = 2ull * 3 * 256 * 256 * 8;  // layers x (gate, up, down) x E x FX x experts
      EXPECT_EQ(active_parameters(s), total - experts / 8 * 6);
    }
}

// Llama 3.2's shape carries its rope frequency factors (1 for short wavelengths, up to 32).
TEST(Synth, Llama32FactorsFollowTheLlama3Rule) {
  bool found = false;
  for (const auto& s : synth_shapes())
    if (s.name == "llama-3.2-1b") found = s.rope_freqs;
  EXPECT_TRUE(found);
}

TEST(Synth, SameSeedSameBytes) {
  test::TempDir dir;
  synthesize_model("test-llama", "q4_0", (dir / "a.gguf").string(), 7);
  synthesize_model("test-llama", "q4_0", (dir / "b.gguf").string(), 7);
  std::string out;
  EXPECT_EQ(test::run_command("cmp " + (dir / "a.gguf").string() + " " + (dir / "b.gguf").string(), &out), 0);
}

TEST(Synth, RejectsUnknownShapeAndType) {
  test::TempDir dir;
  EXPECT_THROW(synthesize_model("gpt-5", "q4_0", (dir / "x.gguf").string()), Error);
  EXPECT_THROW(synthesize_model("test-llama", "q3_k", (dir / "x.gguf").string()), Error);
}

}  // namespace
}  // namespace etna::hub
