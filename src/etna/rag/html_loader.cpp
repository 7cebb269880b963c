// HTML through gumbo (an HTML5 parser, so any tag soup parses). Text of <script>, <style>,
// <noscript>, <template> and comments is dropped; block-level elements end paragraphs; <h1>..<h6>
// become heading blocks; whitespace collapses except inside <pre>. Each block records the source
// lines and bytes its text nodes came from (entity-decoded text, so blocks are not verbatim).
// Bounded: a memory budget for gumbo (its allocator hooks), an iterative walk with depth and node
// limits; a file over them is refused with etna::Error(limit) and skipped by ingestion.
#include <gumbo.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <string_view>
#include <cstdlib>
#include <vector>

#include "etna/base/error.h"

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

// Limits on one file's parse: gumbo builds the whole tree first (an HTML5 parser reopens every
// open formatting element for each new block, so 60 KB of unclosed <b> become gigabytes of
// nodes), then the tree is walked with an explicit stack.
constexpr std::size_t kBudgetBase = 256u << 20;  // bytes gumbo may allocate: this + 16 x file size
constexpr std::size_t kBudgetPerByte = 16;
constexpr std::size_t kMaxDepth = 1024;       // element nesting
constexpr std::size_t kMaxNodes = 4'000'000;  // nodes walked
constexpr int kMaxParseErrors = 1000;         // gumbo keeps every parse error in memory otherwise

// gumbo's allocator hooks with a byte budget. Every block is on one list, so the whole tree is
// freed in one loop (gumbo_destroy_output recurses once per nesting level) and a parse that runs
// over the budget can be abandoned: the allocator longjmps back to parse_in_budget, whose caller
// then frees the partial tree. gumbo is plain C (no destructors are skipped) and keeps no state
// outside the memory it allocates.
struct alignas(16) BlockHeader {
  BlockHeader* prev;
  BlockHeader* next;
  std::size_t size;
};

struct Budget {
  std::size_t used = 0;
  std::size_t limit = 0;
  BlockHeader* head = nullptr;
  std::jmp_buf* escape = nullptr;

  ~Budget() {
    while (head) {
      BlockHeader* next = head->next;
      std::free(head);
      head = next;
    }
  }
};

void* budget_allocate(void* userdata, size_t size) {
  auto* b = static_cast<Budget*>(userdata);
  void* p = size <= b->limit - b->used ? std::malloc(sizeof(BlockHeader) + size) : nullptr;
  if (!p) std::longjmp(*b->escape, 1);
  auto* h = static_cast<BlockHeader*>(p);
  h->prev = nullptr;
  h->next = b->head;
  h->size = size;
  if (b->head) b->head->prev = h;
  b->head = h;
  b->used += size;
  return h + 1;
}

void budget_deallocate(void* userdata, void* ptr) {
  if (!ptr) return;
  auto* b = static_cast<Budget*>(userdata);
  auto* h = static_cast<BlockHeader*>(ptr) - 1;
  if (h->prev) h->prev->next = h->next;
  else b->head = h->next;
  if (h->next) h->next->prev = h->prev;
  b->used -= h->size;
  std::free(h);
}

// Only trivially destructible locals here (longjmp target). Null when the budget ran out.
GumboOutput* parse_in_budget(const std::string& bytes, Budget& budget) {
  std::jmp_buf escape;
  budget.escape = &escape;
  if (setjmp(escape) != 0) return nullptr;
  GumboOptions options = kGumboDefaultOptions;
  options.allocator = budget_allocate;
  options.deallocator = budget_deallocate;
  options.userdata = &budget;
  options.max_errors = kMaxParseErrors;
  return gumbo_parse_with_options(&options, bytes.data(), bytes.size());
}

// Elements that never stay open (void) or that the parser closes implicitly when a sibling starts;
// the pre-scan below does not count them as nesting.
bool never_nests(std::string_view tag) {
  static constexpr std::string_view kTags[] = {
      "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
      "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup",
      "rb", "rt", "rp", "rtc", "html", "head", "body", "!doctype", "basefont", "bgsound", "frame", "keygen"};
  for (std::string_view t : kTags)
    if (t == tag) return true;
  return false;
}

// The deepest element nesting the markup asks for, from its tags alone (comments and the raw text
// of script, style, textarea and title skipped). An HTML5 parser checks the stack of open elements
// for every tag, so its time grows with the square of the nesting: 100 000 nested <div> took
// minutes, and 20 000 unclosed <b> gigabytes of per-error stack copies. Checked before parsing.
std::size_t tag_nesting(std::string_view html) {
  std::size_t depth = 0, deepest = 0, i = 0;
  auto lower = [](char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); };
  while ((i = html.find('<', i)) != std::string_view::npos) {
    if (html.compare(i, 4, "<!--") == 0) {
      std::size_t end = html.find("-->", i + 4);
      if (end == std::string_view::npos) break;
      i = end + 3;
      continue;
    }
    std::size_t j = i + 1;
    const bool closing = j < html.size() && html[j] == '/';
    if (closing) ++j;
    std::size_t name_start = j;
    while (j < html.size() && (std::isalnum(static_cast<unsigned char>(html[j])) || html[j] == '!')) ++j;
    if (j == name_start || !(std::isalpha(static_cast<unsigned char>(html[name_start])) || html[name_start] == '!')) {
      i = j;
      continue;
    }
    std::string tag;
    for (std::size_t k = name_start; k < j && tag.size() < 16; ++k) tag += lower(html[k]);
    std::size_t gt = html.find('>', j);
    if (gt == std::string_view::npos) break;
    const bool self_closing = gt > 0 && html[gt - 1] == '/';
    i = gt + 1;
    if (never_nests(tag) || self_closing) continue;
    if (closing) {
      if (depth > 0) --depth;
      continue;
    }
    deepest = std::max(deepest, ++depth);
    if (tag == "script" || tag == "style" || tag == "textarea" || tag == "title" || tag == "xmp") {
      const std::string end_tag = "</" + tag;
      std::size_t k = i;
      for (;;) {  // case-insensitive search for the end tag
        k = html.find("</", k);
        if (k == std::string_view::npos) break;
        bool match = true;
        for (std::size_t m = 2; m < end_tag.size() && match; ++m)
          match = k + m < html.size() && lower(html[k + m]) == end_tag[m];
        if (match) break;
        k += 2;
      }
      if (k == std::string_view::npos) break;
      i = k;
    }
  }
  return deepest;
}

const GumboVector& children_of(const GumboNode* node) {
  return node->type == GUMBO_NODE_DOCUMENT ? node->v.document.children : node->v.element.children;
}

class Extractor {
 public:
  explicit Extractor(Document& doc) : doc_(doc) {}

  // Depth-first over the tree with an explicit stack (no recursion, whatever the nesting).
  void walk(const GumboNode* root) {
    struct Frame {
      const GumboNode* node;
      unsigned next_child;
      bool pre;
      bool block;
      bool head;  // inside <head>: only <title> is entered
    };
    std::vector<Frame> stack;
    std::size_t nodes = 0;
    auto enter = [&](const GumboNode* node, bool pre, bool in_head) {
      if (++nodes > kMaxNodes)
        fail(ErrorKind::limit, "the HTML has more than {} nodes (the limit for one file)", kMaxNodes);
      switch (node->type) {
        case GUMBO_NODE_TEXT:
        case GUMBO_NODE_WHITESPACE:
        case GUMBO_NODE_CDATA:
          if (!in_head) add_text(node->v.text, pre);
          return;
        case GUMBO_NODE_DOCUMENT:
          stack.push_back({node, 0, pre, false, false});
          return;
        case GUMBO_NODE_ELEMENT:
        case GUMBO_NODE_TEMPLATE: {
          const GumboElement& e = node->v.element;
          if (in_head) {
            // <title> inside <head> is kept as a heading; the rest of <head> is dropped.
            if (e.tag != GUMBO_TAG_TITLE) return;
            flush();
            heading_ = 1;
            stack.push_back({node, 0, false, true, false});
            return;
          }
          if (is_dropped(e.tag)) {
            if (e.tag == GUMBO_TAG_HEAD) stack.push_back({node, 0, false, false, true});
            return;
          }
          const int level = heading_level(e.tag);
          const bool block = level > 0 || is_block(e.tag);
          if (block) flush();
          if (level > 0) heading_ = level;
          if (stack.size() >= kMaxDepth)
            fail(ErrorKind::limit, "the HTML nests elements deeper than {} levels (the limit for one file)", kMaxDepth);
          stack.push_back({node, 0, pre || e.tag == GUMBO_TAG_PRE || e.tag == GUMBO_TAG_TEXTAREA, block, false});
          return;
        }
        default:
          return;  // comments
      }
    };
    enter(root, false, false);
    while (!stack.empty()) {
      Frame& top = stack.back();
      const GumboVector& children = children_of(top.node);
      if (top.next_child < children.length) {
        const auto* child = static_cast<const GumboNode*>(children.data[top.next_child++]);
        enter(child, top.pre, top.head);  // may grow the stack: `top` is not used after this
        continue;
      }
      const bool block = top.block;
      stack.pop_back();
      if (block) flush();
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
  if (tag_nesting(bytes) > kMaxDepth)
    fail(ErrorKind::limit, "the HTML nests elements deeper than {} levels (the limit for one file)", kMaxDepth);
  Budget budget;
  budget.limit = kBudgetBase + kBudgetPerByte * bytes.size();
  GumboOutput* out = parse_in_budget(bytes, budget);
  if (!out) {
    fail(ErrorKind::limit, "parsing this HTML needs more than {} MiB of memory (the limit for a {} KiB file)",
         budget.limit >> 20, bytes.size() >> 10);
  }
  Extractor ex(doc);
  ex.walk(out->document);
  ex.flush();
  // A heading straight after one with the same words is one heading (most often <title>
  // repeated by the page's <h1>): kept once, so its text is not a chunk of its own twice.
  auto words_of = [&](const Block& b) {
    std::string w;
    for (size_t i = b.begin; i < b.end; ++i) {
      const auto c = static_cast<unsigned char>(doc.text[i]);
      if (std::isspace(c)) {
        if (!w.empty() && w.back() != ' ') w += ' ';
      } else {
        w += static_cast<char>(std::tolower(c));
      }
    }
    while (!w.empty() && w.back() == ' ') w.pop_back();
    return w;
  };
  std::vector<Block> kept;
  for (const Block& b : doc.blocks) {
    if (!kept.empty() && b.heading_level > 0 && kept.back().heading_level > 0 && words_of(kept.back()) == words_of(b))
      kept.pop_back();
    kept.push_back(b);
  }
  doc.blocks = std::move(kept);
  return doc;  // the tree is freed with `budget`
}

}  // namespace etna::rag
