// What `etna info` prints, shared with `etna show` (which adds the library's record).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace etna::cli {

// The description `etna info --json` prints. Throws etna::Error for unreadable files.
nlohmann::ordered_json describe_model_file(const std::string& path, bool with_tensors);
// Prints a description as `etna info` does.
void print_model_description(const nlohmann::ordered_json& d);
// Appends the licence block (a LicenceRecord's JSON) as aligned "label value" lines.
void print_licence_lines(const nlohmann::ordered_json& licence, std::string& out);

}  // namespace etna::cli
