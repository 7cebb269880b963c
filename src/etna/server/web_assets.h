// The web app's files (web/ in the source tree), compiled into the binary by cmake/embed_web.cmake.
#pragma once
#include <cstddef>
#include <span>

namespace etna::server {

struct WebAsset {
  const char* path;  // "/index.html", "/js/app.js", ... (relative to web/, leading '/')
  const char* data;  // the file's bytes (NUL-terminated for convenience; size excludes it)
  std::size_t size;
};

// Every embedded file, sorted by path.
std::span<const WebAsset> web_assets();

}  // namespace etna::server
