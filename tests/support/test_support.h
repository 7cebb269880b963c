// Helpers shared by every test binary: where ../shared is, and skipping cleanly without it.
#pragma once
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace etna::test {

// The shared data folder (models, reference outputs, tokenizer vectors), or "" when absent.
std::filesystem::path shared_dir();

// Path of a file under ../shared; empty when ../shared (or that file) is missing.
std::filesystem::path shared_file(const std::string& relative);

// Path of the built `etna` binary.
std::filesystem::path etna_binary();

// A fresh temporary directory, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Runs a shell command, returns its exit status; stdout (and stderr when merge_stderr) in *out.
int run_command(const std::string& command, std::string* out, bool merge_stderr = false);

}  // namespace etna::test

// Skips the current test with a clear message when ../shared/<relative> is absent.
#define ETNA_REQUIRE_SHARED(var, relative)                                          \
  const std::filesystem::path var = ::etna::test::shared_file(relative);            \
  if (var.empty()) GTEST_SKIP() << "skipped: ../shared not found (" << (relative) << ")"
