// Stop-string handling for streamed text: text that might be the beginning of a stop string is
// held back until the following text decides it, and nothing from a stop string onward is
// ever emitted.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace etna::engine {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);

  // Appends `text` and returns what is now safe to emit. After a stop string has been seen,
  // stopped() is true, the returned text ends just before it and later calls return "".
  std::string push(std::string_view text);
  // End of the stream: everything still held back (nothing after a stop).
  std::string flush();

  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }  // the stop string found, or ""

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace etna::engine
