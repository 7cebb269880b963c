// The Jinja abstract syntax tree and the parser that builds it from lexer tokens. Expressions
// follow Jinja2's grammar and precedence (ternary < or < and < not < comparisons < + - < ~ <
// * / // % < ** < unary < postfix/filters/tests).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "etna/tokenizer/jinja/value.h"

namespace etna::tokenizer::jinja {

struct Expr;
struct Node;
using ExprPtr = std::unique_ptr<Expr>;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Expr {
  enum class Kind {
    literal,    // value
    name,       // name
    list,       // items
    tuple,      // items
    dict,       // keys[i] -> items[i]
    attr,       // object.name
    item,       // object[items[0]]
    slice,      // object[a:b:c]: items[0..2] (null when omitted)
    call,       // object(items..., kwargs...)
    filter,     // object | name(items..., kwargs...)
    test,       // object is [not] name(items...)
    unary,      // op object   (op: "-", "+", "not")
    binary,     // left op right (op: + - * / // % ** ~ and or in "not in")
    compare,    // object ops[0] items[0] ops[1] items[1] ... (chained)
    ternary,    // items[1] if items[0] else items[2] (items[2] may be null)
  };
  Kind kind;
  int line = 0, column = 0;
  Value value;
  std::string name;              // name / attribute / filter / test / operator
  bool negated = false;          // test: "is not"
  ExprPtr object, left, right;
  std::vector<ExprPtr> items;
  std::vector<ExprPtr> keys;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // compare
  int depth = 1;                 // height of this subtree (bounded by ParseOptions::max_nesting)
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null when required
};

struct Node {
  enum class Kind {
    text,          // text
    output,        // {{ expr }}
    if_,           // branches: conds[i] -> bodies[i]; else_body
    for_,          // targets in expr [if cond]: body; else_body
    set,           // targets = expr; or target.attr = expr (attr non-empty)
    set_block,     // {% set targets[0] %}body{% endset %}
    macro,         // {% macro name(params) %}body
    call_block,    // {% call expr %}body{% endcall %}
    filter_block,  // {% filter expr(with a placeholder object) %}body
    break_,
    continue_,
    do_,           // {% do expr %}
    block,         // a plain body (generation tags)
  };
  Kind kind;
  int line = 0, column = 0;
  std::string text;
  ExprPtr expr;                  // output / for iterable / set value / call / filter chain / do
  ExprPtr cond;                  // for ... if cond
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body, else_body;
  std::vector<std::string> targets;
  std::string attr;              // set ns.attr
  std::vector<MacroParam> params;
};

struct ParseOptions {
  // Bounds recursion on hostile input: deep parentheses or nested blocks, and the height of any
  // expression tree, so chains built by loops (filters, tests, attributes, calls, operators)
  // cannot outgrow what the interpreter's recursion (and the tree's destructor) can walk.
  int max_nesting = 128;
};

// Parses a whole template. Throws etna::Error (invalid_argument)
// "chat template syntax error at line L, column C: ..." on malformed input.
Body parse(std::string_view source, const ParseOptions& options = {});

}  // namespace etna::tokenizer::jinja
