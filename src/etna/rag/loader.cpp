// Format detection and helpers shared by the loaders.
#include "etna/rag/loader.h"

#include <algorithm>
#include <cctype>

namespace etna::rag {

std::string format_name(Format f) {
  switch (f) {
    case Format::text: return "text";
    case Format::markdown: return "markdown";
    case Format::html: return "html";
    case Format::pdf: return "pdf";
  }
  return "text";
}

std::optional<Format> format_from_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".md" || ext == ".markdown" || ext == ".mdown" || ext == ".mkd") return Format::markdown;
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return Format::html;
  if (ext == ".pdf") return Format::pdf;
  if (ext == ".txt" || ext == ".text" || ext == ".rst" || ext == ".log" || ext == ".csv" || ext == ".tsv" ||
      ext == ".org" || ext == ".adoc" || ext == ".tex")
    return Format::text;
  return std::nullopt;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid.
size_t utf8_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

}  // namespace

bool looks_binary(std::string_view bytes) {
  const std::string_view head = bytes.substr(0, 65536);
  size_t bad = 0;
  for (size_t i = 0; i < head.size();) {
    const auto c = static_cast<unsigned char>(head[i]);
    if (c == 0) return true;
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' && c != '\v' && c != 0x1B) {
      ++bad, ++i;
      continue;
    }
    const size_t n = utf8_len(head, i);
    if (n == 0) {
      // A multi-byte character cut by the 64 KiB window is not evidence of binary data.
      if (i + 4 > head.size() && head.size() < bytes.size()) break;
      ++bad, ++i;
    } else {
      i += n;
    }
  }
  return bad * 10 > head.size();  // more than 10% garbage
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace etna::rag
