// PDF through poppler-cpp: the text of each page (poppler's reading order), split into
// paragraphs at blank lines. Positions are per page: lines and bytes of that page's text.
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>

#include <memory>
#include <mutex>

#include "etna/base/error.h"
#include "etna/rag/loader.h"

namespace etna::rag {
namespace {

void quiet(const std::string&, void*) {}

}  // namespace

Document load_pdf(const std::string& bytes) {
  static std::once_flag silenced;
  std::call_once(silenced, [] { poppler::set_debug_error_function(quiet, nullptr); });
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) fail(ErrorKind::limit, "PDF larger than 2 GiB");
  std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!pdf) fail(ErrorKind::corrupt, "not a readable PDF");
  if (pdf->is_locked()) fail(ErrorKind::unsupported, "PDF is encrypted");
  Document doc;
  doc.format = Format::pdf;
  doc.pages = pdf->pages();
  for (int p = 0; p < doc.pages; ++p) {
    std::unique_ptr<poppler::page> page(pdf->create_page(p));
    if (!page) continue;
    const poppler::byte_array utf8 = page->text().to_utf8();
    std::string text(utf8.begin(), utf8.end());
    // poppler separates pages with form feeds and may use \r\n; normalise to \n.
    std::string clean;
    clean.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
      clean += (text[i] == '\f' || text[i] == '\r') ? '\n' : text[i];
    }
    Document pd = load_text(std::move(clean));
    if (!doc.text.empty()) doc.text += "\n\n";
    const size_t base = doc.text.size();
    doc.text += pd.text;
    for (Block b : pd.blocks) {
      b.begin += base;
      b.end += base;
      b.page = p + 1;
      doc.blocks.push_back(b);
    }
  }
  return doc;
}

}  // namespace etna::rag
