// Logging to stderr through spdlog: one place to set the level (ETNA_LOG=debug|info|warn|error).
#pragma once
#include <spdlog/spdlog.h>

namespace etna::log {

// Sets up the default logger from ETNA_LOG once; later calls do nothing.
void init();

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::warn;

}  // namespace etna::log
