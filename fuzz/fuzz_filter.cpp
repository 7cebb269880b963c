// libFuzzer target for the Qdrant filter parser on untrusted request bodies: bytes are parsed as
// a bounded JSON body, its "filter" parsed and evaluated against a fixed payload. Every input
// must evaluate or be refused with etna::Error (no crash, no unbounded recursion).
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/base/json_limits.h"
#include "etna/store/filter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json payload = nlohmann::json::parse(
      R"({"city": "London", "n": 7, "tags": ["a", "b"], "geo": {"lat": 1.5}, "items": [{"k": 1}, {"k": 2}], "none": null})");
  try {
    nlohmann::json body = etna::parse_json_bounded(
        std::string_view(reinterpret_cast<const char*>(data), size), etna::kMaxJsonDepth, "fuzz body");
    const nlohmann::json& f = body.is_object() && body.contains("filter") ? body["filter"] : body;
    auto filter = etna::store::parse_filter(f);
    if (filter) (void)filter->matches(etna::store::PointId(uint64_t{7}), payload);
  } catch (const etna::Error&) {
  }
  return 0;
}
