// HTML through gumbo (an HTML5 parser, so any tag soup parses). Text of <script>, <style>,
// <noscript>, <template> and comments is dropped; block-level elements end paragraphs; <h1>..<h6>
// become heading blocks; whitespace collapses except inside <pre>. Each block records the source
// lines and bytes its text nodes came from (entity-decoded text, so blocks are not verbatim).
#include <gumbo.h>

#include <algorithm>
#include <memory>

#include "etna/rag/loader.h"

namespace etna::rag {
namespace {

bool is_dropped(GumboTag t) {
  return t == GUMBO_TAG_SCRIPT || t == GUMBO_TAG_STYLE || t == GUMBO_TAG_NOSCRIPT || t == GUMBO_TAG_TEMPLATE ||
         t == GUMBO_TAG_HEAD || t == GUMBO_TAG_SVG || t == GUMBO_TAG_IFRAME || t == GUMBO_TAG_OBJECT;
}

bool is_block(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_P: case GUMBO_TAG_DIV: case GUMBO_TAG_SECTION: case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_HEADER: case GUMBO_TAG_FOOTER: case GUMBO_TAG_NAV: case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_MAIN: case GUMBO_TAG_UL: case GUMBO_TAG_OL: case GUMBO_TAG_LI: case GUMBO_TAG_DL:
    case GUMBO_TAG_DT: case GUMBO_TAG_DD: case GUMBO_TAG_TABLE: case GUMBO_TAG_TR: case GUMBO_TAG_TD:
    case GUMBO_TAG_TH: case GUMBO_TAG_PRE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_BR: case GUMBO_TAG_HR:
    case GUMBO_TAG_FIGURE: case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FORM: case GUMBO_TAG_BODY:
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_CAPTION: case GUMBO_TAG_TITLE:
      return true;
    default:
      return false;
  }
}

int heading_level(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_H1: return 1;
    case GUMBO_TAG_H2: return 2;
    case GUMBO_TAG_H3: return 3;
    case GUMBO_TAG_H4: return 4;
    case GUMBO_TAG_H5: return 5;
    case GUMBO_TAG_H6: return 6;
    default: return 0;
  }
}

int count_newlines(const char* p, size_t n) { return static_cast<int>(std::count(p, p + n, '\n')); }

class Extractor {
 public:
  explicit Extractor(Document& doc) : doc_(doc) {}

  void walk(const GumboNode* node, bool pre) {
    switch (node->type) {
      case GUMBO_NODE_TEXT:
      case GUMBO_NODE_WHITESPACE:
      case GUMBO_NODE_CDATA:
        add_text(node->v.text, pre);
        return;
      case GUMBO_NODE_ELEMENT:
      case GUMBO_NODE_TEMPLATE: {
        const GumboElement& e = node->v.element;
        if (is_dropped(e.tag)) {
          if (e.tag == GUMBO_TAG_HEAD) walk_title(node);
          return;
        }
        const int level = heading_level(e.tag);
        const bool block = level > 0 || is_block(e.tag);
        if (block) flush();
        if (level > 0) heading_ = level;
        const bool in_pre = pre || e.tag == GUMBO_TAG_PRE || e.tag == GUMBO_TAG_TEXTAREA;
        for (unsigned i = 0; i < e.children.length; ++i)
          walk(static_cast<const GumboNode*>(e.children.data[i]), in_pre);
        if (block) flush();
        return;
      }
      case GUMBO_NODE_DOCUMENT:
        for (unsigned i = 0; i < node->v.document.children.length; ++i)
          walk(static_cast<const GumboNode*>(node->v.document.children.data[i]), pre);
        return;
      default:
        return;  // comments
    }
  }

  void flush() {
    while (!cur_.empty() && cur_.back() == ' ') cur_.pop_back();
    if (!cur_.empty()) {
      if (!doc_.text.empty()) doc_.text += "\n\n";
      Block b;
      b.begin = doc_.text.size();
      doc_.text += cur_;
      b.end = doc_.text.size();
      b.heading_level = heading_;
      b.line_start = line_start_;
      b.line_end = line_end_;
      b.src_byte_start = byte_start_;
      b.src_byte_end = byte_end_;
      doc_.blocks.push_back(b);
    }
    cur_.clear();
    heading_ = 0;
    have_pos_ = false;
  }

 private:
  // <title> inside <head> is kept as a heading; the rest of <head> is dropped.
  void walk_title(const GumboNode* head) {
    const GumboElement& e = head->v.element;
    for (unsigned i = 0; i < e.children.length; ++i) {
      auto* c = static_cast<const GumboNode*>(e.children.data[i]);
      if (c->type == GUMBO_NODE_ELEMENT && c->v.element.tag == GUMBO_TAG_TITLE) {
        flush();
        heading_ = 1;
        for (unsigned k = 0; k < c->v.element.children.length; ++k)
          walk(static_cast<const GumboNode*>(c->v.element.children.data[k]), false);
        flush();
      }
    }
  }

  void add_text(const GumboText& t, bool pre) {
    const std::string_view s(t.text);
    bool any = false;
    for (char c : s) {
      const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
      if (pre) {
        if (c != '\r') cur_ += c;
        any = any || !space;
      } else if (space) {
        if (!cur_.empty() && cur_.back() != ' ') cur_ += ' ';
      } else {
        cur_ += c;
        any = true;
      }
    }
    if (!any) return;
    const size_t off = t.start_pos.offset;
    const size_t len = t.original_text.length;
    if (!have_pos_) {
      line_start_ = static_cast<int>(t.start_pos.line);
      byte_start_ = off;
      have_pos_ = true;
    }
    line_end_ = static_cast<int>(t.start_pos.line) + count_newlines(t.original_text.data, len);
    byte_end_ = off + len;
  }

  Document& doc_;
  std::string cur_;
  int heading_ = 0;
  bool have_pos_ = false;
  int line_start_ = 1, line_end_ = 1;
  uint64_t byte_start_ = 0, byte_end_ = 0;
};

}  // namespace

Document load_html(const std::string& bytes) {
  Document doc;
  doc.format = Format::html;
  std::unique_ptr<GumboOutput, void (*)(GumboOutput*)> out(
      gumbo_parse_with_options(&kGumboDefaultOptions, bytes.data(), bytes.size()),
      [](GumboOutput* o) { gumbo_destroy_output(&kGumboDefaultOptions, o); });
  if (!out) return doc;
  Extractor ex(doc);
  ex.walk(out->document, false);
  ex.flush();
  return doc;
}

}  // namespace etna::rag
