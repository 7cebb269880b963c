// Repacking at load (tensor::repack_rows on the Q4_0 / Q8_0 / K-quant matrices): the same logits bit for
// bit as the file's layout, under whatever kernel set the run forces (ETNA_KERNELS), and the
// file on disk untouched.
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "etna/model/model.h"
#include "etna/tensor/kernels.h"
#include "support/test_support.h"

namespace etna::model {
namespace {

std::vector<float> prompt_logits(const Model& m) {
  auto cache = m.make_cache(1, 64);
  Batch b;
  for (int i = 0; i < 20; ++i) b.add((i * 37 + 5) % m.config().n_vocab, i, 0, true);
  std::vector<float> logits;
  m.forward(b, *cache, logits);
  Batch one;
  one.add(7, 20, 0, true);  // and one decode step
  std::vector<float> step;
  m.forward(one, *cache, step);
  logits.insert(logits.end(), step.begin(), step.end());
  return logits;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class RepackModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RepackModelTest, SameLogitsWithAndWithoutRepacking) {
  ETNA_REQUIRE_SHARED(path, "models/" + GetParam() + ".gguf");
  const bool saved = Model::repack_enabled();
  const std::string before = file_bytes(path.string());
  Model::set_repack(false);
  auto plain = Model::load(path.string());
  Model::set_repack(true);
  auto packed = Model::load(path.string());
  Model::set_repack(saved);
  EXPECT_EQ(plain->repacked_matrices(), 0);
  const bool kernels = tensor::find_kernels(gguf::GgmlType::Q4_0)->packed_tile != nullptr;
  if (kernels) {
    EXPECT_GT(packed->repacked_matrices(), 0) << "nothing repacked under " << tensor::kernel_table_name(tensor::active_kernel_table());
    EXPECT_GT(packed->repacked_bytes(), 0u);
  } else {
    EXPECT_EQ(packed->repacked_matrices(), 0) << "a set without packed kernels keeps the file's layout";
  }
  const auto a = prompt_logits(*plain), b = prompt_logits(*packed);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << GetParam();
  packed.reset();
  EXPECT_EQ(before, file_bytes(path.string())) << "repacking wrote to the file";
}

INSTANTIATE_TEST_SUITE_P(Files, RepackModelTest,
                         ::testing::Values("tiny-llama-spm-q4_0", "tiny-llama-spm-q8_0", "tiny-qwen2-gpt2-q8_0",
                                           "tiny-llama-kq-q8_0"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace etna::model
