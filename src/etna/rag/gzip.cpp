// gzip decompression for `.gz` documents, through zlib with its gzip header handling.
#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "etna/rag/loader.h"

namespace etna::rag {

bool gunzip(std::string_view gz, uint64_t max_bytes, std::string* out, std::string* reason) {
  out->clear();
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    *reason = "cannot start gzip decompression";
    return false;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(gz.size(), UINT32_MAX));
  size_t fed = zs.avail_in;
  char buf[65536];
  int rc = Z_OK;
  bool ok = true;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      *reason = fmt::format("not valid gzip data ({})", zs.msg ? zs.msg : "inflate failed");
      ok = false;
      break;
    }
    out->append(buf, sizeof buf - zs.avail_out);
    if (out->size() > max_bytes) {
      *reason = fmt::format("inflates to more than the {} MB limit", max_bytes >> 20);
      ok = false;
      break;
    }
    if (zs.avail_in == 0 && fed < gz.size()) {
      const size_t more = std::min<size_t>(gz.size() - fed, UINT32_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data() + fed));
      zs.avail_in = static_cast<uInt>(more);
      fed += more;
    }
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;  // done
      inflateReset(&zs);            // another member follows
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && zs.avail_out != 0) {
      *reason = "truncated gzip data";
      ok = false;
      break;
    }
  }
  inflateEnd(&zs);
  if (!ok) out->clear();
  return ok;
}

}  // namespace etna::rag
