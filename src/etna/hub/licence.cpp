#include "etna/hub/licence.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "etna/base/error.h"
#include "etna/gguf/gguf_file.h"

namespace etna::hub {
namespace {

using W = Weights;
using T = TrainingData;
using O = Outputs;
using C = Commercial;

constexpr std::string_view kLlamaMau =
    "more than 700 million monthly active users in the preceding calendar month needs a separate licence from Meta";
constexpr std::string_view kNonCommercial = "NonCommercial: use primarily intended for commercial advantage is not licensed";

std::vector<LicenceTerms> build_table() {
  return {
      {"apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0", W::open, T::unknown, O::owned,
       C::yes, true, "keep the licence and NOTICE file; state changes you made", "", {"apache 2.0", "apache license 2.0", "apache"}},
      {"mit", "MIT License", "https://opensource.org/license/mit", W::open, T::unknown, O::owned, C::yes, true,
       "keep the copyright and permission notice", "", {"mit license"}},
      {"phi-mit", "Phi MIT License (Microsoft)", "https://huggingface.co/microsoft/phi-4/blob/main/LICENSE", W::open,
       T::unavailable, O::owned, C::yes, true, "keep Microsoft's copyright and permission notice", "",
       {"phi", "microsoft-mit"}},
      {"bsd-3-clause", "BSD 3-Clause License", "https://opensource.org/license/bsd-3-clause", W::open, T::unknown,
       O::owned, C::yes, true, "keep the copyright notice and disclaimer", "", {}},
      {"cc0-1.0", "Creative Commons Zero 1.0", "https://creativecommons.org/publicdomain/zero/1.0/", W::open,
       T::unknown, O::owned, C::yes, true, "none", "", {}},
      {"cc-by-4.0", "Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/", W::open,
       T::unknown, O::owned, C::yes, true, "credit the creator, link the licence, say what you changed", "", {}},
      {"cc-by-sa-4.0", "Creative Commons Attribution-ShareAlike 4.0", "https://creativecommons.org/licenses/by-sa/4.0/",
       W::open, T::unknown, O::owned, C::yes, true,
       "credit the creator, link the licence, say what you changed; adaptations under the same licence", "", {}},
      {"cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0",
       "https://creativecommons.org/licenses/by-nc/4.0/", W::open, T::unknown, O::restricted, C::no, true,
       "credit the creator, link the licence, say what you changed", kNonCommercial, {}},
      {"cc-by-nc-sa-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
       "https://creativecommons.org/licenses/by-nc-sa/4.0/", W::open, T::unknown, O::restricted, C::no, true,
       "credit the creator, link the licence; adaptations under the same licence", kNonCommercial, {}},
      {"llama2", "Llama 2 Community License", "https://ai.meta.com/llama/license/", W::restricted, T::unavailable,
       O::restricted, C::conditional, true,
       "ship a copy of the licence; keep the Llama 2 notice; follow the Acceptable Use Policy; outputs may not "
       "improve other large language models",
       kLlamaMau, {"llama 2 community license", "llama-2"}},
      {"llama3", "Meta Llama 3 Community License", "https://www.llama.com/llama3/license/", W::restricted,
       T::unavailable, O::restricted, C::conditional, true,
       "display \"Built with Meta Llama 3\"; derived model names start with \"Llama 3\"; follow the Acceptable Use "
       "Policy; outputs may not improve non-Llama models",
       kLlamaMau, {"llama 3 community license", "meta llama 3 community license", "llama-3"}},
      {"llama3.1", "Llama 3.1 Community License", "https://www.llama.com/llama3_1/license/", W::restricted,
       T::unavailable, O::owned, C::conditional, true,
       "display \"Built with Llama\"; derived model names start with \"Llama\"; ship the licence; follow the "
       "Acceptable Use Policy",
       kLlamaMau, {"llama 3.1 community license", "llama-3.1"}},
      {"llama3.2", "Llama 3.2 Community License", "https://www.llama.com/llama3_2/license/", W::restricted,
       T::unavailable, O::owned, C::conditional, true,
       "display \"Built with Llama\"; derived model names start with \"Llama\"; ship the licence; follow the "
       "Acceptable Use Policy",
       kLlamaMau, {"llama 3.2 community license", "llama-3.2"}},
      {"llama3.3", "Llama 3.3 Community License", "https://www.llama.com/llama3_3/license/", W::restricted,
       T::unavailable, O::owned, C::conditional, true,
       "display \"Built with Llama\"; derived model names start with \"Llama\"; ship the licence; follow the "
       "Acceptable Use Policy",
       kLlamaMau, {"llama 3.3 community license", "llama-3.3"}},
      {"gemma", "Gemma Terms of Use", "https://ai.google.dev/gemma/terms", W::restricted, T::unavailable, O::owned,
       C::yes, true,
       "pass the Gemma terms and use restrictions on to recipients; mark modified files; follow the Prohibited Use "
       "Policy",
       "", {"gemma terms of use", "gemma-terms"}},
      {"qwen", "Qwen License Agreement (Tongyi Qianwen)", "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE",
       W::restricted, T::unavailable, O::owned, C::conditional, true,
       "ship the licence; display \"Built with Qwen\" or \"Improved using Qwen\"",
       "a product or service with more than 100 million monthly active users needs a separate licence from Alibaba Cloud",
       {"tongyi-qianwen", "qwen license agreement", "tongyi qianwen license agreement"}},
      {"qwen-research", "Qwen Research License Agreement",
       "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE", W::restricted, T::unavailable,
       O::restricted, C::no, true, "ship the licence; display \"Built with Qwen\"",
       "licensed for non-commercial research and evaluation only; commercial use needs a licence from Alibaba Cloud",
       {"qwen research license agreement", "tongyi-qianwen-research"}},
      {"mrl", "Mistral AI Research License", "https://mistral.ai/licenses/MRL-0.1.md", W::restricted,
       T::unavailable, O::restricted, C::no, true, "ship the licence; keep the notices; mark modifications",
       "licensed for research and personal non-commercial use only; commercial use needs a licence from Mistral AI",
       {"mistral ai research license", "mistral research license", "mistral-research"}},
      {"openrail", "Open RAIL License", "https://huggingface.co/blog/open_rail", W::open, T::unknown, O::restricted,
       C::yes, true, "pass the use restrictions on to recipients; keep the licence", "", {"open rail"}},
      {"openrail++", "Open RAIL++-M License", "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md",
       W::open, T::unknown, O::owned, C::yes, true, "pass the use restrictions (Attachment A) on to recipients", "", {}},
      {"openrail-m", "Open RAIL-M License", "https://www.licenses.ai/blog/2022/8/26/bigscience-open-rail-m-license",
       W::open, T::unknown, O::restricted, C::yes, true,
       "pass the use restrictions (Attachment A) on to recipients; keep the licence", "", {"open rail-m"}},
      {"bigscience-openrail-m", "BigScience Open RAIL-M License",
       "https://www.licenses.ai/blog/2022/8/26/bigscience-open-rail-m-license", W::open, T::unknown, O::restricted,
       C::yes, true, "pass the use restrictions (Attachment A) on to recipients; keep the licence", "", {}},
      {"bigscience-bloom-rail-1.0", "BigScience RAIL License v1.0", "https://huggingface.co/spaces/bigscience/license",
       W::open, T::available, O::restricted, C::yes, true,
       "pass the use restrictions (Attachment A) on to recipients; keep the licence", "",
       {"bigscience rail", "bigscience-rail"}},
      {"creativeml-openrail-m", "CreativeML Open RAIL-M", "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
       W::open, T::available, O::owned, C::yes, true, "pass the use restrictions (Attachment A) on to recipients", "", {}},
      {"bigcode-openrail-m", "BigCode Open RAIL-M v1", "https://www.bigcode-project.org/docs/pages/model-license/",
       W::open, T::available, O::restricted, C::yes, true,
       "pass the use restrictions (Attachment A) on to recipients; keep the licence", "", {}},
      {"deepseek", "DeepSeek License Agreement", "https://github.com/deepseek-ai/DeepSeek-LLM/blob/main/LICENSE-MODEL",
       W::restricted, T::unavailable, O::owned, C::yes, true, "pass the use restrictions on to recipients", "",
       {"deepseek license agreement"}},
  };
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Trim blanks and quotes the YAML or a hand-written key may carry.
  const auto b = out.find_first_not_of(" \t\"'");
  const auto e = out.find_last_not_of(" \t\"'\r");
  return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

std::optional<std::string> gguf_string(const gguf::GgufFile& f, const std::string& key) {
  const gguf::Value* v = f.find(key);
  if (!v || v->type() != gguf::ValueType::STRING) return std::nullopt;
  return v->as_string();
}

}  // namespace

const std::vector<LicenceTerms>& licence_table() {
  static const std::vector<LicenceTerms> table = build_table();
  return table;
}

const LicenceTerms* find_licence(std::string_view id_or_name) {
  const std::string key = lower(id_or_name);
  if (key.empty() || key == "other" || key == "unknown") return nullptr;
  for (const auto& t : licence_table()) {
    if (key == t.id || key == lower(t.name)) return &t;
    for (auto a : t.aliases)
      if (key == a) return &t;
  }
  return nullptr;
}

std::string_view to_string(Weights w) { return w == Weights::open ? "open" : "restricted"; }
std::string_view to_string(TrainingData t) {
  switch (t) {
    case TrainingData::available: return "available";
    case TrainingData::unavailable: return "unavailable";
    default: return "unknown";
  }
}
std::string_view to_string(Outputs o) { return o == Outputs::owned ? "user owns" : "restricted"; }
std::string_view to_string(Commercial c) {
  switch (c) {
    case Commercial::yes: return "yes";
    case Commercial::no: return "no";
    default: return "conditional";
  }
}
std::string_view to_string(Use u) {
  switch (u) {
    case Use::personal: return "personal";
    case Use::research: return "research";
    default: return "commercial";
  }
}

Use parse_use(std::string_view s) {
  const std::string k = lower(s);
  if (k == "personal") return Use::personal;
  if (k == "research") return Use::research;
  if (k == "commercial") return Use::commercial;
  fail(ErrorKind::invalid_argument, "--use must be personal, research or commercial, got '{}'", s);
}

std::string LicenceRecord::summary() const {
  if (!terms) {
    if (id.empty() && name.empty()) return "unknown: read the model card";
    return fmt::format("{} (unknown: read the model card)", name.empty() ? id : name);
  }
  return fmt::format("{} ({})", terms->name, terms->id);
}

std::string LicenceRecord::badge() const {
  if (!terms) return "licence unknown";
  switch (terms->commercial) {
    case Commercial::yes: return fmt::format("{}: commercial ok", terms->id);
    case Commercial::no: return fmt::format("{}: non-commercial", terms->id);
    default: return fmt::format("{}: commercial conditional", terms->id);
  }
}

nlohmann::json LicenceRecord::to_json() const {
  nlohmann::json j;
  j["id"] = terms ? std::string(terms->id) : id;
  j["declared"] = id;
  j["name"] = !name.empty() ? name : (terms ? std::string(terms->name) : std::string());
  j["link"] = !link.empty() ? link : (terms ? std::string(terms->link) : std::string());
  j["source"] = source;
  j["known"] = known();
  j["summary"] = summary();
  if (terms) {
    j["weights"] = to_string(terms->weights);
    j["training_data"] = to_string(terms->training_data);
    j["outputs"] = to_string(terms->outputs);
    j["commercial"] = to_string(terms->commercial);
    j["research"] = terms->research;
    j["attribution"] = terms->attribution;
    j["clause"] = terms->clause;
  } else {
    for (const char* k : {"weights", "training_data", "outputs", "commercial"}) j[k] = "unknown: read the model card";
  }
  j["base_models"] = base_models;
  return j;
}

LicenceRecord LicenceRecord::from_json(const nlohmann::json& j) {
  LicenceRecord r = make_licence_record(j.value("declared", ""), j.value("name", ""), j.value("link", ""),
                                        j.value("source", ""));
  if (j.contains("base_models") && j["base_models"].is_array())
    for (const auto& b : j["base_models"])
      if (b.is_string()) r.base_models.push_back(b.get<std::string>());
  return r;
}

LicenceRecord make_licence_record(const std::string& id, const std::string& name, const std::string& link,
                                  const std::string& source) {
  LicenceRecord r;
  r.id = id;
  r.name = name;
  r.link = link;
  r.source = source;
  // "other" plus a license_name is how Hugging Face cards declare non-SPDX licences.
  r.terms = find_licence(id);
  if (!r.terms && !name.empty()) r.terms = find_licence(name);
  return r;
}

LicenceRecord licence_from_gguf(const gguf::GgufFile& f) {
  const auto id = gguf_string(f, "general.license");
  const auto name = gguf_string(f, "general.license.name");
  const auto link = gguf_string(f, "general.license.link");
  const bool any = id || name || link;
  LicenceRecord r = make_licence_record(id.value_or(""), name.value_or(""), link.value_or(""), any ? "gguf" : "");
  if (const gguf::Value* n = f.find("general.base_model.count"); n && n->is_integer()) {
    const int64_t count = std::clamp<int64_t>(n->as_int(), 0, 64);
    for (int64_t i = 0; i < count; ++i) {
      const std::string p = fmt::format("general.base_model.{}.", i);
      auto org = gguf_string(f, p + "organization");
      auto nm = gguf_string(f, p + "name");
      auto repo = gguf_string(f, p + "repo_url");
      std::string b = nm ? (org ? *org + "/" + *nm : *nm) : repo.value_or("");
      if (!b.empty()) r.base_models.push_back(b);
    }
  }
  return r;
}

LicenceRecord licence_from_model_card(std::string_view readme) {
  // Only the front matter: "---\n...\n---". Flat keys and "- item" lists are all that is read.
  std::string id, name, link;
  std::vector<std::string> bases;
  size_t pos = 0;
  auto next_line = [&](std::string_view& line) {
    if (pos >= readme.size()) return false;
    size_t e = readme.find('\n', pos);
    if (e == std::string_view::npos) e = readme.size();
    line = readme.substr(pos, e - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = e + 1;
    return true;
  };
  std::string_view line;
  if (!next_line(line) || line != "---") return {};
  std::string list_key;
  bool closed = false;
  while (next_line(line)) {
    if (line == "---" || line == "...") {
      closed = true;
      break;
    }
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == ' ' || line[0] == '-') {
      std::string item(line);
      const auto dash = item.find_first_not_of(' ');
      if (list_key == "base_model" && dash != std::string::npos && item[dash] == '-') {
        item = item.substr(dash + 1);
        const auto b = item.find_first_not_of(" \t\"'");
        const auto e = item.find_last_not_of(" \t\"'\r");
        if (b != std::string::npos) bases.push_back(item.substr(b, e - b + 1));
      }
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string key = lower(line.substr(0, colon));
    std::string_view raw = line.substr(colon + 1);
    std::string value(raw);
    const auto b = value.find_first_not_of(" \t\"'");
    const auto e = value.find_last_not_of(" \t\"'\r");
    value = b == std::string::npos ? std::string() : value.substr(b, e - b + 1);
    list_key = value.empty() ? key : "";
    if (key == "license") id = value;
    else if (key == "license_name") name = value;
    else if (key == "license_link") link = value;
    else if (key == "base_model" && !value.empty()) bases.push_back(value);
  }
  if (!closed) return {};
  const bool any = !id.empty() || !name.empty() || !link.empty();
  LicenceRecord r = make_licence_record(id, name, link, any ? "model card" : "");
  r.base_models = bases;
  return r;
}

LicenceRecord licence_from_licence_file(std::string_view text) {
  // Titles as they open the licences' own texts, most specific first (lower case).
  static const std::pair<const char*, const char*> titles[] = {
      {"llama 3.3 community license", "llama3.3"},
      {"llama 3.2 community license", "llama3.2"},
      {"llama 3.1 community license", "llama3.1"},
      {"meta llama 3 community license", "llama3"},
      {"llama 2 community license", "llama2"},
      {"gemma terms of use", "gemma"},
      {"qwen research license agreement", "qwen-research"},
      {"tongyi qianwen research license", "qwen-research"},
      {"qwen license agreement", "qwen"},
      {"tongyi qianwen license agreement", "qwen"},
      {"mistral ai research license", "mrl"},
      {"attribution-noncommercial-sharealike 4.0 international", "cc-by-nc-sa-4.0"},
      {"attribution-noncommercial 4.0 international", "cc-by-nc-4.0"},
      {"attribution-sharealike 4.0 international", "cc-by-sa-4.0"},
      {"attribution 4.0 international", "cc-by-4.0"},
      {"bigscience rail license", "bigscience-bloom-rail-1.0"},
      {"apache license", "apache-2.0"},  // with "version 2.0"
      {"mit license", "mit"},
  };
  // Only the opening matters: a licence's title comes first, later text may quote other licences.
  std::string head = lower(text.substr(0, std::min<size_t>(text.size(), 2000)));
  for (char& c : head)
    if (c == '\r' || c == '\t') c = ' ';
  for (const auto& [title, id] : titles) {
    if (head.find(title) == std::string::npos) continue;
    if (std::string_view(id) == "apache-2.0" && head.find("version 2.0") == std::string::npos) continue;
    return make_licence_record(id, "", "", "licence file");
  }
  if (head.find("permission is hereby granted, free of charge") != std::string::npos)
    return make_licence_record("mit", "", "", "licence file");
  return {};
}

LicenceRecord merge_licence(const LicenceRecord& primary, const LicenceRecord& secondary) {
  LicenceRecord r;
  if (primary.known()) r = primary;
  else if (secondary.known()) r = secondary;
  else if (!primary.source.empty()) r = primary;
  else r = secondary;
  r.base_models.clear();
  for (const auto* src : {&primary, &secondary})
    for (const auto& b : src->base_models)
      if (std::find(r.base_models.begin(), r.base_models.end(), b) == r.base_models.end()) r.base_models.push_back(b);
  return r;
}

UseCheck check_use(const LicenceRecord& record, Use use) {
  UseCheck c;
  if (use == Use::personal) return c;  // every licence in the table allows private use; unknown is shown
  const LicenceTerms* t = record.terms;
  if (!t) {
    c.allowed = false;
    c.message = fmt::format("the licence of this model is unknown ({}): {} use is not assumed; read the model card, "
                            "then pass --accept-licence to record that you may",
                            record.id.empty() && record.name.empty() ? "none declared"
                                                                     : (record.name.empty() ? record.id : record.name),
                            to_string(use));
    return c;
  }
  if (use == Use::research) {
    if (!t->research) {
      c.allowed = false;
      c.refused = true;
      c.message = fmt::format("{} does not allow research use: {}", t->name, t->clause);
    }
    return c;
  }
  switch (t->commercial) {
    case Commercial::yes: return c;
    case Commercial::no:
      c.allowed = false;
      c.refused = true;
      c.message = fmt::format("{} ({}) forbids commercial use: {}", t->name, t->id, t->clause);
      return c;
    default:
      c.allowed = false;
      c.message = fmt::format("{} ({}) allows commercial use only on a condition: {}; pass --accept-licence to record "
                              "that you meet it",
                              t->name, t->id, t->clause);
      return c;
  }
}

}  // namespace etna::hub
