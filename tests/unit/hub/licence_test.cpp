#include <map>
#include <set>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"
#include "etna/gguf/gguf_writer.h"
#include "etna/hub/licence.h"
#include "support/test_support.h"

namespace etna::hub {
namespace {

struct Expected {
  const char* id;
  Weights weights;
  TrainingData data;
  Outputs outputs;
  Commercial commercial;
  bool research;
};

// The licence table, entry by entry: the four questions plus research use.
const Expected kExpected[] = {
    {"apache-2.0", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"mit", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"phi-mit", Weights::open, TrainingData::unavailable, Outputs::owned, Commercial::yes, true},
    {"bsd-3-clause", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"cc0-1.0", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"cc-by-4.0", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"cc-by-sa-4.0", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"cc-by-nc-4.0", Weights::open, TrainingData::unknown, Outputs::restricted, Commercial::no, true},
    {"cc-by-nc-sa-4.0", Weights::open, TrainingData::unknown, Outputs::restricted, Commercial::no, true},
    {"llama2", Weights::restricted, TrainingData::unavailable, Outputs::restricted, Commercial::conditional, true},
    {"llama3", Weights::restricted, TrainingData::unavailable, Outputs::restricted, Commercial::conditional, true},
    {"llama3.1", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::conditional, true},
    {"llama3.2", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::conditional, true},
    {"llama3.3", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::conditional, true},
    {"gemma", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::yes, true},
    {"qwen", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::conditional, true},
    {"qwen-research", Weights::restricted, TrainingData::unavailable, Outputs::restricted, Commercial::no, true},
    {"mrl", Weights::restricted, TrainingData::unavailable, Outputs::restricted, Commercial::no, true},
    {"openrail", Weights::open, TrainingData::unknown, Outputs::restricted, Commercial::yes, true},
    {"openrail++", Weights::open, TrainingData::unknown, Outputs::owned, Commercial::yes, true},
    {"openrail-m", Weights::open, TrainingData::unknown, Outputs::restricted, Commercial::yes, true},
    {"bigscience-openrail-m", Weights::open, TrainingData::unknown, Outputs::restricted, Commercial::yes, true},
    {"bigscience-bloom-rail-1.0", Weights::open, TrainingData::available, Outputs::restricted, Commercial::yes, true},
    {"creativeml-openrail-m", Weights::open, TrainingData::available, Outputs::owned, Commercial::yes, true},
    {"bigcode-openrail-m", Weights::open, TrainingData::available, Outputs::restricted, Commercial::yes, true},
    {"deepseek", Weights::restricted, TrainingData::unavailable, Outputs::owned, Commercial::yes, true},
};

TEST(LicenceTable, EveryEntryAnswersTheFourQuestions) {
  ASSERT_EQ(licence_table().size(), std::size(kExpected)) << "a table entry without a test (or the reverse)";
  for (const auto& e : kExpected) {
    SCOPED_TRACE(e.id);
    const LicenceTerms* t = find_licence(e.id);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->id, e.id);
    EXPECT_EQ(t->weights, e.weights);
    EXPECT_EQ(t->training_data, e.data);
    EXPECT_EQ(t->outputs, e.outputs);
    EXPECT_EQ(t->commercial, e.commercial);
    EXPECT_EQ(t->research, e.research);
    EXPECT_FALSE(t->name.empty());
    EXPECT_EQ(t->link.rfind("https://", 0), 0u) << t->link;
    EXPECT_FALSE(t->attribution.empty());
    // Whatever limits commercial use is named, so a refusal can quote it.
    if (t->commercial != Commercial::yes) {
      EXPECT_FALSE(t->clause.empty());
    }
  }
}

TEST(LicenceTable, IdsNamesAndAliasesAreUniqueAndCaseInsensitive) {
  std::set<std::string> seen;
  for (const auto& t : licence_table()) {
    EXPECT_TRUE(seen.insert(std::string(t.id)).second) << t.id;
    for (auto a : t.aliases) EXPECT_TRUE(seen.insert(std::string(a)).second) << a;
    EXPECT_EQ(find_licence(t.name), &t) << t.name;
  }
  EXPECT_EQ(find_licence("Apache-2.0")->id, "apache-2.0");
  EXPECT_EQ(find_licence(" LLAMA3.2 ")->id, "llama3.2");
  EXPECT_EQ(find_licence("tongyi-qianwen")->id, "qwen");
  EXPECT_EQ(find_licence("Llama 3.1 Community License")->id, "llama3.1");
  EXPECT_EQ(find_licence("other"), nullptr);
  EXPECT_EQ(find_licence(""), nullptr);
  EXPECT_EQ(find_licence("some-new-licence"), nullptr);
}

TEST(LicenceTable, LlamaClauseIsTheMonthlyUsersOne) {
  for (const char* id : {"llama2", "llama3", "llama3.1", "llama3.2", "llama3.3"})
    EXPECT_NE(find_licence(id)->clause.find("700 million monthly active users"), std::string_view::npos) << id;
}

TEST(LicenceUse, PersonalAlwaysResearchUnlessForbiddenCommercialByTerms) {
  auto rec = [](const char* id) { return make_licence_record(id, "", "", "gguf"); };
  EXPECT_TRUE(check_use(rec("cc-by-nc-4.0"), Use::personal).allowed);
  EXPECT_TRUE(check_use(rec("cc-by-nc-4.0"), Use::research).allowed);
  const UseCheck nc = check_use(rec("cc-by-nc-4.0"), Use::commercial);
  EXPECT_FALSE(nc.allowed);
  EXPECT_TRUE(nc.refused);
  EXPECT_NE(nc.message.find("NonCommercial"), std::string::npos) << nc.message;
  EXPECT_TRUE(check_use(rec("apache-2.0"), Use::commercial).allowed);
  EXPECT_TRUE(check_use(rec("mit"), Use::commercial).allowed);
  const UseCheck llama = check_use(rec("llama3.2"), Use::commercial);
  EXPECT_FALSE(llama.allowed);
  EXPECT_FALSE(llama.refused);  // conditional: an acceptance can allow it
  EXPECT_NE(llama.message.find("700 million"), std::string::npos);
  EXPECT_FALSE(check_use(rec("mrl"), Use::commercial).allowed);
  EXPECT_TRUE(check_use(rec("mrl"), Use::research).allowed);
  // Unknown is never assumed permissive.
  const UseCheck unknown = check_use(rec("my-own-terms"), Use::commercial);
  EXPECT_FALSE(unknown.allowed);
  EXPECT_FALSE(unknown.refused);
  EXPECT_NE(unknown.message.find("unknown"), std::string::npos);
  EXPECT_FALSE(check_use(LicenceRecord{}, Use::research).allowed);
  EXPECT_TRUE(check_use(LicenceRecord{}, Use::personal).allowed);
}

TEST(LicenceUse, ParseUse) {
  EXPECT_EQ(parse_use("Commercial"), Use::commercial);
  EXPECT_EQ(parse_use("research"), Use::research);
  EXPECT_EQ(parse_use("personal"), Use::personal);
  EXPECT_THROW(parse_use("business"), Error);
}

TEST(LicenceRecord, UnknownSaysReadTheModelCard) {
  LicenceRecord none;
  EXPECT_EQ(none.summary(), "unknown: read the model card");
  auto j = none.to_json();
  EXPECT_EQ(j["commercial"], "unknown: read the model card");
  EXPECT_FALSE(j["known"].get<bool>());
  LicenceRecord other = make_licence_record("other", "ACME Model Licence", "https://acme.example/licence", "model card");
  EXPECT_FALSE(other.known());
  EXPECT_EQ(other.summary(), "ACME Model Licence (unknown: read the model card)");
}

TEST(LicenceRecord, OtherWithAKnownNameMatches) {
  LicenceRecord r = make_licence_record("other", "qwen-research", "", "model card");
  ASSERT_TRUE(r.known());
  EXPECT_EQ(r.terms->id, "qwen-research");
  auto round = LicenceRecord::from_json(r.to_json());
  ASSERT_TRUE(round.known());
  EXPECT_EQ(round.terms->id, "qwen-research");
}

TEST(LicenceModelCard, FrontMatterKeysAndBaseModels) {
  const std::string card =
      "---\n"
      "language:\n- en\n"
      "license: other\n"
      "license_name: llama3.2\n"
      "license_link: \"https://www.llama.com/llama3_2/license/\"\n"
      "base_model:\n  - meta-llama/Llama-3.2-1B-Instruct\n"
      "tags: [gguf]\n"
      "---\n# Llama 3.2 GGUF\nlicense: apache-2.0 (body text is not front matter)\n";
  LicenceRecord r = licence_from_model_card(card);
  EXPECT_EQ(r.source, "model card");
  ASSERT_TRUE(r.known());
  EXPECT_EQ(r.terms->id, "llama3.2");
  EXPECT_EQ(r.link, "https://www.llama.com/llama3_2/license/");
  ASSERT_EQ(r.base_models.size(), 1u);
  EXPECT_EQ(r.base_models[0], "meta-llama/Llama-3.2-1B-Instruct");

  LicenceRecord s = licence_from_model_card("---\r\nlicense: apache-2.0\r\nbase_model: Qwen/Qwen2.5-0.5B\r\n---\r\n");
  ASSERT_TRUE(s.known());
  EXPECT_EQ(s.terms->id, "apache-2.0");
  EXPECT_EQ(s.base_models, std::vector<std::string>{"Qwen/Qwen2.5-0.5B"});

  EXPECT_EQ(licence_from_model_card("# no front matter\nlicense: mit\n").source, "");
  EXPECT_EQ(licence_from_model_card("---\nlicense: mit\n").source, "");  // never closed
  EXPECT_EQ(licence_from_model_card("").source, "");
}

TEST(LicenceGguf, ReadsLicenceAndBaseModelKeys) {
  ETNA_REQUIRE_SHARED(src, "models/stories260K.gguf");
  test::TempDir dir;
  auto in = gguf::GgufFile::open(src.string());
  auto w = gguf::GgufWriter::from_file(*in);
  w.set("general.license", gguf::Value::string("other"));
  w.set("general.license.name", gguf::Value::string("gemma"));
  w.set("general.license.link", gguf::Value::string("https://ai.google.dev/gemma/terms"));
  w.set("general.base_model.count", gguf::Value::unsigned_int(gguf::ValueType::UINT32, 2));
  w.set("general.base_model.0.name", gguf::Value::string("Gemma 2 2b It"));
  w.set("general.base_model.0.organization", gguf::Value::string("Google"));
  w.set("general.base_model.1.repo_url", gguf::Value::string("https://huggingface.co/x/y"));
  const std::string out = (dir / "g.gguf").string();
  w.write(out);
  LicenceRecord r = licence_from_gguf(*gguf::GgufFile::open(out));
  EXPECT_EQ(r.source, "gguf");
  ASSERT_TRUE(r.known());
  EXPECT_EQ(r.terms->id, "gemma");
  EXPECT_EQ(r.base_models, (std::vector<std::string>{"Google/Gemma 2 2b It", "https://huggingface.co/x/y"}));
  // The shared model declares nothing: unknown.
  LicenceRecord none = licence_from_gguf(*in);
  EXPECT_FALSE(none.known());
}

TEST(LicenceFile, RecognisedByTitle) {
  auto id = [](const std::string& text) {
    LicenceRecord r = licence_from_licence_file(text);
    return r.known() ? std::string(r.terms->id) : std::string("none");
  };
  EXPECT_EQ(id("                                 Apache License\n                           Version 2.0, January 2004\n"), "apache-2.0");
  EXPECT_EQ(id("MIT License\n\nCopyright (c) Microsoft Corporation.\n"), "mit");
  EXPECT_EQ(id("Copyright 2024\n\nPermission is hereby granted, free of charge, to any person"), "mit");
  EXPECT_EQ(id("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, 2024"), "llama3.2");
  EXPECT_EQ(id("META LLAMA 3 COMMUNITY LICENSE AGREEMENT\n"), "llama3");
  EXPECT_EQ(id("Gemma Terms of Use\n\nLast modified: February 21, 2024"), "gemma");
  EXPECT_EQ(id("Qwen RESEARCH LICENSE AGREEMENT\n"), "qwen-research");
  EXPECT_EQ(id("Attribution-NonCommercial 4.0 International\n"), "cc-by-nc-4.0");
  EXPECT_EQ(id("Some custom terms. You may not use this."), "none");
  EXPECT_EQ(licence_from_licence_file("").source, "");
}

TEST(LicenceMerge, KnownWinsAndBaseModelsJoin) {
  LicenceRecord a = make_licence_record("", "", "", "");
  a.base_models = {"x/a"};
  LicenceRecord b = make_licence_record("mit", "", "", "model card");
  b.base_models = {"x/a", "x/b"};
  LicenceRecord m = merge_licence(a, b);
  ASSERT_TRUE(m.known());
  EXPECT_EQ(m.source, "model card");
  EXPECT_EQ(m.base_models, (std::vector<std::string>{"x/a", "x/b"}));
  LicenceRecord g = make_licence_record("apache-2.0", "", "", "gguf");
  EXPECT_EQ(merge_licence(g, b).terms->id, "apache-2.0");
}

}  // namespace
}  // namespace etna::hub
