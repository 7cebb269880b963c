#include "etna/tokenizer/jinja/interpreter.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include <utf8proc.h>

#include "etna/base/error.h"

namespace etna::tokenizer::jinja {

namespace {

// ---- string helpers (Python str semantics over UTF-8) ----

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip_chars(const std::string& s, const std::string* chars, bool left, bool right) {
  auto strip_me = [&](char c) { return chars ? chars->find(c) != std::string::npos : is_py_space(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && strip_me(s[b])) ++b;
  if (right)
    while (e > b && strip_me(s[e - 1])) --e;
  return s.substr(b, e - b);
}

template <typename F>
std::string map_code_points(const std::string& s, F&& f) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t n = static_cast<utf8proc_ssize_t>(s.size()), i = 0;
  size_t index = 0;
  while (i < n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) {  // invalid byte: keep it as is
      out += s[static_cast<size_t>(i)];
      ++i;
      ++index;
      continue;
    }
    utf8proc_uint8_t buf[4];
    utf8proc_ssize_t w = utf8proc_encode_char(f(cp, index), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(w));
    i += len;
    ++index;
  }
  return out;
}

std::string to_upper(const std::string& s) {
  return map_code_points(s, [](utf8proc_int32_t c, size_t) { return utf8proc_toupper(c); });
}
std::string to_lower(const std::string& s) {
  return map_code_points(s, [](utf8proc_int32_t c, size_t) { return utf8proc_tolower(c); });
}
std::string capitalize(const std::string& s) {
  return map_code_points(s, [](utf8proc_int32_t c, size_t i) { return i == 0 ? utf8proc_toupper(c) : utf8proc_tolower(c); });
}
bool is_cased_letter(utf8proc_int32_t c) {
  auto cat = utf8proc_category(c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}
// Python str.title(): a letter following a non-letter is upper-cased, others lower-cased.
std::string py_title(const std::string& s) {
  bool prev_cased = false;
  return map_code_points(s, [&](utf8proc_int32_t c, size_t) {
    utf8proc_int32_t r = prev_cased ? utf8proc_tolower(c) : utf8proc_toupper(c);
    prev_cased = is_cased_letter(c);
    return r;
  });
}
// Jinja's title filter: words start after whitespace, '-', or an opening bracket.
std::string jinja_title(const std::string& s) {
  bool word_start = true;
  return map_code_points(s, [&](utf8proc_int32_t c, size_t) {
    utf8proc_int32_t r = word_start ? utf8proc_toupper(c) : utf8proc_tolower(c);
    word_start = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '-' || c == '(' ||
                 c == '{' || c == '[' || c == '<';
    return r;
  });
}

std::vector<std::string> split_ws(const std::string& s, int64_t maxsplit) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    while (i < s.size() && is_py_space(s[i])) ++i;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t e = s.size();
      while (e > i && is_py_space(s[e - 1])) --e;
      out.push_back(s.substr(i, e - i));
      break;
    }
    size_t j = i;
    while (j < s.size() && !is_py_space(s[j])) ++j;
    out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string> split_sep(const std::string& s, const std::string& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  size_t i = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t j = s.find(sep, i);
    if (j == std::string::npos) break;
    out.push_back(s.substr(i, j - i));
    i = j + sep.size();
  }
  out.push_back(s.substr(i));
  return out;
}

// Python slice index normalisation (PySlice_AdjustIndices).
struct SliceRange {
  int64_t start, stop, step, count;
};

SliceRange adjust_slice(int64_t length, std::optional<int64_t> start, std::optional<int64_t> stop,
                        std::optional<int64_t> step_opt) {
  int64_t step = std::max<int64_t>(step_opt.value_or(1), -INT64_MAX);  // so that -step cannot overflow
  int64_t s, e;
  if (step > 0) {
    s = start.value_or(0);
    e = stop.value_or(length);
    if (s < 0) s = std::max<int64_t>(0, s + length);
    if (e < 0) e = std::max<int64_t>(0, e + length);
    s = std::min(s, length);
    e = std::min(e, length);
  } else {
    s = start.value_or(length - 1);
    e = stop.value_or(-length - 1);
    if (s < 0) s = std::max<int64_t>(-1, s + length);
    else s = std::min(s, length - 1);
    if (e < 0) e = std::max<int64_t>(-1, e + length);
    else e = std::min(e, length - 1);
  }
  int64_t count = 0;
  if (step > 0 && s < e) count = (e - s - 1) / step + 1;
  if (step < 0 && s > e) count = (s - e - 1) / (-step) + 1;
  return {s, e, step, count};
}

// ---- scopes ----

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;

  const Value* lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

enum class Flow { normal, break_, continue_ };

Value make_function(std::string name, std::function<Value(CallArgs&)> fn) {
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->call = std::move(fn);
  return Value(f);
}

// Positional-or-keyword argument access for builtins.
class Args {
 public:
  Args(CallArgs& a, const std::string& what) : a_(a), what_(what) {}
  const Value* get(size_t index, const char* name) const {
    if (index < a_.positional.size()) return &a_.positional[index];
    for (const auto& [k, v] : a_.named)
      if (k == name) return &v;
    return nullptr;
  }
  Value get_or(size_t index, const char* name, Value fallback) const {
    const Value* v = get(index, name);
    return v ? *v : fallback;
  }
  void max_positional(size_t n) const {
    if (a_.positional.size() > n)
      fail(ErrorKind::invalid_argument, "{} takes at most {} positional argument(s), {} given", what_, n,
           a_.positional.size());
  }
  size_t size() const { return a_.positional.size(); }
  CallArgs& raw() { return a_; }

 private:
  CallArgs& a_;
  std::string what_;
};

class Renderer {
 public:
  explicit Renderer(const RenderOptions& options) : opt_(options), lim_(options.limits) {
    root_.parent = &globals_;
    install_globals();
  }

  ~Renderer() {
    // Namespaces can reference themselves ({% set ns.me = ns %}); break such cycles.
    for (auto& ns : namespaces_) {
      ns->items.clear();
      ns->index.clear();
    }
  }

  std::string run(const Body& body, const Value& context) {
    if (context.is_object()) {
      for (const auto& [k, v] : context.as_object()->items) root_.vars[k] = v;
    }
    std::string out;
    exec_body(body, root_, out);
    return out;
  }

 private:
  // ---- limits and errors ----

  struct DepthGuard {
    Renderer& r;
    DepthGuard(Renderer& renderer, int line) : r(renderer) {
      if (++r.depth_ > r.lim_.max_depth)
        fail(ErrorKind::limit, "chat template error at line {}: nesting deeper than {} levels", line, r.lim_.max_depth);
    }
    ~DepthGuard() { --r.depth_; }
  };

  void tick(int line) {
    if (++steps_ > lim_.max_steps)
      fail(ErrorKind::limit, "chat template error at line {}: template ran more than {} steps (runaway loop?)", line,
           lim_.max_steps);
  }

  void check_string(size_t n) const {
    if (n > lim_.max_output)
      fail(ErrorKind::limit, "chat template error: string of {} bytes exceeds the {} byte limit", n, lim_.max_output);
  }
  void check_list(size_t n) const {
    if (n > lim_.max_list)
      fail(ErrorKind::limit, "chat template error: list of {} elements exceeds the {} element limit", n, lim_.max_list);
  }

  void emit(std::string& out, std::string_view s) {
    if (out.size() + s.size() > lim_.max_output)
      fail(ErrorKind::limit, "chat template error: output exceeds the {} byte limit", lim_.max_output);
    out += s;
  }

  [[noreturn]] static void error_at(int line, const std::string& what) {
    fail(ErrorKind::invalid_argument, "chat template error at line {}: {}", line, what);
  }

  // ---- statements ----

  Flow exec_body(const Body& body, Scope& scope, std::string& out) {
    for (const auto& n : body) {
      Flow f = exec(*n, scope, out);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  Flow exec(const Node& n, Scope& scope, std::string& out) {
    tick(n.line);
    DepthGuard guard(*this, n.line);
    switch (n.kind) {
      case Node::Kind::text: emit(out, n.text); return Flow::normal;
      case Node::Kind::output: {
        Value v = eval(*n.expr, scope);
        if (v.is_string()) emit(out, v.as_string());
        else emit(out, to_str(v));
        return Flow::normal;
      }
      case Node::Kind::if_:
        for (size_t i = 0; i < n.conds.size(); ++i)
          if (eval(*n.conds[i], scope).truthy()) return exec_body(n.bodies[i], scope, out);
        return exec_body(n.else_body, scope, out);
      case Node::Kind::for_: return exec_for(n, scope, out);
      case Node::Kind::set: {
        Value v = eval(*n.expr, scope);
        if (!n.attr.empty()) {
          const Value* target = scope.lookup(n.targets[0]);
          if (!target || !target->is_object() || !target->as_object()->is_namespace)
            error_at(n.line, "cannot assign attribute '" + n.attr + "' on '" + n.targets[0] +
                                 "': only namespace() objects accept attribute assignment");
          target->as_object()->set(n.attr, std::move(v));
        } else {
          assign(n.targets, std::move(v), scope, n.line);
        }
        return Flow::normal;
      }
      case Node::Kind::set_block: {
        std::string captured;
        exec_body(n.body, scope, captured);
        scope.vars[n.targets[0]] = Value(std::move(captured));
        return Flow::normal;
      }
      case Node::Kind::macro: {
        const Node* macro = &n;
        scope.vars[n.text] = make_function(n.text, [this, macro](CallArgs& args) { return call_macro(*macro, args); });
        return Flow::normal;
      }
      case Node::Kind::call_block: return exec_call_block(n, scope, out);
      case Node::Kind::filter_block: {
        std::string captured;
        exec_body(n.body, scope, captured);
        Value v = apply_filter_chain(*n.expr, Value(std::move(captured)), scope);
        emit(out, to_str(v));
        return Flow::normal;
      }
      case Node::Kind::break_: return Flow::break_;
      case Node::Kind::continue_: return Flow::continue_;
      case Node::Kind::do_: eval(*n.expr, scope); return Flow::normal;
      case Node::Kind::block: return exec_body(n.body, scope, out);
    }
    return Flow::normal;
  }

  void assign(const std::vector<std::string>& targets, Value v, Scope& scope, int line) {
    if (targets.size() == 1) {
      scope.vars[targets[0]] = std::move(v);
      return;
    }
    std::vector<Value> parts = iterate(v, line);
    if (parts.size() != targets.size())
      error_at(line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                         std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) scope.vars[targets[i]] = std::move(parts[i]);
  }

  // The elements a for loop visits: list items, dict keys, string characters.
  std::vector<Value> iterate(const Value& v, int line) {
    switch (v.kind()) {
      case Value::Kind::undefined: return {};
      case Value::Kind::array: return *v.as_array();
      case Value::Kind::object: {
        std::vector<Value> keys;
        for (const auto& kv : v.as_object()->items) keys.emplace_back(kv.first);
        return keys;
      }
      case Value::Kind::string: {
        const std::string& s = v.as_string();
        auto offs = utf8_offsets(s);
        std::vector<Value> chars;
        for (size_t i = 0; i + 1 < offs.size(); ++i) chars.emplace_back(s.substr(offs[i], offs[i + 1] - offs[i]));
        return chars;
      }
      default: error_at(line, std::string("'") + v.type_name() + "' object is not iterable");
    }
  }

  Flow exec_for(const Node& n, Scope& scope, std::string& out) {
    std::vector<Value> items = iterate(eval(*n.expr, scope), n.line);
    Scope loop_scope;
    loop_scope.parent = &scope;
    if (n.cond) {
      std::vector<Value> kept;
      for (auto& item : items) {
        tick(n.line);
        assign(n.targets, item, loop_scope, n.line);
        if (eval(*n.cond, loop_scope).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(n.else_body, scope, out);
    const int64_t length = static_cast<int64_t>(items.size());
    // One `loop` object per loop, updated in place each iteration (fields at fixed positions).
    auto position = std::make_shared<int64_t>(0);
    Value loop = Value::object();
    Object& o = *loop.as_object();
    for (const char* key : {"index", "index0", "revindex", "revindex0", "first", "last", "previtem", "nextitem"})
      o.set(key, Value());
    o.set("length", Value(length));
    o.set("depth", Value(1));
    o.set("depth0", Value(0));
    o.set("cycle", make_function("loop.cycle", [position](CallArgs& a) {
            if (a.positional.empty()) fail(ErrorKind::invalid_argument, "loop.cycle() needs at least one argument");
            return a.positional[static_cast<size_t>(*position) % a.positional.size()];
          }));
    loop_scope.vars["loop"] = loop;
    for (int64_t i = 0; i < length; ++i) {
      tick(n.line);
      const auto idx = static_cast<size_t>(i);
      assign(n.targets, items[idx], loop_scope, n.line);
      *position = i;
      o.items[0].second = Value(i + 1);
      o.items[1].second = Value(i);
      o.items[2].second = Value(length - i);
      o.items[3].second = Value(length - i - 1);
      o.items[4].second = Value(i == 0);
      o.items[5].second = Value(i == length - 1);
      o.items[6].second = i > 0 ? items[idx - 1] : Value();
      o.items[7].second = i + 1 < length ? items[idx + 1] : Value();
      Flow f = exec_body(n.body, loop_scope, out);
      if (f == Flow::break_) break;
    }
    return Flow::normal;
  }

  Value call_macro(const Node& m, CallArgs& args) {
    if (call_depth_ >= lim_.max_call_depth)
      fail(ErrorKind::limit, "chat template error at line {}: macro calls nested deeper than {} (runaway recursion?)",
           m.line, lim_.max_call_depth);
    ++call_depth_;
    struct Exit {
      int& d;
      ~Exit() { --d; }
    } exit{call_depth_};
    Scope local;
    local.parent = &root_;
    if (args.positional.size() > m.params.size())
      error_at(m.line, "macro '" + m.text + "' takes " + std::to_string(m.params.size()) + " argument(s), " +
                           std::to_string(args.positional.size()) + " given");
    std::vector<bool> bound(m.params.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      local.vars[m.params[i].name] = args.positional[i];
      bound[i] = true;
    }
    for (auto& [k, v] : args.named) {
      if (k == "caller") {
        local.vars["caller"] = v;
        continue;
      }
      const std::string& key = k;  // clang 14 cannot capture a structured binding
      auto it = std::find_if(m.params.begin(), m.params.end(), [&](const MacroParam& p) { return p.name == key; });
      if (it == m.params.end()) error_at(m.line, "macro '" + m.text + "' has no parameter named '" + k + "'");
      local.vars[k] = v;
      bound[static_cast<size_t>(it - m.params.begin())] = true;
    }
    for (size_t i = 0; i < m.params.size(); ++i) {
      if (bound[i]) continue;
      local.vars[m.params[i].name] = m.params[i].default_value ? eval(*m.params[i].default_value, local) : Value();
    }
    std::string out;
    exec_body(m.body, local, out);
    return Value(std::move(out));
  }

  Flow exec_call_block(const Node& n, Scope& scope, std::string& out) {
    // caller() renders the block body in the scope of the {% call %}; it must not outlive it.
    auto alive = std::make_shared<bool>(true);
    const Node* node = &n;
    Scope* where = &scope;
    Value caller = make_function("caller", [this, node, where, alive](CallArgs& a) -> Value {
      if (!*alive) fail(ErrorKind::invalid_argument, "chat template error: caller() used outside its call block");
      Scope local;
      local.parent = where;
      for (size_t i = 0; i < node->params.size(); ++i) {
        const Value* v = i < a.positional.size() ? &a.positional[i] : nullptr;
        local.vars[node->params[i].name] =
            v ? *v : (node->params[i].default_value ? eval(*node->params[i].default_value, local) : Value());
      }
      std::string text;
      exec_body(node->body, local, text);
      return Value(std::move(text));
    });
    struct Kill {
      std::shared_ptr<bool> a;
      ~Kill() { *a = false; }
    } kill{alive};
    const Expr& call = *n.expr;
    Value callee = eval(*call.object, scope);
    CallArgs args = eval_args(call, scope);
    args.named.emplace_back("caller", caller);
    Value result = invoke(callee, args, call.line);
    emit(out, to_str(result));
    return Flow::normal;
  }

  // ---- expressions ----

  CallArgs eval_args(const Expr& e, Scope& scope) {
    CallArgs args;
    for (const auto& a : e.items) args.positional.push_back(eval(*a, scope));
    for (const auto& [k, v] : e.kwargs) args.named.emplace_back(k, eval(*v, scope));
    return args;
  }

  Value invoke(const Value& callee, CallArgs& args, int line) {
    if (!callee.is_function()) {
      error_at(line, callee.is_undefined() ? std::string("call of an undefined function or method")
                                           : std::string("'") + callee.type_name() + "' object is not callable");
    }
    FunctionPtr keep = callee.as_function();  // the callee may be reassigned while it runs
    try {
      return keep->call(args);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& ex) {
      error_at(line, std::string("in ") + keep->name + "(): " + ex.what());
    }
  }

  Value eval(const Expr& e, Scope& scope) {
    tick(e.line);
    DepthGuard guard(*this, e.line);
    switch (e.kind) {
      case Expr::Kind::literal: return e.value;
      case Expr::Kind::name: {
        const Value* v = scope.lookup(e.name);
        return v ? *v : Value();
      }
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        auto arr = std::make_shared<Array>();
        for (const auto& item : e.items) arr->push_back(eval(*item, scope));
        return Value(arr);
      }
      case Expr::Kind::dict: {
        Value obj = Value::object();
        for (size_t i = 0; i < e.keys.size(); ++i) {
          Value k = eval(*e.keys[i], scope);
          obj.as_object()->set(to_str(k), eval(*e.items[i], scope));
        }
        return obj;
      }
      case Expr::Kind::attr: return get_attr(eval(*e.object, scope), e.name);
      case Expr::Kind::item: return get_item(eval(*e.object, scope), eval(*e.items[0], scope));
      case Expr::Kind::slice: return eval_slice(e, scope);
      case Expr::Kind::call: {
        Value callee = eval(*e.object, scope);
        CallArgs args = eval_args(e, scope);
        return invoke(callee, args, e.line);
      }
      case Expr::Kind::filter: return apply_filter_chain(e, Value(), scope);
      case Expr::Kind::test: {
        Value v = eval(*e.object, scope);
        CallArgs args = eval_args(e, scope);
        bool r = apply_test(e.name, v, args, e.line);
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::unary: {
        Value v = eval(*e.object, scope);
        if (e.name == "not") return Value(!v.truthy());
        if (v.is_int()) {
          if (e.name == "-") {
            if (v.as_int() == INT64_MIN) return Value(-static_cast<double>(v.as_int()));
            return Value(-v.as_int());
          }
          return v;
        }
        if (v.is_float()) return e.name == "-" ? Value(-v.as_float()) : v;
        if (v.is_bool()) return Value(e.name == "-" ? -int64_t{v.as_bool()} : int64_t{v.as_bool()});
        error_at(e.line, std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
      }
      case Expr::Kind::binary: {
        if (e.name == "and") {
          Value l = eval(*e.left, scope);
          return l.truthy() ? eval(*e.right, scope) : l;
        }
        if (e.name == "or") {
          Value l = eval(*e.left, scope);
          return l.truthy() ? l : eval(*e.right, scope);
        }
        Value l = eval(*e.left, scope);
        Value r = eval(*e.right, scope);
        return binary_op(e.name, l, r, e.line);
      }
      case Expr::Kind::compare: {
        Value left = eval(*e.object, scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.items[i], scope);
          if (!compare(e.ops[i], left, right, e.line)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::ternary: {
        if (eval(*e.items[0], scope).truthy()) return eval(*e.items[1], scope);
        return e.items[2] ? eval(*e.items[2], scope) : Value();
      }
    }
    return Value();
  }

  bool compare(const std::string& op, const Value& l, const Value& r, int line) {
    try {
      if (op == "==") return equals(l, r);
      if (op == "!=") return !equals(l, r);
      if (op == "<") return less_than(l, r);
      if (op == ">") return less_than(r, l);
      if (op == "<=") return !less_than(r, l);
      if (op == ">=") return !less_than(l, r);
    } catch (const Error& ex) {
      if (ex.kind() == ErrorKind::limit) throw;
      error_at(line, std::string("'") + op + "' not supported between '" + l.type_name() + "' and '" + r.type_name() +
                         "'");
    }
    if (op == "in") return contains(r, l, line);
    if (op == "not in") return !contains(r, l, line);
    error_at(line, "unknown comparison " + op);
  }

  bool contains(const Value& container, const Value& item, int line) {
    switch (container.kind()) {
      case Value::Kind::string:
        if (!item.is_string())
          error_at(line, std::string("'in <string>' requires string as left operand, not ") + item.type_name());
        return container.as_string().find(item.as_string()) != std::string::npos;
      case Value::Kind::array:
        for (const auto& v : *container.as_array())
          if (equals(v, item)) return true;
        return false;
      case Value::Kind::object: return item.is_string() && container.as_object()->find(item.as_string()) != nullptr;
      case Value::Kind::undefined: return false;
      default: error_at(line, std::string("argument of type '") + container.type_name() + "' is not iterable");
    }
  }

  static bool is_numeric(const Value& v) { return v.is_int() || v.is_float() || v.is_bool(); }
  static int64_t int_of(const Value& v) { return v.is_bool() ? int64_t{v.as_bool()} : v.as_int(); }

  Value binary_op(const std::string& op, const Value& l, const Value& r, int line) {
    auto unsupported = [&]() -> Value {
      error_at(line, "unsupported operand type(s) for " + op + ": '" + l.type_name() + "' and '" + r.type_name() + "'");
    };
    if (op == "~") {
      std::string a = to_str(l), b = to_str(r);
      check_string(a.size() + b.size());
      return Value(a + b);
    }
    bool ints = (l.is_int() || l.is_bool()) && (r.is_int() || r.is_bool());
    bool nums = is_numeric(l) && is_numeric(r);
    if (op == "+") {
      if (ints) {
        int64_t out;
        if (__builtin_add_overflow(int_of(l), int_of(r), &out)) return Value(l.to_double() + r.to_double());
        return Value(out);
      }
      if (nums) return Value(l.to_double() + r.to_double());
      if (l.is_string() && r.is_string()) {
        check_string(l.as_string().size() + r.as_string().size());
        return Value(l.as_string() + r.as_string());
      }
      if (l.is_array() && r.is_array()) {
        check_list(l.as_array()->size() + r.as_array()->size());
        Array out = *l.as_array();
        out.insert(out.end(), r.as_array()->begin(), r.as_array()->end());
        return Value::array(std::move(out));
      }
      return unsupported();
    }
    if (op == "-") {
      if (ints) {
        int64_t out;
        if (__builtin_sub_overflow(int_of(l), int_of(r), &out)) return Value(l.to_double() - r.to_double());
        return Value(out);
      }
      if (nums) return Value(l.to_double() - r.to_double());
      return unsupported();
    }
    if (op == "*") {
      if (ints) {
        int64_t out;
        if (__builtin_mul_overflow(int_of(l), int_of(r), &out)) return Value(l.to_double() * r.to_double());
        return Value(out);
      }
      if (nums) return Value(l.to_double() * r.to_double());
      const Value* seq = l.is_string() || l.is_array() ? &l : (r.is_string() || r.is_array()) ? &r : nullptr;
      const Value* count = seq == &l ? &r : &l;
      if (seq && (count->is_int() || count->is_bool())) {
        int64_t n = std::max<int64_t>(0, int_of(*count));
        if (seq->is_string()) {
          const std::string& s = seq->as_string();
          if (n > 0 && s.size() > 0 && static_cast<uint64_t>(n) > lim_.max_output / s.size()) check_string(lim_.max_output + 1);
          std::string out;
          out.reserve(s.size() * static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) out += s;
          return Value(std::move(out));
        }
        const Array& a = *seq->as_array();
        if (n > 0 && a.size() > 0 && static_cast<uint64_t>(n) > lim_.max_list / a.size()) check_list(lim_.max_list + 1);
        Array out;
        for (int64_t i = 0; i < n; ++i) out.insert(out.end(), a.begin(), a.end());
        return Value::array(std::move(out));
      }
      return unsupported();
    }
    if (op == "/") {
      if (!nums) return unsupported();
      if (r.to_double() == 0.0) error_at(line, "division by zero");
      return Value(l.to_double() / r.to_double());
    }
    if (op == "//") {
      if (!nums) return unsupported();
      if (r.to_double() == 0.0) error_at(line, "integer division or modulo by zero");
      if (ints) {
        int64_t a = int_of(l), b = int_of(r);
        if (a == INT64_MIN && b == -1) return Value(-static_cast<double>(a));
        int64_t q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
        return Value(q);
      }
      return Value(std::floor(l.to_double() / r.to_double()));
    }
    if (op == "%") {
      if (l.is_string()) return Value(percent_format(l.as_string(), r, line));
      if (!nums) return unsupported();
      if (r.to_double() == 0.0) error_at(line, "integer division or modulo by zero");
      if (ints) {
        int64_t a = int_of(l), b = int_of(r);
        if (b == -1) return Value(int64_t{0});
        int64_t m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return Value(m);
      }
      double a = l.to_double(), b = r.to_double();
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value(m);
    }
    if (op == "**") {
      if (!nums) return unsupported();
      if (ints && int_of(r) >= 0) {
        int64_t base = int_of(l), exp = int_of(r), out = 1;
        bool overflow = false;
        for (int64_t i = 0; i < exp && !overflow; ++i) {
          overflow = __builtin_mul_overflow(out, base, &out);
          if (out == 0 || out == 1) break;  // 0**n, 1**n
          if (base == -1) {
            out = (exp % 2 == 0) ? 1 : -1;
            break;
          }
        }
        if (!overflow) return Value(out);
      }
      return Value(std::pow(l.to_double(), r.to_double()));
    }
    error_at(line, "unknown operator " + op);
  }

  // Python's "fmt % args" for the common conversions (%s %r %d %i %f %x %%), with width and precision.
  std::string percent_format(const std::string& fmt, const Value& args, int line) {
    std::vector<Value> list;
    if (args.is_array()) list = *args.as_array();
    else list.push_back(args);
    size_t next = 0;
    std::string out;
    for (size_t i = 0; i < fmt.size(); ++i) {
      if (fmt[i] != '%') {
        out += fmt[i];
        continue;
      }
      if (++i >= fmt.size()) error_at(line, "incomplete format");
      if (fmt[i] == '%') {
        out += '%';
        continue;
      }
      std::string spec = "%";
      while (i < fmt.size() && std::string("-+ #0123456789.").find(fmt[i]) != std::string::npos) spec += fmt[i++];
      if (i >= fmt.size()) error_at(line, "incomplete format");
      char conv = fmt[i];
      if (next >= list.size()) error_at(line, "not enough arguments for format string");
      const Value& v = list[next++];
      char buf[512];
      switch (conv) {
        case 's':
        case 'r': {
          std::string s = conv == 's' ? to_str(v) : to_repr(v);
          if (spec == "%") out += s;
          else {
            // Width / precision on strings: apply by hand to avoid truncation of long strings.
            int width = 0;
            bool left = spec.find('-') != std::string::npos;
            size_t dot = spec.find('.');
            std::string digits = spec.substr(1, dot == std::string::npos ? std::string::npos : dot - 1);
            digits.erase(std::remove_if(digits.begin(), digits.end(), [](char c) { return !std::isdigit(c); }),
                         digits.end());
            if (!digits.empty()) width = std::min(std::atoi(digits.c_str()), 4096);
            if (dot != std::string::npos) s = s.substr(0, static_cast<size_t>(std::atoi(spec.c_str() + dot + 1)));
            size_t len = utf8_length(s);
            std::string pad = static_cast<size_t>(width) > len ? std::string(static_cast<size_t>(width) - len, ' ') : "";
            out += left ? s + pad : pad + s;
          }
          break;
        }
        case 'd':
        case 'i':
        case 'x':
        case 'X':
        case 'o': {
          if (!is_numeric(v)) error_at(line, std::string("%") + conv + " format: a number is required, not " + v.type_name());
          long long n = v.is_float() ? static_cast<long long>(v.as_float()) : static_cast<long long>(int_of(v));
          std::snprintf(buf, sizeof buf, (spec + "ll" + (conv == 'i' ? 'd' : conv)).c_str(), n);
          out += buf;
          break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G': {
          if (!is_numeric(v)) error_at(line, std::string("%") + conv + " format: a number is required, not " + v.type_name());
          std::snprintf(buf, sizeof buf, (spec + conv).c_str(), v.to_double());
          out += buf;
          break;
        }
        default: error_at(line, std::string("unsupported format character '") + conv + "'");
      }
      check_string(out.size());
    }
    if (next < list.size() && args.is_array())
      error_at(line, "not all arguments converted during string formatting");
    return out;
  }

  // Python str.format with {} / {0} / {name} fields (format specs other than empty are ignored).
  std::string brace_format(const std::string& fmt, CallArgs& args, int line) {
    std::string out;
    size_t auto_index = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
      char c = fmt[i];
      if (c == '{') {
        if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
          out += '{';
          ++i;
          continue;
        }
        size_t close = fmt.find('}', i);
        if (close == std::string::npos) error_at(line, "single '{' encountered in format string");
        std::string field = fmt.substr(i + 1, close - i - 1);
        size_t colon = field.find(':');
        if (colon != std::string::npos) field.resize(colon);
        size_t bang = field.find('!');
        bool repr = false;
        if (bang != std::string::npos) {
          repr = field.substr(bang + 1) == "r";
          field.resize(bang);
        }
        const Value* v = nullptr;
        if (field.empty()) {
          if (auto_index < args.positional.size()) v = &args.positional[auto_index];
          ++auto_index;
        } else if (field.size() < 10 && std::all_of(field.begin(), field.end(), [](char d) { return std::isdigit(d); })) {
          size_t k = static_cast<size_t>(std::atoll(field.c_str()));
          if (k < args.positional.size()) v = &args.positional[k];
        } else {
          for (auto& [k, val] : args.named)
            if (k == field) v = &val;
        }
        if (!v) error_at(line, "format field '{" + field + "}' has no matching argument");
        out += repr ? to_repr(*v) : to_str(*v);
        check_string(out.size());
        i = close;
      } else if (c == '}') {
        if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
        out += '}';
      } else {
        out += c;
      }
    }
    return out;
  }

  Value eval_slice(const Expr& e, Scope& scope) {
    Value obj = eval(*e.object, scope);
    std::optional<int64_t> parts[3];
    for (int i = 0; i < 3; ++i) {
      if (!e.items[static_cast<size_t>(i)]) continue;
      Value v = eval(*e.items[static_cast<size_t>(i)], scope);
      if (v.is_none()) continue;
      if (!v.is_int() && !v.is_bool()) error_at(e.line, "slice indices must be integers or None");
      parts[i] = int_of(v);
    }
    if (parts[2] && *parts[2] == 0) error_at(e.line, "slice step cannot be zero");
    if (obj.is_array()) {
      const Array& a = *obj.as_array();
      SliceRange r = adjust_slice(static_cast<int64_t>(a.size()), parts[0], parts[1], parts[2]);
      Array out;
      for (int64_t k = 0; k < r.count; ++k) out.push_back(a[static_cast<size_t>(r.start + k * r.step)]);
      return Value::array(std::move(out));
    }
    if (obj.is_string()) {
      const std::string& s = obj.as_string();
      auto offs = utf8_offsets(s);
      int64_t n = static_cast<int64_t>(offs.size()) - 1;
      SliceRange r = adjust_slice(n, parts[0], parts[1], parts[2]);
      std::string out;
      if (r.step == 1 && r.count > 0) {
        out = s.substr(offs[static_cast<size_t>(r.start)],
                       offs[static_cast<size_t>(r.start + r.count)] - offs[static_cast<size_t>(r.start)]);
      } else {
        for (int64_t k = 0; k < r.count; ++k) {
          auto u = static_cast<size_t>(r.start + k * r.step);
          out += s.substr(offs[u], offs[u + 1] - offs[u]);
        }
      }
      return Value(std::move(out));
    }
    if (obj.is_undefined()) return Value();
    error_at(e.line, std::string("'") + obj.type_name() + "' object is not subscriptable");
  }

  Value get_item(const Value& obj, const Value& key) {
    if (obj.is_array() && (key.is_int() || key.is_bool())) {
      const Array& a = *obj.as_array();
      int64_t i = int_of(key), n = static_cast<int64_t>(a.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      return a[static_cast<size_t>(i)];
    }
    if (obj.is_string() && (key.is_int() || key.is_bool())) {
      const std::string& s = obj.as_string();
      auto offs = utf8_offsets(s);
      int64_t i = int_of(key), n = static_cast<int64_t>(offs.size()) - 1;
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value();
      auto u = static_cast<size_t>(i);
      return Value(s.substr(offs[u], offs[u + 1] - offs[u]));
    }
    if (obj.is_object()) {
      const Value* v = key.is_string() ? obj.as_object()->find(key.as_string()) : obj.as_object()->find(to_str(key));
      if (v) return *v;
      if (key.is_string()) return get_attr(obj, key.as_string(), /*methods_only=*/true);
      return Value();
    }
    return Value();
  }

  // obj.name: dict methods first (as Python getattr), then keys; string methods; else undefined.
  Value get_attr(const Value& obj, const std::string& name, bool methods_only = false) {
    if (obj.is_object()) {
      const ObjectPtr& o = obj.as_object();
      if (!o->is_namespace) {
        Value m = dict_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (methods_only) return Value();
      const Value* v = o->find(name);
      return v ? *v : Value();
    }
    if (obj.is_string()) return string_method(obj, name);
    if (obj.is_array()) return list_method(obj, name);
    return Value();
  }

  Value dict_method(const Value& self, const std::string& name) {
    ObjectPtr o = self.as_object();
    if (name == "get")
      return make_function("dict.get", [o](CallArgs& a) {
        Args args(a, "dict.get()");
        const Value* k = args.get(0, "key");
        if (!k) fail(ErrorKind::invalid_argument, "dict.get() needs a key");
        const Value* v = o->find(k->is_string() ? k->as_string() : to_str(*k));
        return v ? *v : args.get_or(1, "default", Value::none());
      });
    if (name == "items")
      return make_function("dict.items", [o](CallArgs&) {
        Array out;
        for (const auto& [k, v] : o->items) out.push_back(Value::array({Value(k), v}));
        return Value::array(std::move(out));
      });
    if (name == "keys")
      return make_function("dict.keys", [o](CallArgs&) {
        Array out;
        for (const auto& kv : o->items) out.emplace_back(kv.first);
        return Value::array(std::move(out));
      });
    if (name == "values")
      return make_function("dict.values", [o](CallArgs&) {
        Array out;
        for (const auto& kv : o->items) out.push_back(kv.second);
        return Value::array(std::move(out));
      });
    return Value();
  }

  Value list_method(const Value& self, const std::string& name) {
    ArrayPtr a = self.as_array();
    if (name == "index")
      return make_function("list.index", [a](CallArgs& args) {
        if (args.positional.empty()) fail(ErrorKind::invalid_argument, "list.index() needs a value");
        for (size_t i = 0; i < a->size(); ++i)
          if (equals((*a)[i], args.positional[0])) return Value(static_cast<int64_t>(i));
        fail(ErrorKind::invalid_argument, "chat template error: {} is not in list", to_repr(args.positional[0]));
      });
    if (name == "count")
      return make_function("list.count", [a](CallArgs& args) {
        if (args.positional.empty()) fail(ErrorKind::invalid_argument, "list.count() needs a value");
        int64_t n = 0;
        for (const auto& v : *a) n += equals(v, args.positional[0]);
        return Value(n);
      });
    return Value();
  }

  static const std::string& str_arg(const Value* v, const char* what) {
    if (!v || !v->is_string()) fail(ErrorKind::invalid_argument, "chat template error: {} needs a string argument", what);
    return v->as_string();
  }

  Value string_method(const Value& self, const std::string& name) {
    std::string s = self.as_string();
    auto fn = [&](const char* full, auto body) { return make_function(full, body); };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      bool l = name != "rstrip", r = name != "lstrip";
      return fn("str.strip", [s, l, r](CallArgs& a) {
        const Value* chars = a.positional.empty() ? nullptr : &a.positional[0];
        if (chars && chars->is_string()) return Value(strip_chars(s, &chars->as_string(), l, r));
        return Value(strip_chars(s, nullptr, l, r));
      });
    }
    if (name == "upper") return fn("str.upper", [s](CallArgs&) { return Value(to_upper(s)); });
    if (name == "lower") return fn("str.lower", [s](CallArgs&) { return Value(to_lower(s)); });
    if (name == "title") return fn("str.title", [s](CallArgs&) { return Value(py_title(s)); });
    if (name == "capitalize") return fn("str.capitalize", [s](CallArgs&) { return Value(capitalize(s)); });
    if (name == "split" || name == "rsplit") {
      return fn("str.split", [s](CallArgs& a) {
        Args args(a, "str.split()");
        Value sep = args.get_or(0, "sep", Value::none());
        Value maxsplit = args.get_or(1, "maxsplit", Value(int64_t{-1}));
        int64_t m = maxsplit.is_int() ? maxsplit.as_int() : -1;
        std::vector<std::string> parts;
        if (sep.is_none() || sep.is_undefined()) {
          parts = split_ws(s, m);
        } else {
          const std::string& sp = str_arg(&sep, "str.split()");
          if (sp.empty()) fail(ErrorKind::invalid_argument, "chat template error: str.split(): empty separator");
          parts = split_sep(s, sp, m);
        }
        Array out;
        for (auto& p : parts) out.emplace_back(std::move(p));
        return Value::array(std::move(out));
      });
    }
    if (name == "splitlines")
      return fn("str.splitlines", [s](CallArgs&) {
        Array out;
        size_t i = 0;
        while (i < s.size()) {
          size_t j = s.find_first_of("\r\n", i);
          if (j == std::string::npos) {
            out.emplace_back(s.substr(i));
            break;
          }
          out.emplace_back(s.substr(i, j - i));
          i = j + ((s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n') ? 2 : 1);
        }
        return Value::array(std::move(out));
      });
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return fn("str.startswith", [s, starts](CallArgs& a) {
        if (a.positional.empty()) fail(ErrorKind::invalid_argument, "chat template error: startswith/endswith need an argument");
        std::vector<Value> options;
        if (a.positional[0].is_array()) options = *a.positional[0].as_array();
        else options.push_back(a.positional[0]);
        for (const auto& o : options) {
          const std::string& p = str_arg(&o, "startswith/endswith");
          if (p.size() > s.size()) continue;
          if (starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0)
            return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "replace")
      return fn("str.replace", [this, s](CallArgs& a) {
        Args args(a, "str.replace()");
        return Value(replace(s, str_arg(args.get(0, "old"), "replace()"), str_arg(args.get(1, "new"), "replace()"),
                             args.get_or(2, "count", Value(int64_t{-1}))));
      });
    if (name == "find" || name == "rfind" || name == "index" || name == "count") {
      std::string which = name;
      return fn("str.find", [s, which](CallArgs& a) {
        const std::string& sub = str_arg(a.positional.empty() ? nullptr : &a.positional[0], "str.find()");
        if (which == "count") {
          if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
          int64_t n = 0;
          for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
          return Value(n);
        }
        size_t p = which == "rfind" ? s.rfind(sub) : s.find(sub);
        if (p == std::string::npos) {
          if (which == "index") fail(ErrorKind::invalid_argument, "chat template error: substring not found");
          return Value(int64_t{-1});
        }
        return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, p))));
      });
    }
    if (name == "join")
      return fn("str.join", [this, s](CallArgs& a) {
        if (a.positional.empty()) fail(ErrorKind::invalid_argument, "chat template error: str.join() needs a list");
        return Value(join(iterate(a.positional[0], 0), s, nullptr));
      });
    if (name == "format")
      return fn("str.format", [this, s](CallArgs& a) { return Value(brace_format(s, a, 0)); });
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper") {
      std::string which = name;
      return fn("str.is", [s, which](CallArgs&) {
        if (s.empty()) return Value(false);
        bool any_cased = false;
        for (unsigned char c : s) {
          if (which == "isdigit" && !std::isdigit(c)) return Value(false);
          if (which == "isalpha" && !std::isalpha(c) && c < 0x80) return Value(false);
          if (which == "isalnum" && !std::isalnum(c) && c < 0x80) return Value(false);
          if (which == "isspace" && !is_py_space(static_cast<char>(c))) return Value(false);
          if (which == "islower" && std::isupper(c)) return Value(false);
          if (which == "isupper" && std::islower(c)) return Value(false);
          any_cased = any_cased || std::isalpha(c);
        }
        if (which == "islower" || which == "isupper") return Value(any_cased);
        return Value(true);
      });
    }
    return Value();
  }

  std::string replace(const std::string& s, const std::string& from, const std::string& to, const Value& count) {
    int64_t max = count.is_int() ? count.as_int() : -1;
    std::string out;
    if (from.empty()) {
      // Python inserts `to` between every character (and at both ends).
      auto offs = utf8_offsets(s);
      int64_t done = 0;
      for (size_t i = 0; i + 1 < offs.size() || i == 0; ++i) {
        if (max < 0 || done < max) {
          out += to;
          ++done;
        }
        if (i + 1 < offs.size()) out += s.substr(offs[i], offs[i + 1] - offs[i]);
        check_string(out.size());
        if (i + 1 >= offs.size()) break;
      }
      if (offs.size() > 1 && (max < 0 || done < max)) out += to;
      return out;
    }
    size_t i = 0;
    int64_t done = 0;
    while (max < 0 || done < max) {
      size_t j = s.find(from, i);
      if (j == std::string::npos) break;
      out.append(s, i, j - i);
      out += to;
      check_string(out.size());
      i = j + from.size();
      ++done;
    }
    out.append(s, i, std::string::npos);
    check_string(out.size());
    return out;
  }

  std::string join(const std::vector<Value>& items, const std::string& sep, const std::string* attribute) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += sep;
      out += to_str(attribute ? lookup_path(items[i], *attribute) : items[i]);
      check_string(out.size());
    }
    return out;
  }

  // "a.b.0" attribute paths as map(attribute=) / selectattr / sort(attribute=) accept them.
  Value lookup_path(const Value& v, const std::string& path) {
    Value cur = v;
    size_t i = 0;
    while (true) {
      size_t dot = path.find('.', i);
      std::string part = path.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
      bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(c); });
      if (numeric && (cur.is_array() || cur.is_string())) cur = get_item(cur, Value(static_cast<int64_t>(std::atoll(part.c_str()))));
      else cur = get_item(cur, Value(part));
      if (dot == std::string::npos) return cur;
      i = dot + 1;
    }
  }

  // ---- filters ----

  Value apply_filter_chain(const Expr& f, Value input, Scope& scope) {
    Value v;
    if (f.object && f.object->kind == Expr::Kind::filter) v = apply_filter_chain(*f.object, std::move(input), scope);
    else if (f.object) v = eval(*f.object, scope);
    else v = std::move(input);
    CallArgs args = eval_args(f, scope);
    return apply_filter(f.name, v, args, f.line);
  }

  std::vector<Value> as_list(const Value& v, int line) { return iterate(v, line); }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& call, int line) {
    Args args(call, "filter '" + name + "'");
    if (name == "trim") {
      if (!v.is_string()) return Value(strip_chars(to_str(v), nullptr, true, true));
      const Value* chars = args.get(0, "chars");
      if (chars && chars->is_string()) return Value(strip_chars(v.as_string(), &chars->as_string(), true, true));
      return Value(strip_chars(v.as_string(), nullptr, true, true));
    }
    if (name == "length" || name == "count") {
      if (v.is_string()) return Value(static_cast<int64_t>(utf8_length(v.as_string())));
      if (v.is_array()) return Value(static_cast<int64_t>(v.as_array()->size()));
      if (v.is_object()) return Value(static_cast<int64_t>(v.as_object()->items.size()));
      if (v.is_undefined()) return Value(int64_t{0});
      error_at(line, std::string("object of type '") + v.type_name() + "' has no len()");
    }
    if (name == "tojson") {
      Value indent = args.get_or(0, "indent", Value::none());
      bool sort_keys = args.get_or(1, "sort_keys", Value(false)).truthy();
      int ind = indent.is_int() ? static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64)) : -1;
      std::string s = to_json_text(v, ind, sort_keys);
      check_string(s.size());
      return Value(std::move(s));
    }
    if (name == "upper") return Value(to_upper(to_str(v)));
    if (name == "lower") return Value(to_lower(to_str(v)));
    if (name == "title") return Value(jinja_title(to_str(v)));
    if (name == "capitalize") return Value(capitalize(to_str(v)));
    if (name == "default" || name == "d") {
      Value fallback = args.get_or(0, "default_value", Value(""));
      bool boolean = args.get_or(1, "boolean", Value(false)).truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
      return v;
    }
    if (name == "first") {
      if (v.is_string()) return get_item(v, Value(int64_t{0}));
      auto items = as_list(v, line);
      return items.empty() ? Value() : items.front();
    }
    if (name == "last") {
      if (v.is_string()) return get_item(v, Value(int64_t{-1}));
      auto items = as_list(v, line);
      return items.empty() ? Value() : items.back();
    }
    if (name == "join") {
      Value sep = args.get_or(0, "d", Value(""));
      const Value* attr = args.get(1, "attribute");
      std::string attribute = attr ? to_str(*attr) : "";
      return Value(join(as_list(v, line), to_str(sep), attr ? &attribute : nullptr));
    }
    if (name == "replace") {
      std::string s = to_str(v);
      const Value* from = args.get(0, "old");
      const Value* to = args.get(1, "new");
      if (!from || !to) error_at(line, "replace filter needs two arguments");
      return Value(replace(s, to_str(*from), to_str(*to), args.get_or(2, "count", Value(int64_t{-1}))));
    }
    if (name == "list") return Value::array(as_list(v, line));
    if (name == "string") return Value(to_str(v));
    if (name == "safe" || name == "forceescape") return v;
    if (name == "e" || name == "escape") {
      std::string out;
      for (char c : to_str(v)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      check_string(out.size());
      return Value(std::move(out));
    }
    if (name == "int") {
      Value fallback = args.get_or(0, "default", Value(int64_t{0}));
      if (v.is_int()) return v;
      if (v.is_bool()) return Value(int_of(v));
      if (v.is_float()) {
        double d = v.as_float();
        if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return fallback;
        return Value(static_cast<int64_t>(d));
      }
      if (v.is_string()) {
        std::string s = strip_chars(v.as_string(), nullptr, true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        if (s.empty()) return fallback;
        char* end = nullptr;
        errno = 0;
        long long n = std::strtoll(s.c_str(), &end, 10);
        if (*end == '\0' && errno == 0) return Value(static_cast<int64_t>(n));
        double d = std::strtod(s.c_str(), &end);  // Jinja's int filter accepts "3.7" -> 3
        if (*end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
      }
      return fallback;
    }
    if (name == "float") {
      Value fallback = args.get_or(0, "default", Value(0.0));
      if (v.is_number() || v.is_bool()) return Value(v.to_double());
      if (v.is_string()) {
        std::string s = strip_chars(v.as_string(), nullptr, true, true);
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && *end == '\0') return Value(d);
      }
      return fallback;
    }
    if (name == "abs") {
      if (v.is_int()) return v.as_int() == INT64_MIN ? Value(-static_cast<double>(v.as_int())) : Value(static_cast<int64_t>(std::llabs(v.as_int())));
      if (v.is_float()) return Value(std::fabs(v.as_float()));
      if (v.is_bool()) return Value(int_of(v));
      error_at(line, std::string("bad operand type for abs(): '") + v.type_name() + "'");
    }
    if (name == "round") {
      if (!is_numeric(v)) error_at(line, "round filter needs a number");
      int64_t precision = int_of(args.get_or(0, "precision", Value(int64_t{0})));
      std::string method = to_str(args.get_or(1, "method", Value("common")));
      double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
      double x = v.to_double() * scale;
      if (method == "ceil") x = std::ceil(x);
      else if (method == "floor") x = std::floor(x);
      else x = std::nearbyint(x);  // Python's round(): halves go to the even neighbour
      return Value(x / scale);
    }
    if (name == "items") {
      if (v.is_undefined()) return Value::array();
      if (!v.is_object()) error_at(line, std::string("items filter needs a mapping, got '") + v.type_name() + "'");
      Array out;
      for (const auto& [k, e] : v.as_object()->items) out.push_back(Value::array({Value(k), e}));
      return Value::array(std::move(out));
    }
    if (name == "dictsort") {
      if (!v.is_object()) error_at(line, "dictsort filter needs a mapping");
      bool case_sensitive = args.get_or(0, "case_sensitive", Value(false)).truthy();
      std::string by = to_str(args.get_or(1, "by", Value("key")));
      bool reverse = args.get_or(2, "reverse", Value(false)).truthy();
      Array out;
      for (const auto& [k, e] : v.as_object()->items) out.push_back(Value::array({Value(k), e}));
      size_t idx = by == "value" ? 1 : 0;
      std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
        Value x = (*a.as_array())[idx], y = (*b.as_array())[idx];
        if (!case_sensitive && x.is_string() && y.is_string()) {
          x = Value(to_lower(x.as_string()));
          y = Value(to_lower(y.as_string()));
        }
        return reverse ? less_than(y, x) : less_than(x, y);
      });
      return Value::array(std::move(out));
    }
    if (name == "reverse") {
      if (v.is_string()) {
        auto offs = utf8_offsets(v.as_string());
        std::string out;
        for (size_t i = offs.size() - 1; i > 0; --i) out += v.as_string().substr(offs[i - 1], offs[i] - offs[i - 1]);
        return Value(std::move(out));
      }
      auto items = as_list(v, line);
      std::reverse(items.begin(), items.end());
      return Value::array(std::move(items));
    }
    if (name == "sort") {
      auto items = as_list(v, line);
      bool reverse = args.get_or(0, "reverse", Value(false)).truthy();
      bool case_sensitive = args.get_or(1, "case_sensitive", Value(false)).truthy();
      const Value* attr = args.get(2, "attribute");
      std::string attribute = attr ? to_str(*attr) : "";
      auto key = [&](const Value& x) {
        Value k = attr ? lookup_path(x, attribute) : x;
        if (!case_sensitive && k.is_string()) return Value(to_lower(k.as_string()));
        return k;
      };
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        return reverse ? less_than(key(b), key(a)) : less_than(key(a), key(b));
      });
      return Value::array(std::move(items));
    }
    if (name == "unique") {
      Array out;
      for (auto& x : as_list(v, line)) {
        bool seen = false;
        for (const auto& y : out) seen = seen || equals(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::array(std::move(out));
    }
    if (name == "max" || name == "min") {
      auto items = as_list(v, line);
      if (items.empty()) return Value();
      Value best = items[0];
      for (size_t i = 1; i < items.size(); ++i)
        if (name == "max" ? less_than(best, items[i]) : less_than(items[i], best)) best = items[i];
      return best;
    }
    if (name == "sum") {
      const Value* attr = args.get(0, "attribute");
      std::string attribute = attr ? to_str(*attr) : "";
      Value total = args.get_or(1, "start", Value(int64_t{0}));
      for (auto& x : as_list(v, line)) total = binary_op("+", total, attr ? lookup_path(x, attribute) : x, line);
      return total;
    }
    if (name == "map") {
      auto items = as_list(v, line);
      Array out;
      const Value* attr = nullptr;
      for (const auto& [k, val] : call.named)
        if (k == "attribute") attr = &val;
      if (attr) {
        std::string attribute = to_str(*attr);
        const Value* def = nullptr;
        for (const auto& [k, val] : call.named)
          if (k == "default") def = &val;
        for (auto& x : items) {
          Value r = lookup_path(x, attribute);
          out.push_back(r.is_undefined() && def ? *def : r);
        }
        return Value::array(std::move(out));
      }
      if (call.positional.empty()) error_at(line, "map filter needs a filter name or attribute=");
      std::string filter = to_str(call.positional[0]);
      CallArgs rest;
      rest.positional.assign(call.positional.begin() + 1, call.positional.end());
      rest.named = call.named;
      for (auto& x : items) {
        CallArgs copy = rest;
        out.push_back(apply_filter(filter, x, copy, line));
      }
      return Value::array(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name == "selectattr" || name == "rejectattr";
      bool keep_if = name == "select" || name == "selectattr";
      auto items = as_list(v, line);
      size_t at = 0;
      std::string attribute;
      if (by_attr) {
        if (call.positional.empty()) error_at(line, name + " filter needs an attribute name");
        attribute = to_str(call.positional[0]);
        at = 1;
      }
      std::string test = at < call.positional.size() ? to_str(call.positional[at]) : "";
      CallArgs test_args;
      if (at + 1 < call.positional.size())
        test_args.positional.assign(call.positional.begin() + static_cast<std::ptrdiff_t>(at + 1), call.positional.end());
      Array out;
      for (auto& x : items) {
        tick(line);
        Value subject = by_attr ? lookup_path(x, attribute) : x;
        bool r;
        if (test.empty()) r = subject.truthy();
        else {
          CallArgs copy = test_args;
          r = apply_test(test, subject, copy, line);
        }
        if (r == keep_if) out.push_back(x);
      }
      return Value::array(std::move(out));
    }
    if (name == "indent") {
      Value width = args.get_or(0, "width", Value(int64_t{4}));
      bool first = args.get_or(1, "first", Value(false)).truthy();
      bool blank = args.get_or(2, "blank", Value(false)).truthy();
      std::string pad = width.is_string() ? width.as_string()
                                          : std::string(static_cast<size_t>(std::clamp<int64_t>(int_of(width.is_int() || width.is_bool() ? width : Value(int64_t{4})), 0, 1024)), ' ');
      std::string s = to_str(v);
      std::string out;
      size_t i = 0;
      bool first_line = true;
      while (true) {
        size_t nl = s.find('\n', i);
        std::string line_text = s.substr(i, nl == std::string::npos ? std::string::npos : nl - i);
        bool indent_it = first_line ? first : (blank || !line_text.empty());
        if (indent_it) out += pad;
        out += line_text;
        check_string(out.size());
        if (nl == std::string::npos) break;
        out += '\n';
        i = nl + 1;
        first_line = false;
      }
      return Value(std::move(out));
    }
    if (name == "wordcount") return Value(static_cast<int64_t>(split_ws(to_str(v), -1).size()));
    if (name == "truncate") {
      std::string s = to_str(v);
      int64_t length = int_of(args.get_or(0, "length", Value(int64_t{255})));
      bool killwords = args.get_or(1, "killwords", Value(false)).truthy();
      std::string end = to_str(args.get_or(2, "end", Value("...")));
      int64_t leeway = int_of(args.get_or(3, "leeway", Value(int64_t{5})));
      auto offs = utf8_offsets(s);
      int64_t n = static_cast<int64_t>(offs.size()) - 1;
      if (n <= length + leeway) return Value(s);
      int64_t keep = std::max<int64_t>(0, length - static_cast<int64_t>(utf8_length(end)));
      std::string head = s.substr(0, offs[static_cast<size_t>(keep)]);
      if (!killwords) {
        size_t sp = head.rfind(' ');
        if (sp != std::string::npos) head.resize(sp);
      }
      return Value(head + end);
    }
    if (name == "attr") {
      const Value* a = args.get(0, "name");
      if (!a) error_at(line, "attr filter needs a name");
      return get_attr(v, to_str(*a));
    }
    if (name == "batch") {
      int64_t size = int_of(args.get_or(0, "linecount", Value(int64_t{1})));
      if (size <= 0) error_at(line, "batch size must be positive");
      Array out, cur;
      for (auto& x : as_list(v, line)) {
        cur.push_back(x);
        if (static_cast<int64_t>(cur.size()) == size) {
          out.push_back(Value::array(std::move(cur)));
          cur.clear();
        }
      }
      if (!cur.empty()) out.push_back(Value::array(std::move(cur)));
      return Value::array(std::move(out));
    }
    if (name == "format") {
      return Value(percent_format(to_str(v), Value::array(call.positional), line));
    }
    if (name == "pprint") return Value(to_repr(v));
    error_at(line, "unknown filter '" + name + "'");
  }

  // ---- tests ----

  bool apply_test(const std::string& name, const Value& v, CallArgs& call, int line) {
    auto arg = [&]() -> const Value& {
      if (call.positional.empty()) error_at(line, "test '" + name + "' needs an argument");
      return call.positional[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_int() || v.is_float() || v.is_bool();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_object() && !v.as_object()->is_namespace;
    if (name == "iterable") return v.is_string() || v.is_array() || v.is_object() || v.is_undefined();
    if (name == "sequence") return v.is_string() || v.is_array() || v.is_object();
    if (name == "callable") return v.is_function();
    if (name == "lower") return v.is_string() && to_lower(v.as_string()) == v.as_string();
    if (name == "upper") return v.is_string() && to_upper(v.as_string()) == v.as_string();
    if (name == "odd" || name == "even") {
      if (!v.is_int() && !v.is_bool()) error_at(line, "test '" + name + "' needs an integer");
      bool odd = (int_of(v) % 2) != 0;
      return name == "odd" ? odd : !odd;
    }
    if (name == "divisibleby") {
      const Value& d = arg();
      if (!is_numeric(v) || !is_numeric(d) || d.to_double() == 0) error_at(line, "divisibleby needs non-zero numbers");
      if ((v.is_int() || v.is_bool()) && (d.is_int() || d.is_bool())) return int_of(v) % int_of(d) == 0;
      return std::fmod(v.to_double(), d.to_double()) == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg());
    if (name == "ne" || name == "!=") return !equals(v, arg());
    if (name == "lt" || name == "lessthan" || name == "<") return less_than(v, arg());
    if (name == "le" || name == "<=") return !less_than(arg(), v);
    if (name == "gt" || name == "greaterthan" || name == ">") return less_than(arg(), v);
    if (name == "ge" || name == ">=") return !less_than(v, arg());
    if (name == "in") return contains(arg(), v, line);
    if (name == "sameas") {
      const Value& o = arg();
      if (v.kind() != o.kind()) return false;
      if (v.is_array()) return v.as_array() == o.as_array();
      if (v.is_object()) return v.as_object() == o.as_object();
      if (v.is_function()) return v.as_function() == o.as_function();
      return equals(v, o);
    }
    if (name == "escaped") return false;
    error_at(line, "unknown test '" + name + "'");
  }

  // ---- globals ----

  void install_globals() {
    globals_.vars["raise_exception"] = make_function("raise_exception", [](CallArgs& a) -> Value {
      std::string msg = a.positional.empty() ? std::string("raise_exception() called by the chat template")
                                             : to_str(a.positional[0]);
      throw Error(ErrorKind::invalid_argument, msg);
    });
    globals_.vars["range"] = make_function("range", [this](CallArgs& a) {
      std::vector<int64_t> n;
      for (const auto& v : a.positional) {
        if (!v.is_int() && !v.is_bool())
          fail(ErrorKind::invalid_argument, "chat template error: range() needs integers, got '{}'", v.type_name());
        n.push_back(int_of(v));
      }
      int64_t start = 0, stop = 0, step = 1;
      if (n.size() == 1) stop = n[0];
      else if (n.size() == 2 || n.size() == 3) {
        start = n[0];
        stop = n[1];
        if (n.size() == 3) step = n[2];
      } else {
        fail(ErrorKind::invalid_argument, "chat template error: range() takes 1 to 3 arguments");
      }
      if (step == 0) fail(ErrorKind::invalid_argument, "chat template error: range() step must not be zero");
      SliceRange r{start, stop, step, 0};
      if (step > 0 && start < stop) r.count = static_cast<int64_t>((static_cast<uint64_t>(stop) - static_cast<uint64_t>(start) - 1) / static_cast<uint64_t>(step) + 1);
      if (step < 0 && start > stop) r.count = static_cast<int64_t>((static_cast<uint64_t>(start) - static_cast<uint64_t>(stop) - 1) / static_cast<uint64_t>(-step) + 1);
      if (r.count < 0 || static_cast<uint64_t>(r.count) > lim_.max_list) check_list(lim_.max_list + 1);
      Array out;
      out.reserve(static_cast<size_t>(r.count));
      for (int64_t k = 0; k < r.count; ++k) out.emplace_back(static_cast<int64_t>(static_cast<uint64_t>(start) + static_cast<uint64_t>(k) * static_cast<uint64_t>(step)));
      return Value::array(std::move(out));
    });
    globals_.vars["namespace"] = make_function("namespace", [this](CallArgs& a) {
      Value ns = Value::object();
      ns.as_object()->is_namespace = true;
      for (const auto& v : a.positional)
        if (v.is_object())
          for (const auto& [k, e] : v.as_object()->items) ns.as_object()->set(k, e);
      for (auto& [k, e] : a.named) ns.as_object()->set(k, e);
      namespaces_.push_back(ns.as_object());
      return ns;
    });
    globals_.vars["dict"] = make_function("dict", [](CallArgs& a) {
      Value d = Value::object();
      for (const auto& v : a.positional)
        if (v.is_object())
          for (const auto& [k, e] : v.as_object()->items) d.as_object()->set(k, e);
      for (auto& [k, e] : a.named) d.as_object()->set(k, e);
      return d;
    });
    globals_.vars["strftime_now"] = make_function("strftime_now", [this](CallArgs& a) {
      std::string fmt = a.positional.empty() ? std::string("%Y-%m-%d") : to_str(a.positional[0]);
      if (fmt.size() > 256) fail(ErrorKind::invalid_argument, "chat template error: strftime_now() format too long");
      std::time_t t = opt_.now_unix ? static_cast<std::time_t>(*opt_.now_unix) : std::time(nullptr);
      std::tm tm{};
      if (opt_.now_unix) gmtime_r(&t, &tm);
      else localtime_r(&t, &tm);
      if (fmt.empty()) return Value("");
      char buf[1024];
      size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value(std::string(buf, n));
    });
  }

  const RenderOptions& opt_;
  const Limits& lim_;
  Scope globals_;
  Scope root_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
  std::vector<ObjectPtr> namespaces_;
};

}  // namespace

Template::Template(std::string_view source) : body_(std::make_shared<Body>(parse(source))) {}

std::string Template::render(const Value& context, const RenderOptions& options) const {
  Renderer r(options);
  return r.run(*body_, context);
}

}  // namespace etna::tokenizer::jinja
