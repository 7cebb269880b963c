// The `etna run`, `etna chat` and `etna info` commands, driven through the built binary.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace etna::test {
namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `etna ARGS`, returns the exit status; stdout (plus stderr when merge) in *out.
int etna(const std::string& args, std::string* out, bool merge = false) {
  const auto bin = etna_binary();
  if (!std::filesystem::exists(bin)) {
    ADD_FAILURE() << "the etna binary is not built: " << bin;
    return -1;
  }
  return run_command(quote(bin.string()) + " " + args, out, merge);
}

nlohmann::json reference_case(const std::filesystem::path& ref, size_t i) {
  std::ifstream in(ref);
  return nlohmann::json::parse(in)["cases"].at(i);
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n + (!s.empty() && s.back() != '\n');
}

TEST(CliRun, GreedyTextEqualsTheReference) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/stories260K.json");
  auto c = reference_case(ref, 0);
  std::string out;
  ASSERT_EQ(etna("run -m " + quote(model.string()) + " -p " + quote(c["prompt"]) + " -n 64 --temp 0", &out), 0);
  EXPECT_EQ(out, c["greedy_text"].get<std::string>());
}

TEST(CliRun, JsonHasTokensTextFinishReasonAndTimings) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  ETNA_REQUIRE_SHARED(ref, "reference/stories260K.json");
  auto c = reference_case(ref, 2);
  std::string out;
  ASSERT_EQ(etna("run --json -m " + quote(model.string()) + " -p " + quote(c["prompt"]) + " -n 16 --temp 0", &out), 0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["prompt_tokens"], c["tokens"]);
  ASSERT_TRUE(j["tokens"].is_array());
  ASSERT_EQ(j["tokens"].size(), 16u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(j["tokens"][i], c["greedy"][i]);
  EXPECT_TRUE(j["text"].is_string());
  EXPECT_EQ(c["greedy_text"].get<std::string>().rfind(j["text"].get<std::string>(), 0), 0u);  // a prefix
  EXPECT_EQ(j["finish_reason"], "length");
  for (const char* k : {"prompt_ms", "prompt_tps", "gen_ms", "gen_tps"}) {
    ASSERT_TRUE(j["timings"].contains(k)) << k;
    EXPECT_TRUE(j["timings"][k].is_number()) << k;
    EXPECT_GE(j["timings"][k].get<double>(), 0.0) << k;
  }
}

TEST(CliRun, SameSeedSameTextAtTemperature) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  const std::string base = "run -m " + quote(model.string()) + " -p 'Once upon a time' -n 48 --temp 0.8 --seed ";
  std::string a, b, other;
  ASSERT_EQ(etna(base + "1234", &a), 0);
  ASSERT_EQ(etna(base + "1234", &b), 0);
  ASSERT_EQ(etna(base + "999", &other), 0);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
}

TEST(CliRun, StopStringAndPromptFile) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  TempDir dir;
  { std::ofstream(dir / "prompt.txt") << "Once upon a time"; }
  std::string out;
  ASSERT_EQ(etna("run -m " + quote(model.string()) + " -f " + quote((dir / "prompt.txt").string()) +
                     " -n 64 --temp 0 --stop girl --json",
                 &out),
            0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["text"], ", there was a little ");
  EXPECT_EQ(j["finish_reason"], "stop");
}

TEST(CliRun, MissingModelIsOneErrorLine) {
  TempDir dir;
  std::string out;
  int rc = etna("run -m " + quote((dir / "absent.gguf").string()) + " -p hi", &out, true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(count_lines(out), 1u) << out;
  EXPECT_NE(out.find("absent.gguf"), std::string::npos) << out;
}

TEST(CliRun, TruncatedModelIsOneClearErrorLineNoCrash) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::ifstream in(model, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TempDir dir;
  for (size_t keep : {size_t{0}, size_t{7}, size_t{100}, size_t{3000}, bytes.size() / 2, bytes.size() - 1}) {
    const auto path = dir / ("cut-" + std::to_string(keep) + ".gguf");
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
    for (const std::string& cmd : {"run -m " + quote(path.string()) + " -p hi -n 4", "info " + quote(path.string())}) {
      std::string out;
      int rc = etna(cmd, &out, true);
      EXPECT_EQ(rc, 1) << cmd << ": " << out;  // 1 = a reported error; a crash would be a signal
      EXPECT_EQ(count_lines(out), 1u) << cmd << ": " << out;
      EXPECT_EQ(out.rfind("etna: error: ", 0), 0u) << out;
    }
  }
}

TEST(CliRun, BadOptionsAreRejected) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::string out;
  EXPECT_NE(etna("run -m " + quote(model.string()) + " -p hi --top-p 0", &out, true), 0);
  EXPECT_NE(out.find("top_p"), std::string::npos) << out;
  EXPECT_NE(etna("run -m " + quote(model.string()) + " -p 'Once upon a time' --ctx 3", &out, true), 0);
  EXPECT_NE(out.find("context"), std::string::npos) << out;
  EXPECT_EQ(count_lines(out), 1u) << out;
  EXPECT_NE(etna("run -m " + quote(model.string()), &out, true), 0);
  EXPECT_NE(out.find("prompt"), std::string::npos) << out;
}

TEST(CliChat, AnswersTurnsResetsAndQuits) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::string out;
  const std::string cmd = "chat -m " + quote(model.string()) + " -n 12 --temp 0";
  ASSERT_EQ(run_command("printf 'Hello\\nWhat next?\\n/reset\\nHello\\n/exit\\nnever read\\n' | " +
                            quote(etna_binary().string()) + " " + cmd,
                        &out),
            0);
  EXPECT_EQ(out.rfind("> ", 0), 0u) << out;
  EXPECT_NE(out.find("(conversation cleared)"), std::string::npos) << out;
  // Greedy replies: after /reset the first turn is answered exactly as before.
  const size_t cleared = out.find("(conversation cleared)");
  const std::string first = out.substr(2, out.find('\n') - 2);
  EXPECT_FALSE(first.empty());
  EXPECT_NE(out.find("> " + first + "\n", cleared), std::string::npos) << out;

  // End of input quits cleanly too.
  ASSERT_EQ(run_command("printf 'Hello\\n' | " + quote(etna_binary().string()) + " " + cmd, &out), 0);
}

TEST(CliInfo, EverySharedModelIsDescribed) {
  ETNA_REQUIRE_SHARED(models, "models");
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(models)) {
    if (entry.path().extension() != ".gguf") continue;
    ++n;
    const std::string path = quote(entry.path().string());
    std::string text, js, tensors;
    ASSERT_EQ(etna("info " + path, &text), 0) << entry.path();
    EXPECT_NE(text.find("architecture"), std::string::npos);
    EXPECT_NE(text.find("parameters"), std::string::npos);
    ASSERT_EQ(etna("info --json --tensors " + path, &js), 0) << entry.path();
    auto j = nlohmann::json::parse(js);
    EXPECT_FALSE(j["architecture"].get<std::string>().empty());
    EXPECT_GT(j["parameters"].get<uint64_t>(), 0u);
    EXPECT_EQ(j["file_size"].get<uint64_t>(), std::filesystem::file_size(entry.path()));
    EXPECT_GT(j["tokenizer"]["vocab_size"].get<uint64_t>(), 0u);
    EXPECT_TRUE(j["metadata"].contains("general.architecture"));
    uint64_t type_bytes = 0, tensor_bytes = 0, type_count = 0;
    for (const auto& t : j["types"]) type_bytes += t["bytes"].get<uint64_t>(), type_count += t["tensors"].get<uint64_t>();
    for (const auto& t : j["tensors"]) tensor_bytes += t["bytes"].get<uint64_t>();
    EXPECT_EQ(type_bytes, tensor_bytes);
    EXPECT_EQ(type_count, j["tensors"].size());
    ASSERT_EQ(etna("info --tensors " + path, &tensors), 0);
    EXPECT_NE(tensors.find("token_embd.weight"), std::string::npos);
  }
  EXPECT_GT(n, 0);
}

TEST(CliInfo, StoriesFacts) {
  ETNA_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::string js;
  ASSERT_EQ(etna("info --json " + quote(model.string()), &js), 0);
  auto j = nlohmann::json::parse(js);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["block_count"], 5);
  EXPECT_EQ(j["head_count"], 8);
  EXPECT_EQ(j["head_count_kv"], 4);
  EXPECT_EQ(j["embedding_length"], 64);
  EXPECT_EQ(j["tokenizer"]["model"], "llama");
  EXPECT_EQ(j["tokenizer"]["vocab_size"], 512);
  // Long arrays are elided.
  EXPECT_LT(j["metadata"]["tokenizer.ggml.tokens"].size(), 20u);
}

}  // namespace
}  // namespace etna::test
