#include "etna/tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "etna/base/error.h"
#include "etna/tokenizer/jinja/lexer.h"

namespace etna::tokenizer::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseOptions& options) : toks_(std::move(tokens)), options_(options) {}

  Body parse_template() {
    Body body = parse_body({});
    if (peek().kind != TokenKind::eof) {
      // parse_body stopped at an end tag nobody opened.
      error(peek(1), "unexpected '" + peek(1).text + "' (no block is open)");
    }
    return body;
  }

 private:
  // Recursion guard: hostile templates cannot overflow the stack.
  struct Nest {
    Parser& p;
    Nest(Parser& parser, const Token& at) : p(parser) {
      if (++p.depth_ > p.options_.max_nesting)
        p.error(at, "template nested too deeply (more than " + std::to_string(p.options_.max_nesting) + " levels)");
    }
    ~Nest() { --p.depth_; }
  };

  [[noreturn]] void error(const Token& at, const std::string& what) const {
    fail(ErrorKind::invalid_argument, "chat template syntax error at line {}, column {}: {}", at.line, at.column, what);
  }

  const Token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.kind == TokenKind::op && t.text == op;
  }
  bool is_name(const char* name, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.kind == TokenKind::name && t.text == name;
  }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::eof: return "end of template";
      case TokenKind::var_end: return "'}}'";
      case TokenKind::block_end: return "'%}'";
      case TokenKind::var_begin: return "'{{'";
      case TokenKind::block_begin: return "'{%'";
      case TokenKind::text: return "text";
      case TokenKind::string: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(peek(), std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::name) error(peek(), "expected a name, got " + describe(peek()));
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::block_end) error(peek(), "expected '%}', got " + describe(peek()));
    next();
  }

  template <typename T>
  static std::unique_ptr<T> at(const Token& t) {
    auto n = std::make_unique<T>();
    n->line = t.line;
    n->column = t.column;
    return n;
  }
  static ExprPtr make_expr(Expr::Kind kind, const Token& t) {
    auto e = at<Expr>(t);
    e->kind = kind;
    return e;
  }
  // Records the height of a freshly built compound expression; refuses one taller than the limit.
  ExprPtr seal(ExprPtr e) {
    int h = 0;
    auto see = [&h](const ExprPtr& c) {
      if (c) h = std::max(h, c->depth);
    };
    see(e->object);
    see(e->left);
    see(e->right);
    for (const auto& c : e->items) see(c);
    for (const auto& c : e->keys) see(c);
    for (const auto& [k, c] : e->kwargs) see(c);
    e->depth = h + 1;
    if (e->depth > options_.max_nesting) {
      Token at{};
      at.line = e->line;
      at.column = e->column;
      error(at, "expression nested too deeply (more than " + std::to_string(options_.max_nesting) +
                    " levels of operators, filters, tests, attributes or calls)");
    }
    return e;
  }
  static NodePtr make_node(Node::Kind kind, const Token& t) {
    auto n = at<Node>(t);
    n->kind = kind;
    return n;
  }

  // Parses nodes until a block tag whose keyword is in `stop` (left unconsumed: the cursor is on
  // its '{%'), or the end of the template.
  Body parse_body(std::initializer_list<const char*> stop) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokenKind::eof) {
        if (stop.size() > 0) error(t, std::string("unexpected end of template, expected '{% ") + *(stop.end() - 1) +
                                          " %}' (a block is not closed)");
        return body;
      }
      if (t.kind == TokenKind::text) {
        auto n = make_node(Node::Kind::text, t);
        n->text = next().text;
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::var_begin) {
        auto n = make_node(Node::Kind::output, next());
        n->expr = parse_tuple();
        if (peek().kind != TokenKind::var_end) error(peek(), "expected '}}', got " + describe(peek()));
        next();
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::block_begin) {
        const Token& kw = peek(1);
        if (kw.kind == TokenKind::name) {
          for (const char* s : stop)
            if (kw.text == s) return body;
          if (is_end_keyword(kw.text)) {
            if (stop.size() == 0) return body;  // reported by the caller
            error(kw, "unexpected '" + kw.text + "', expected '" + *(stop.end() - 1) + "'");
          }
        }
        body.push_back(parse_statement());
      } else {
        error(t, "unexpected " + describe(t));
      }
    }
  }

  static bool is_end_keyword(const std::string& s) {
    return s.rfind("end", 0) == 0 || s == "else" || s == "elif";
  }

  // Consumes '{% keyword' (already known to match) and returns the keyword token.
  const Token& begin_tag() {
    next();  // {%
    return next();
  }

  void end_tag(const char* keyword) {
    if (peek().kind != TokenKind::block_begin || !is_name(keyword, 1))
      error(peek(), std::string("expected '{% ") + keyword + " %}'");
    begin_tag();
    // Jinja allows the macro / block name after endmacro; ignore a trailing name.
    if (peek().kind == TokenKind::name) next();
    expect_block_end();
  }

  NodePtr parse_statement() {
    const Token& open = next();  // {%
    Nest guard(*this, open);
    if (peek().kind != TokenKind::name) error(peek(), "expected a statement keyword, got " + describe(peek()));
    const Token& kw = next();
    const std::string& k = kw.text;
    if (k == "if") return parse_if(kw);
    if (k == "for") return parse_for(kw);
    if (k == "set") return parse_set(kw);
    if (k == "macro") return parse_macro(kw);
    if (k == "call") return parse_call_block(kw);
    if (k == "filter") return parse_filter_block(kw);
    if (k == "break" || k == "continue") {
      auto n = make_node(k == "break" ? Node::Kind::break_ : Node::Kind::continue_, kw);
      expect_block_end();
      return n;
    }
    if (k == "do") {
      auto n = make_node(Node::Kind::do_, kw);
      n->expr = parse_tuple();
      expect_block_end();
      return n;
    }
    if (k == "generation") {  // Hugging Face's assistant-mask extension: renders its body unchanged
      auto n = make_node(Node::Kind::block, kw);
      expect_block_end();
      n->body = parse_body({"endgeneration"});
      end_tag("endgeneration");
      return n;
    }
    error(kw, "unknown tag '" + k + "'");
  }

  NodePtr parse_if(const Token& kw) {
    auto n = make_node(Node::Kind::if_, kw);
    n->conds.push_back(parse_expression());
    expect_block_end();
    n->bodies.push_back(parse_body({"elif", "else", "endif"}));
    while (true) {
      const Token& tag = begin_tag();
      if (tag.text == "elif") {
        n->conds.push_back(parse_expression());
        expect_block_end();
        n->bodies.push_back(parse_body({"elif", "else", "endif"}));
      } else if (tag.text == "else") {
        expect_block_end();
        n->else_body = parse_body({"endif"});
        end_tag("endif");
        return n;
      } else {  // endif
        expect_block_end();
        return n;
      }
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    bool paren = skip_op("(");
    do {
      targets.push_back(expect_name());
    } while (skip_op(","));
    if (paren) expect_op(")");
    return targets;
  }

  NodePtr parse_for(const Token& kw) {
    auto n = make_node(Node::Kind::for_, kw);
    n->targets = parse_targets();
    if (!skip_name("in")) error(peek(), "expected 'in' in for loop, got " + describe(peek()));
    n->expr = parse_or();
    if (skip_name("if")) n->cond = parse_expression();
    if (is_name("recursive")) error(peek(), "recursive for loops are not supported");
    expect_block_end();
    n->body = parse_body({"else", "endfor"});
    const Token& tag = begin_tag();
    if (tag.text == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"});
      end_tag("endfor");
    } else {
      expect_block_end();
    }
    return n;
  }

  NodePtr parse_set(const Token& kw) {
    auto n = make_node(Node::Kind::set, kw);
    std::string first = expect_name();
    if (skip_op(".")) {
      n->targets.push_back(first);
      n->attr = expect_name();
    } else {
      n->targets.push_back(first);
      while (skip_op(",")) n->targets.push_back(expect_name());
    }
    if (skip_op("=")) {
      n->expr = parse_tuple();
      expect_block_end();
      return n;
    }
    if (!n->attr.empty() || n->targets.size() != 1) error(peek(), "expected '=' in set");
    n->kind = Node::Kind::set_block;
    expect_block_end();
    n->body = parse_body({"endset"});
    end_tag("endset");
    return n;
  }

  NodePtr parse_macro(const Token& kw) {
    auto n = make_node(Node::Kind::macro, kw);
    n->text = expect_name();
    expect_op("(");
    if (!is_op(")")) {
      do {
        MacroParam p;
        p.name = expect_name();
        if (skip_op("=")) p.default_value = parse_expression();
        n->params.push_back(std::move(p));
      } while (skip_op(","));
    }
    expect_op(")");
    expect_block_end();
    n->body = parse_body({"endmacro"});
    end_tag("endmacro");
    return n;
  }

  NodePtr parse_call_block(const Token& kw) {
    auto n = make_node(Node::Kind::call_block, kw);
    if (is_op("(")) {  // caller parameters: {% call(x) foo() %}
      next();
      if (!is_op(")")) {
        do {
          MacroParam p;
          p.name = expect_name();
          if (skip_op("=")) p.default_value = parse_expression();
          n->params.push_back(std::move(p));
        } while (skip_op(","));
      }
      expect_op(")");
    }
    n->expr = parse_expression();
    if (n->expr->kind != Expr::Kind::call) error(kw, "'call' needs a macro call, e.g. {% call m() %}");
    expect_block_end();
    n->body = parse_body({"endcall"});
    end_tag("endcall");
    return n;
  }

  NodePtr parse_filter_block(const Token& kw) {
    auto n = make_node(Node::Kind::filter_block, kw);
    ExprPtr chain;  // innermost object stays null: the block's output goes there
    do {
      chain = parse_filter(std::move(chain));
    } while (skip_op("|"));
    n->expr = std::move(chain);
    expect_block_end();
    n->body = parse_body({"endfilter"});
    end_tag("endfilter");
    return n;
  }

  // ---- expressions ----

  // Expression or unparenthesised tuple ("a, b").
  ExprPtr parse_tuple() {
    const Token& t = peek();
    ExprPtr first = parse_expression();
    if (!is_op(",")) return first;
    auto tuple = make_expr(Expr::Kind::tuple, t);
    tuple->items.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().kind == TokenKind::block_end || peek().kind == TokenKind::var_end) break;
      tuple->items.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    Nest guard(*this, peek());
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const Token& t = next();
      auto c = make_expr(Expr::Kind::ternary, t);
      c->items.push_back(parse_or());
      c->items.push_back(std::move(e));
      if (skip_name("else")) c->items.push_back(parse_expression());
      else c->items.push_back(nullptr);
      e = seal(std::move(c));
    }
    return e;
  }

  ExprPtr binary(const Token& t, std::string op, ExprPtr l, ExprPtr r) {
    auto b = make_expr(Expr::Kind::binary, t);
    b->name = std::move(op);
    b->left = std::move(l);
    b->right = std::move(r);
    return seal(std::move(b));
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const Token& t = next();
      e = binary(t, "or", std::move(e), parse_and());
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const Token& t = next();
      e = binary(t, "and", std::move(e), parse_not());
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const Token& t = next();
      Nest guard(*this, t);
      auto u = make_expr(Expr::Kind::unary, t);
      u->name = "not";
      u->object = parse_not();
      return seal(std::move(u));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = peek();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      const Token& t = peek();
      if (t.kind == TokenKind::op &&
          (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" || t.text == "<=" || t.text == ">=")) {
        op = t.text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && is_name("in", 1)) {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make_expr(Expr::Kind::compare, start);
        cmp->object = std::move(first);
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
    }
    return cmp ? seal(std::move(cmp)) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t, t.text, std::move(e), parse_concat());
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const Token& t = next();
      e = binary(t, "~", std::move(e), parse_math2());
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t, t.text, std::move(e), parse_pow());
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const Token& t = next();
      e = binary(t, "**", std::move(e), parse_unary(true));
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      Nest guard(*this, t);
      e = make_expr(Expr::Kind::unary, t);
      e->name = t.text;
      e->object = parse_unary(false);
      e = seal(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    Nest guard(*this, t);
    switch (t.kind) {
      case TokenKind::name: {
        next();
        auto lit = make_expr(Expr::Kind::literal, t);
        if (t.text == "true" || t.text == "True") lit->value = Value(true);
        else if (t.text == "false" || t.text == "False") lit->value = Value(false);
        else if (t.text == "none" || t.text == "None") lit->value = Value::none();
        else {
          lit->kind = Expr::Kind::name;
          lit->name = t.text;
        }
        return lit;
      }
      case TokenKind::string: {
        std::string s = next().text;
        while (peek().kind == TokenKind::string) s += next().text;  // adjacent literals concatenate
        auto lit = make_expr(Expr::Kind::literal, t);
        lit->value = Value(std::move(s));
        return lit;
      }
      case TokenKind::integer: {
        next();
        auto lit = make_expr(Expr::Kind::literal, t);
        lit->value = Value(t.int_value);
        return lit;
      }
      case TokenKind::floating: {
        next();
        auto lit = make_expr(Expr::Kind::literal, t);
        lit->value = Value(t.float_value);
        return lit;
      }
      case TokenKind::op:
        if (t.text == "(") {
          next();
          if (skip_op(")")) return make_expr(Expr::Kind::tuple, t);
          ExprPtr first = parse_expression();
          if (skip_op(")")) return first;
          auto tuple = make_expr(Expr::Kind::tuple, t);
          tuple->items.push_back(std::move(first));
          while (skip_op(",")) {
            if (is_op(")")) break;
            tuple->items.push_back(parse_expression());
          }
          expect_op(")");
          return seal(std::move(tuple));
        }
        if (t.text == "[") {
          next();
          auto list = make_expr(Expr::Kind::list, t);
          while (!is_op("]")) {
            list->items.push_back(parse_expression());
            if (!skip_op(",")) break;
          }
          expect_op("]");
          return seal(std::move(list));
        }
        if (t.text == "{") {
          next();
          auto dict = make_expr(Expr::Kind::dict, t);
          while (!is_op("}")) {
            dict->keys.push_back(parse_expression());
            expect_op(":");
            dict->items.push_back(parse_expression());
            if (!skip_op(",")) break;
          }
          expect_op("}");
          return seal(std::move(dict));
        }
        break;
      default: break;
    }
    error(t, "unexpected " + describe(t) + " in expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token& t = peek();
      if (is_op(".")) {
        next();
        const Token& name = peek();
        if (name.kind == TokenKind::name) {
          next();
          auto a = make_expr(Expr::Kind::attr, t);
          a->object = std::move(e);
          a->name = name.text;
          e = seal(std::move(a));
        } else if (name.kind == TokenKind::integer) {  // foo.0 is foo[0]
          next();
          auto it = make_expr(Expr::Kind::item, t);
          it->object = std::move(e);
          auto lit = make_expr(Expr::Kind::literal, name);
          lit->value = Value(name.int_value);
          it->items.push_back(std::move(lit));
          e = seal(std::move(it));
        } else {
          error(name, "expected an attribute name after '.', got " + describe(name));
        }
      } else if (is_op("[")) {
        next();
        e = parse_subscript(t, std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(const Token& t, ExprPtr object) {
    ExprPtr parts[3];
    int colons = 0;
    if (!is_op(":")) parts[0] = parse_expression();
    while (colons < 2 && skip_op(":")) {
      ++colons;
      if (!is_op(":") && !is_op("]")) parts[colons] = parse_expression();
    }
    expect_op("]");
    if (colons == 0) {
      auto it = make_expr(Expr::Kind::item, t);
      it->object = std::move(object);
      it->items.push_back(std::move(parts[0]));
      return seal(std::move(it));
    }
    auto s = make_expr(Expr::Kind::slice, t);
    s->object = std::move(object);
    for (auto& p : parts) s->items.push_back(std::move(p));
    return seal(std::move(s));
  }

  void parse_args(Expr& into) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) error(peek(), "*args / **kwargs in calls are not supported");
      if (peek().kind == TokenKind::name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        into.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!into.kwargs.empty()) error(peek(), "positional argument follows keyword argument");
        into.items.push_back(parse_expression());
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make_expr(Expr::Kind::call, peek());
    c->object = std::move(callee);
    parse_args(*c);
    return seal(std::move(c));
  }

  ExprPtr parse_filter(ExprPtr object) {
    const Token& t = peek();
    auto f = make_expr(Expr::Kind::filter, t);
    f->object = std::move(object);
    f->name = expect_name();
    while (skip_op(".")) f->name += "." + expect_name();
    if (is_op("(")) parse_args(*f);
    return seal(std::move(f));
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (skip_op("|")) {
        e = parse_filter(std::move(e));
      } else if (is_name("is")) {
        const Token& t = next();
        auto test = make_expr(Expr::Kind::test, t);
        test->negated = skip_name("not");
        test->object = std::move(e);
        test->name = expect_name();
        while (skip_op(".")) test->name += "." + expect_name();
        const Token& a = peek();
        if (is_op("(")) {
          parse_args(*test);
        } else if ((a.kind == TokenKind::name || a.kind == TokenKind::string || a.kind == TokenKind::integer ||
                    a.kind == TokenKind::floating || is_op("[") || is_op("{")) &&
                   !(a.kind == TokenKind::name && (a.text == "else" || a.text == "or" || a.text == "and" ||
                                                   a.text == "if" || a.text == "in" || a.text == "not" ||
                                                   a.text == "is"))) {
          // A single unparenthesised argument: "x is divisibleby 3", "x is sameas none".
          test->items.push_back(parse_postfix(parse_primary()));
        }
        e = seal(std::move(test));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  ParseOptions options_;
};

}  // namespace

Body parse(std::string_view source, const ParseOptions& options) {
  return Parser(lex(source), options).parse_template();
}

}  // namespace etna::tokenizer::jinja
