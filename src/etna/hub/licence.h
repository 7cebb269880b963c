// Licence records: what a user may do with a model. A built-in table describes the licences that
// cover the popular open-weight families (the seeds' questions: are the weights open, is the
// training data available, who owns the outputs, may it be used commercially, what must be
// credited); a model's record is read from its GGUF `general.license*` / `general.base_model.*`
// keys or its model card's YAML front matter and matched against the table. A licence the table
// does not know stays unknown ("unknown: read the model card"), never assumed permissive.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace etna::gguf {
class GgufFile;
}

namespace etna::hub {

enum class Weights { open, restricted };
enum class TrainingData { available, unavailable, unknown };
enum class Outputs { owned, restricted };
enum class Commercial { yes, no, conditional };
// What the user means to do with a model (`--use`).
enum class Use { personal, research, commercial };

struct LicenceTerms {
  std::string_view id;          // the Hugging Face / SPDX-style id, lower case ("llama3.2")
  std::string_view name;        // "Llama 3.2 Community License"
  std::string_view link;
  Weights weights;
  TrainingData training_data;   // what the family's publisher releases (the licence rarely says)
  Outputs outputs;
  Commercial commercial;
  bool research;                // research use allowed
  std::string_view attribution; // duties when redistributing or building on the model
  std::string_view clause;      // the clause that limits commercial (or other) use; "" when none
  std::vector<std::string_view> aliases;  // other ids and names it appears under (lower case)
};

// Every licence the table knows, in a stable order.
const std::vector<LicenceTerms>& licence_table();

// The table entry for an id, alias or licence name (case-insensitive); null when unknown.
const LicenceTerms* find_licence(std::string_view id_or_name);

std::string_view to_string(Weights w);
std::string_view to_string(TrainingData t);
std::string_view to_string(Outputs o);
std::string_view to_string(Commercial c);
std::string_view to_string(Use u);
// Parses "personal", "research" or "commercial". Throws etna::Error(invalid_argument).
Use parse_use(std::string_view s);

// One model's licence as found in its files, matched against the table.
struct LicenceRecord {
  std::string id;               // as declared ("" when nothing was declared)
  std::string name;             // declared name, else the table's
  std::string link;             // declared link, else the table's
  std::string source;           // where it was read: "gguf", "model card", "" (nothing found)
  const LicenceTerms* terms = nullptr;  // null: unknown
  std::vector<std::string> base_models;  // "org/name" or names of the models this derives from

  bool known() const { return terms != nullptr; }
  // "Apache License 2.0 (apache-2.0)" or "unknown: read the model card".
  std::string summary() const;
  // A short badge for tables: "commercial: yes", "non-commercial", "unknown".
  std::string badge() const;
  nlohmann::json to_json() const;
  static LicenceRecord from_json(const nlohmann::json& j);
};

// Builds a record from declared fields (any may be empty).
LicenceRecord make_licence_record(const std::string& id, const std::string& name, const std::string& link,
                                  const std::string& source);
// Reads general.license, general.license.name, general.license.link and general.base_model.*.
LicenceRecord licence_from_gguf(const gguf::GgufFile& file);
// Reads `license`, `license_name`, `license_link` and `base_model` from a model card's YAML front
// matter (the block between the leading "---" lines of README.md). Nothing found: source "".
LicenceRecord licence_from_model_card(std::string_view readme);
// Recognises a LICENSE file's text by the title lines of the licences in the table (Apache 2.0,
// MIT, the Llama community licences, Gemma, Qwen, CC, ...). Nothing recognised: source "".
LicenceRecord licence_from_licence_file(std::string_view text);
// The first record that knows its licence wins; else the first that declares anything; base
// models are merged.
LicenceRecord merge_licence(const LicenceRecord& primary, const LicenceRecord& secondary);

// Why `use` is not allowed without an explicit acceptance, or nullopt when it is allowed.
// `refused` is set when no acceptance can change it (the licence forbids that use).
struct UseCheck {
  bool allowed = true;
  bool refused = false;   // forbidden outright (e.g. commercial use of a CC-BY-NC model)
  std::string message;    // one line naming the clause
};
UseCheck check_use(const LicenceRecord& record, Use use);

}  // namespace etna::hub
