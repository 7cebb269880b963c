#include <atomic>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/hub/pull.h"
#include "unit/hub/hub_server.h"
#include "unit/hub/test_models.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {
namespace fs = std::filesystem;

std::vector<RepoFile> files(std::initializer_list<const char*> paths) {
  std::vector<RepoFile> v;
  for (auto p : paths) v.push_back({p, 100, ""});
  return v;
}

std::vector<std::string> paths(const std::vector<RepoFile>& v) {
  std::vector<std::string> out;
  for (const auto& f : v) out.push_back(f.path);
  return out;
}

TEST(PullRef, Parses) {
  auto r = parse_pull_ref("bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
  EXPECT_FALSE(r.is_url);
  EXPECT_EQ(r.repo, "bartowski/Llama-3.2-1B-Instruct-GGUF");
  EXPECT_EQ(r.tag, "Q4_K_M");
  EXPECT_EQ(parse_pull_ref("org/repo").tag, "");
  EXPECT_TRUE(parse_pull_ref("https://example.org/x.gguf").is_url);
  for (const char* bad : {"repo", "org/", "/repo", "org/repo:", "org/../x", "a/b/c", "org/repo:../../x"})
    EXPECT_THROW(parse_pull_ref(bad), Error) << bad;
}

TEST(ChooseFiles, QuantTagCaseInsensitiveWithSplitsAndCard) {
  const auto repo = files({"README.md", "LICENSE", ".gitattributes", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q8_0.gguf",
                           "m-Q6_K-00002-of-00002.gguf", "m-Q6_K-00001-of-00002.gguf", "mmproj-m-f16.gguf"});
  EXPECT_EQ(paths(choose_files(repo, "q8_0")), (std::vector<std::string>{"m-Q8_0.gguf", "README.md", "LICENSE"}));
  EXPECT_EQ(paths(choose_files(repo, "Q4_K_M"))[0], "m-Q4_K_M.gguf");
  EXPECT_EQ(paths(choose_files(repo, "q6_k")),
            (std::vector<std::string>{"m-Q6_K-00001-of-00002.gguf", "m-Q6_K-00002-of-00002.gguf", "README.md", "LICENSE"}));
  EXPECT_EQ(paths(choose_files(repo, "m-Q4_K_S.gguf"))[0], "m-Q4_K_S.gguf");  // a file name
  EXPECT_EQ(paths(choose_files(repo, ""))[0], "m-Q4_K_M.gguf");  // several: Q4_K_M by default
  EXPECT_THROW(choose_files(repo, "Q4_K"), Error);  // a prefix of a tag is not a tag
  EXPECT_THROW(choose_files(repo, "Q2_K"), Error);
  try {
    choose_files(repo, "Q3_K_L");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m-Q8_0"), std::string::npos) << "names the choices: " << e.what();
  }
  EXPECT_EQ(paths(choose_files(files({"only-q5_0.gguf"}), "")), (std::vector<std::string>{"only-q5_0.gguf"}));
  EXPECT_THROW(choose_files(files({"a-Q5_0.gguf", "a-Q8_0.gguf"}), ""), Error);  // no Q4_K_M to default to
  EXPECT_THROW(choose_files(files({"m-Q6_K-00001-of-00003.gguf", "m-Q6_K-00002-of-00003.gguf"}), "q6_k"), Error);  // shard missing
  // A safetensors repository (for convert).
  EXPECT_EQ(paths(choose_files(files({"model.safetensors", "config.json", "tokenizer.json", "pytorch_model.bin", "README.md"}), "")),
            (std::vector<std::string>{"model.safetensors", "config.json", "tokenizer.json", "README.md"}));
}

class PullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gguf_ = test::licensed_gguf("apache-2.0");
    if (gguf_.empty()) GTEST_SKIP() << "skipped: ../shared not found";
    setenv("ETNA_PULL_RETRY_MS", "10", 1);
    unsetenv("ETNA_FREE_SPACE_BYTES");
    unsetenv("HF_TOKEN");
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    opts_.endpoint = hub_.endpoint();
  }
  void TearDown() override { unsetenv("ETNA_PULL_RETRY_MS"); }

  std::string message_of(const std::string& ref, PullOptions o) {
    try {
      pull(lib_, ref, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  test::HubServer hub_;
  test::TempDir dir_;
  Library lib_{dir_ / "models"};
  PullOptions opts_;
  std::string gguf_;
};

TEST_F(PullTest, ListingQuantChoiceRedirectAndLicenceFromCard) {
  hub_.add("org/tiny-GGUF", "tiny-Q8_0.gguf", {test::licensed_gguf(""), "", true, 0, false});
  hub_.add("org/tiny-GGUF", "tiny-Q4_K_M.gguf", {gguf_, "", true, 0, false});
  hub_.add("org/tiny-GGUF", "README.md", {"---\nlicense: cc-by-nc-4.0\nbase_model: org/tiny\n---\n# tiny\n", "", false, 0, false});
  auto listing = list_repo(opts_, "org/tiny-GGUF");
  ASSERT_EQ(listing.size(), 3u);  // the directory entry is not a file
  std::vector<PullProgress> seen;
  PullOptions o = opts_;
  o.progress = [&](const PullProgress& p) { seen.push_back(p); };
  Manifest m = pull(lib_, "org/tiny-GGUF:q8_0", o);
  EXPECT_EQ(m.name, "tiny-Q8_0");
  EXPECT_EQ(m.source, "org/tiny-GGUF");
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(test::read_file(m.main_path()), test::licensed_gguf(""));
  EXPECT_EQ(m.files[0].sha256, [&] { Sha256 h; auto s = test::licensed_gguf(""); h.update(s.data(), s.size()); return h.hex_digest(); }());
  // The Q8_0 file declares no licence: the model card's front matter supplies it.
  ASSERT_TRUE(m.licence.known());
  EXPECT_EQ(m.licence.terms->id, "cc-by-nc-4.0");
  EXPECT_EQ(m.licence.base_models, std::vector<std::string>{"org/tiny"});
  EXPECT_EQ(m.architecture, "llama");
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().finished_file);
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_TRUE(lib_.find("tiny-Q8_0"));
  EXPECT_FALSE(fs::exists(m.main_path() + ".part"));

  // The Q4_K_M file's own general.license wins over the card.
  Manifest q4 = pull(lib_, "org/tiny-GGUF:Q4_K_M", opts_);
  EXPECT_EQ(q4.licence.terms->id, "apache-2.0");
  // Pulling again finds it complete and downloads nothing.
  const int before = hub_.downloads();
  pull(lib_, "org/tiny-GGUF:Q4_K_M", opts_);
  EXPECT_EQ(hub_.downloads(), before);
}

TEST_F(PullTest, LicenceFileWhenNothingElseDeclaresOne) {
  hub_.add("org/lic", "lic-Q8_0.gguf", {test::licensed_gguf(""), "", true, 0, false});
  hub_.add("org/lic", "LICENSE", {"MIT License\n\nCopyright (c) 2024 Someone\n", "", false, 0, false});
  Manifest m = pull(lib_, "org/lic", opts_);
  ASSERT_TRUE(m.licence.known());
  EXPECT_EQ(m.licence.terms->id, "mit");
  EXPECT_EQ(m.licence.source, "licence file");
  EXPECT_EQ(m.files.size(), 2u);
}

TEST_F(PullTest, SplitModelIsOneModel) {
  const std::string second = test::licensed_gguf("apache-2.0", "shard two");
  hub_.add("org/big", "big-Q6_K-00001-of-00002.gguf", {gguf_, "", true, 0, false});
  hub_.add("org/big", "big-Q6_K-00002-of-00002.gguf", {second, "", true, 0, false});
  Manifest m = pull(lib_, "org/big:Q6_K", opts_);
  EXPECT_EQ(m.name, "big-Q6_K");
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(fs::path(m.main_path()).filename(), "big-Q6_K-00001-of-00002.gguf");
  EXPECT_EQ(test::read_file(m.files[1].path), second);
  EXPECT_EQ(m.total_size(), gguf_.size() + second.size());
}

TEST_F(PullTest, ConnectionCutMidFileIsResumedWithRange) {
  hub_.add("org/cut", "cut-Q8_0.gguf", {gguf_, "", true, 2, false});
  Manifest m = pull(lib_, "org/cut", opts_);
  EXPECT_EQ(test::read_file(m.main_path()), gguf_);
  const auto ranges = hub_.ranges();
  ASSERT_FALSE(ranges.empty()) << "the retry must resume, not start over";
  EXPECT_EQ(ranges.back(), "bytes=" + std::to_string(gguf_.size() / 2) + "-");
}

TEST_F(PullTest, WithoutRetriesThePartStaysAndTheNextPullResumes) {
  hub_.add("org/cut", "cut-Q8_0.gguf", {gguf_, "", true, 1, false});
  PullOptions o = opts_;
  o.retries = 0;
  const std::string msg = message_of("org/cut", o);
  EXPECT_NE(msg.find("run the same pull again to resume"), std::string::npos) << msg;
  const fs::path part = lib_.model_dir("cut-Q8_0") / "cut-Q8_0.gguf.part";
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), gguf_.size() / 2);
  Manifest m = pull(lib_, "org/cut", opts_);
  EXPECT_EQ(test::read_file(m.main_path()), gguf_);
  EXPECT_FALSE(fs::exists(part));
  EXPECT_EQ(hub_.ranges().back(), "bytes=" + std::to_string(gguf_.size() / 2) + "-");
}

TEST_F(PullTest, CancelKeepsAResumablePart) {
  hub_.add("org/slow", "slow-Q8_0.gguf", {gguf_, "", true, 0, true});
  std::atomic<bool> cancel{false};
  PullOptions o = opts_;
  o.cancel = &cancel;
  std::thread stopper([&] {
    while (!hub_.stalled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel = true;
  });
  const std::string msg = message_of("org/slow", o);
  stopper.join();
  hub_.release();
  EXPECT_NE(msg.find("interrupted"), std::string::npos) << msg;
  const fs::path part = lib_.model_dir("slow-Q8_0") / "slow-Q8_0.gguf.part";
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), gguf_.size() / 2);
  EXPECT_FALSE(lib_.find("slow-Q8_0"));
  Manifest m = pull(lib_, "org/slow", opts_);
  EXPECT_EQ(test::read_file(m.main_path()), gguf_);
}

TEST_F(PullTest, WrongChecksumDeletesTheDownload) {
  hub_.add("org/bad", "bad-Q8_0.gguf", {gguf_, std::string(64, 'a'), true, 0, false});
  const std::string msg = message_of("org/bad", opts_);
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(lib_.model_dir("bad-Q8_0") / "bad-Q8_0.gguf"));
  EXPECT_FALSE(fs::exists(lib_.model_dir("bad-Q8_0") / "bad-Q8_0.gguf.part"));
  EXPECT_FALSE(lib_.find("bad-Q8_0"));
}

TEST_F(PullTest, GatedRepoNeedsAToken) {
  hub_.add("meta/gated", "g-Q8_0.gguf", {gguf_, "", true, 0, false});
  hub_.gate("meta/gated", "hf_secret");
  const std::string msg = message_of("meta/gated", opts_);
  EXPECT_NE(msg.find("gated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_TOKEN"), std::string::npos) << msg;
  setenv("HF_TOKEN", "hf_secret", 1);
  Manifest m = pull(lib_, "meta/gated", opts_);
  unsetenv("HF_TOKEN");
  EXPECT_EQ(test::read_file(m.main_path()), gguf_);
}

TEST_F(PullTest, MissingRepoAndFileAre404s) {
  hub_.add("org/one", "one-Q8_0.gguf", {gguf_, "", true, 0, false});
  EXPECT_NE(message_of("org/nothing", opts_).find("404"), std::string::npos);
  EXPECT_NE(message_of("org/one:Q2_K", opts_).find("no GGUF file matches"), std::string::npos);
  PullOptions o = opts_;
  EXPECT_NE(message_of(hub_.endpoint() + "/org/one/resolve/main/missing.gguf", o).find("404"), std::string::npos);
}

TEST_F(PullTest, TooLittleFreeSpaceRefusesBeforeDownloading) {
  hub_.add("org/one", "one-Q8_0.gguf", {gguf_, "", true, 0, false});
  setenv("ETNA_FREE_SPACE_BYTES", std::to_string(gguf_.size() - 1).c_str(), 1);
  const std::string msg = message_of("org/one", opts_);
  unsetenv("ETNA_FREE_SPACE_BYTES");
  EXPECT_NE(msg.find("not enough free space"), std::string::npos) << msg;
  EXPECT_EQ(hub_.downloads(), 0);
  PullOptions o = opts_;
  o.free_space = gguf_.size();
  EXPECT_NO_THROW(pull(lib_, "org/one", o));
}

TEST_F(PullTest, PlainUrlWithExpectedDigest) {
  hub_.add("org/one", "one-Q8_0.gguf", {gguf_, "", true, 0, false});
  PullOptions o = opts_;
  o.sha256 = std::string(64, '0');
  EXPECT_NE(message_of(hub_.endpoint() + "/org/one/resolve/main/one-Q8_0.gguf", o).find("checksum mismatch"), std::string::npos);
  o.sha256.clear();
  o.name = "from-url";
  Manifest m = pull(lib_, hub_.endpoint() + "/org/one/resolve/main/one-Q8_0.gguf", o);
  EXPECT_EQ(m.name, "from-url");
  EXPECT_EQ(m.source_kind, "url");
  EXPECT_EQ(test::read_file(m.main_path()), gguf_);
  EXPECT_EQ(m.licence.terms->id, "apache-2.0");
}

}  // namespace
}  // namespace etna::hub
