// Document loaders: plain text, Markdown, HTML (gumbo) and PDF (poppler-cpp) turned into one
// extracted text with blocks (paragraphs, headings) that remember where they came from in the
// source file (page, line range, byte range), so every chunk can be cited precisely.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace etna::rag {

enum class Format { text, markdown, html, pdf };
std::string format_name(Format f);

// A paragraph-like piece of a document. [begin, end) indexes Document::text. Source positions:
// line_start/line_end are 1-based inclusive, src_byte_start/src_byte_end a half-open byte range
// of the file (PDF: of the page's extracted text, lines counted within the page).
// verbatim: Document::text[begin,end) equals those source bytes, so a sub-range maps exactly.
struct Block {
  size_t begin = 0, end = 0;
  int page = 0;           // 1-based PDF page; 0 for formats without pages
  int heading_level = 0;  // 1..6 for a heading, 0 otherwise
  int line_start = 1, line_end = 1;
  uint64_t src_byte_start = 0, src_byte_end = 0;
  bool verbatim = false;
};

struct Document {
  std::filesystem::path path;
  Format format = Format::text;
  std::string text;  // extracted text; blocks index into it
  std::vector<Block> blocks;
  int pages = 0;  // PDF page count, 0 otherwise
};

// Format by file extension; nullopt when the extension is unknown (the caller may sniff).
std::optional<Format> format_from_extension(const std::filesystem::path& path);

// True when `bytes` looks binary: a NUL byte, or many control bytes / invalid UTF-8 in the
// first 64 KiB.
bool looks_binary(std::string_view bytes);

// Parsers over the whole file content. They never throw on odd input except load_pdf, which
// throws etna::Error(corrupt) when the bytes are not a readable PDF (or it is encrypted), and
// load_html, which throws etna::Error(limit) when parsing would need more than 256 MiB + 16 x the
// file's size, or the elements nest deeper than 1024 levels, or there are more than 4 M nodes.
Document load_text(std::string bytes);
Document load_markdown(std::string bytes);
Document load_html(const std::string& bytes);
Document load_pdf(const std::string& bytes);

// Inflates gzip data (RFC 1952; concatenated members too) into *out. False with *reason set
// when the data is not valid gzip or would inflate to more than max_bytes (a "zip bomb").
bool gunzip(std::string_view gz, uint64_t max_bytes, std::string* out, std::string* reason);

// Replaces invalid UTF-8 sequences with U+FFFD (for JSON output of arbitrary file text).
std::string sanitize_utf8(std::string_view s);

}  // namespace etna::rag
