#include "cli/data_dir.h"

#include <cstdlib>

#include "etna/base/error.h"

namespace etna::cli {

std::filesystem::path data_dir(const std::string& arg) {
  namespace fs = std::filesystem;
  if (!arg.empty()) return arg;
  if (const char* d = std::getenv("ETNA_DATA"); d && *d) return d;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return fs::path(x) / "etna";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".local" / "share" / "etna";
  fail(ErrorKind::invalid_argument, "cannot find a data directory: set ETNA_DATA or HOME, or pass --data DIR");
}

}  // namespace etna::cli
