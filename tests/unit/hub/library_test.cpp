#include <set>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/hub/library.h"
#include "etna/hub/sha256.h"
#include "unit/hub/test_models.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {
namespace fs = std::filesystem;

TEST(Sha256, KnownVectors) {
  auto hex = [](const std::string& s) {
    Sha256 h;
    h.update(s.data(), s.size());
    return h.hex_digest();
  };
  EXPECT_EQ(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // A million 'a' fed in uneven pieces exercises the block buffering.
  Sha256 h;
  std::string a(1001, 'a');
  for (int i = 0; i < 1000; ++i) h.update(a.data(), i % 2 ? 999 : 1001);
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Library, NamesFromFilesAndValidation) {
  EXPECT_EQ(model_name_for("Llama-3.2-1B-Instruct-Q4_K_M.gguf"), "Llama-3.2-1B-Instruct-Q4_K_M");
  EXPECT_EQ(model_name_for("sub/x-Q8_0-00001-of-00003.gguf"), "x-Q8_0");
  EXPECT_EQ(model_name_for("a b+c.gguf"), "a-b-c");
  EXPECT_TRUE(valid_model_name("a.b_c-1"));
  EXPECT_FALSE(valid_model_name(""));
  EXPECT_FALSE(valid_model_name(".hidden"));
  EXPECT_FALSE(valid_model_name("../x"));
  EXPECT_FALSE(valid_model_name("a/b"));
  EXPECT_EQ(file_type_name(15), "Q4_K_M");
}

TEST(Library, ImportListShowRemoveKeepsImportedFiles) {
  const std::string bytes = test::licensed_gguf("apache-2.0");
  if (bytes.empty()) GTEST_SKIP() << "skipped: ../shared not found";
  test::TempDir dir;
  const fs::path file = dir / "tiny-apache.gguf";
  test::write_file(file, bytes);
  Library lib(dir / "data" / "models");
  EXPECT_TRUE(lib.list().empty());
  Manifest m = lib.import_file(file.string());
  EXPECT_EQ(m.name, "tiny-apache");
  EXPECT_EQ(m.architecture, "llama");
  EXPECT_GT(m.parameters, 200000u);
  ASSERT_TRUE(m.licence.known());
  EXPECT_EQ(m.licence.terms->id, "apache-2.0");
  EXPECT_FALSE(m.owns_files);
  EXPECT_THROW(lib.import_file(file.string()), Error);  // name taken

  auto listed = lib.list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].main_path(), fs::absolute(file).string());
  auto found = lib.find("tiny-apache");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->licence.terms->id, "apache-2.0");
  EXPECT_TRUE(lib.find_by_path(file.string()));

  lib.record_acceptance("tiny-apache", "commercial", "apache-2.0");
  lib.record_acceptance("tiny-apache", "commercial", "apache-2.0");  // once
  EXPECT_EQ(lib.find("tiny-apache")->accepted.size(), 1u);
  lib.touch("tiny-apache");
  EXPECT_FALSE(lib.find("tiny-apache")->last_used.empty());

  lib.remove("tiny-apache");
  EXPECT_TRUE(lib.list().empty());
  EXPECT_TRUE(fs::exists(file)) << "an imported file must stay where it was";
  EXPECT_THROW(lib.remove("tiny-apache"), Error);
  EXPECT_FALSE(lib.find("../etc"));
}

TEST(Library, ImportRefusesWhatIsNotGguf) {
  test::TempDir dir;
  test::write_file(dir / "bad.gguf", "not a gguf file at all");
  Library lib(dir / "models");
  EXPECT_THROW(lib.import_file((dir / "bad.gguf").string()), Error);
  EXPECT_THROW(lib.import_file((dir / "missing.gguf").string()), Error);
  EXPECT_TRUE(lib.list().empty());
}

TEST(Library, ScanFindsOtherToolsFilesReadOnly) {
  const std::string bytes = test::licensed_gguf("mit");
  if (bytes.empty()) GTEST_SKIP() << "skipped: ../shared not found";
  test::TempDir dir;
  // Hugging Face cache layout: snapshots hold the files (normally symlinks into blobs/).
  const fs::path snap = dir / "hf" / "models--org--tiny" / "snapshots" / "abc123";
  fs::create_directories(snap);
  fs::create_directories(dir / "hf" / "models--org--tiny" / "blobs");
  test::write_file(dir / "hf" / "models--org--tiny" / "blobs" / "f00d", bytes);
  fs::create_symlink(dir / "hf" / "models--org--tiny" / "blobs" / "f00d", snap / "tiny-mit.gguf");
  fs::create_directories(dir / "lms" / "pub" / "m");
  test::write_file(dir / "lms" / "pub" / "m" / "x-00001-of-00002.gguf", bytes);
  test::write_file(dir / "lms" / "pub" / "m" / "x-00002-of-00002.gguf", bytes);
  test::write_file(dir / "lms" / "junk.gguf", "junk");
  auto found = scan_for_models({dir / "hf", dir / "lms", dir / "absent"});
  ASSERT_EQ(found.size(), 2u);
  std::set<std::string> names;
  for (const auto& m : found) {
    names.insert(m.name);
    EXPECT_EQ(m.licence.terms->id, "mit");
  }
  EXPECT_EQ(names, (std::set<std::string>{"tiny-mit", "x"}));
}

TEST(Library, ManifestRoundTrip) {
  Manifest m;
  m.name = "m1";
  m.source_kind = "hub";
  m.source = "org/repo";
  m.revision = "main";
  m.files = {{"a-00001-of-00002.gguf", "/x/a1", 10, "ab"}, {"a-00002-of-00002.gguf", "/x/a2", 5, "cd"}, {"README.md", "/x/r", 1, ""}};
  m.licence = make_licence_record("llama3.2", "", "", "gguf");
  m.accepted = {{"commercial", "llama3.2", "2026-01-01T00:00:00Z"}};
  Manifest r = Manifest::from_json(m.to_json());
  EXPECT_EQ(r.name, "m1");
  EXPECT_EQ(r.files.size(), 3u);
  EXPECT_EQ(r.main_path(), "/x/a1");
  EXPECT_EQ(r.total_size(), 16u);
  EXPECT_EQ(r.licence.terms->id, "llama3.2");
  EXPECT_EQ(r.accepted[0].use, "commercial");
  nlohmann::json bad = m.to_json();
  bad["name"] = "../../etc";
  EXPECT_THROW(Manifest::from_json(bad), Error);
}

}  // namespace
}  // namespace etna::hub
