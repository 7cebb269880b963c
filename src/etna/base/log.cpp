#include "etna/base/log.h"

#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace etna::log {

void init() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_color_mt("etna");
    logger->set_pattern("%^%l%$: %v");
    spdlog::set_default_logger(logger);
    const char* level = std::getenv("ETNA_LOG");
    spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
  });
}

}  // namespace etna::log
