#include "etna/store/filter.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "etna/base/error.h"

namespace etna::store {

using nlohmann::json;

// ---- date-times ----

std::optional<double> parse_datetime(const std::string& t) {
  auto digits = [&](size_t pos, size_t n, int& out) {
    if (pos + n > t.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int Y, M, D, h = 0, m = 0, sec = 0;
  if (!digits(0, 4, Y) || t.size() < 10 || t[4] != '-' || !digits(5, 2, M) || t[7] != '-' || !digits(8, 2, D))
    return std::nullopt;
  if (M < 1 || M > 12 || D < 1 || D > 31) return std::nullopt;
  size_t i = 10;
  double frac = 0, offset = 0;
  if (i < t.size()) {
    if (t[i] != 'T' && t[i] != 't' && t[i] != ' ') return std::nullopt;
    if (!digits(i + 1, 2, h) || i + 3 >= t.size() || t[i + 3] != ':' || !digits(i + 4, 2, m)) return std::nullopt;
    i += 6;
    if (i < t.size() && t[i] == ':') {
      if (!digits(i + 1, 2, sec)) return std::nullopt;
      i += 3;
    }
    if (i < t.size() && t[i] == '.') {
      double scale = 0.1;
      size_t j = i + 1;
      for (; j < t.size() && t[j] >= '0' && t[j] <= '9'; ++j, scale /= 10) frac += (t[j] - '0') * scale;
      if (j == i + 1) return std::nullopt;
      i = j;
    }
    if (i < t.size()) {
      if ((t[i] == 'Z' || t[i] == 'z') && i + 1 == t.size()) {
        ++i;
      } else if (t[i] == '+' || t[i] == '-') {
        int oh, om = 0;
        if (!digits(i + 1, 2, oh)) return std::nullopt;
        size_t j = i + 3;
        if (j < t.size() && t[j] == ':') ++j;
        if (j < t.size() && !digits(j, 2, om)) return std::nullopt;
        if (j < t.size()) j += 2;
        if (j != t.size()) return std::nullopt;
        offset = (t[i] == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
        i = j;
      } else {
        return std::nullopt;
      }
    }
    if (h > 23 || m > 59 || sec > 60) return std::nullopt;
  }
  // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
  int y = Y - (M <= 2);
  int era = (y >= 0 ? y : y - 399) / 400;
  int yoe = y - era * 400;
  int doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  double days = double(era) * 146097.0 + double(doe) - 719468.0;
  return days * 86400.0 + h * 3600.0 + m * 60.0 + sec + frac - offset;
}

// ---- key paths ----

KeyPath KeyPath::parse(const std::string& key) {
  if (key.empty()) fail(ErrorKind::invalid_argument, "payload key must not be empty");
  KeyPath path;
  path.text = key;
  size_t start = 0;
  while (start <= key.size()) {
    size_t dot = key.find('.', start);
    std::string seg = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    Step step;
    size_t br = seg.find('[');
    if (br != std::string::npos) {
      if (seg.back() != ']' || seg.find('[', br + 1) != std::string::npos)
        fail(ErrorKind::invalid_argument, "payload key '{}': bad array suffix in '{}'", key, seg);
      std::string inside = seg.substr(br + 1, seg.size() - br - 2);
      seg = seg.substr(0, br);
      if (inside.empty()) {
        step.all_elements = true;
      } else {
        if (!std::all_of(inside.begin(), inside.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            inside.size() > 9)
          fail(ErrorKind::invalid_argument, "payload key '{}': array index '{}' is not a number", key, inside);
        step.index = std::stoul(inside);
      }
    }
    if (seg.empty()) fail(ErrorKind::invalid_argument, "payload key '{}' has an empty segment", key);
    step.field = seg;
    path.steps.push_back(std::move(step));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return path;
}

namespace {

void flatten_into(const json& v, std::vector<const json*>& out) {
  if (v.is_array()) {
    for (const auto& e : v) flatten_into(e, out);
  } else {
    out.push_back(&v);
  }
}

// The values at `key` below v. With `flatten`, an array found at the end of the path
// contributes its elements (Qdrant matches any element); without, the array itself (for nested
// conditions). Arrays met along the path are always walked element by element.
void walk_path(const json& v, const KeyPath& key, size_t step, bool flatten, std::vector<const json*>& out) {
  if (step == key.steps.size()) {
    if (flatten) {
      flatten_into(v, out);
    } else {
      out.push_back(&v);
    }
    return;
  }
  if (v.is_array()) {  // implicit flattening of arrays of objects
    for (const auto& e : v) walk_path(e, key, step, flatten, out);
    return;
  }
  if (!v.is_object()) return;
  const auto& s = key.steps[step];
  auto it = v.find(s.field);
  if (it == v.end()) return;
  if (s.all_elements) {
    if (!it->is_array()) return;
    for (const auto& e : *it) walk_path(e, key, step + 1, flatten, out);
  } else if (s.index) {
    if (!it->is_array() || *s.index >= it->size()) return;
    walk_path((*it)[*s.index], key, step + 1, flatten, out);
  } else {
    walk_path(*it, key, step + 1, flatten, out);
  }
}

void walk(const json& v, const KeyPath& key, size_t step, std::vector<const json*>& out) {
  walk_path(v, key, step, true, out);
}

void walk_raw(const json& v, const KeyPath& key, size_t step, std::vector<const json*>& out) {
  walk_path(v, key, step, false, out);
}

bool values_equal(const json& stored, const json& wanted) {
  if (wanted.is_string()) return stored.is_string() && stored.get_ref<const std::string&>() == wanted.get_ref<const std::string&>();
  if (wanted.is_boolean()) return stored.is_boolean() && stored.get<bool>() == wanted.get<bool>();
  if (wanted.is_number_integer()) {
    if (stored.is_number_integer()) return stored.get<int64_t>() == wanted.get<int64_t>();
    if (stored.is_number_unsigned()) return wanted.get<int64_t>() >= 0 && stored.get<uint64_t>() == wanted.get<uint64_t>();
    return false;
  }
  return false;
}

bool any_equal(const json& stored, const std::vector<json>& wanted) {
  for (const auto& w : wanted)
    if (values_equal(stored, w)) return true;
  return false;
}

bool check(const Condition& c, const PointId& id, const json& payload);

bool check_field(const FieldCondition& f, const json& payload) {
  std::vector<const json*> vals;
  walk(payload, f.key, 0, vals);
  if (f.values_count) {
    size_t n = 0;
    for (auto* v : vals) n += !v->is_null();
    if (!f.values_count->contains(static_cast<double>(n))) return false;
  }
  if (f.range) {
    bool any = false;
    for (auto* v : vals) {
      if (f.range->datetime) {
        if (!v->is_string()) continue;
        auto t = parse_datetime(v->get_ref<const std::string&>());
        if (t && f.range->contains(*t)) { any = true; break; }
      } else if (v->is_number() && f.range->contains(v->get<double>())) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return std::visit(
      [&](const auto& m) -> bool {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return true;
        } else if constexpr (std::is_same_v<T, MatchValue>) {
          for (auto* v : vals) if (values_equal(*v, m.value)) return true;
          return false;
        } else if constexpr (std::is_same_v<T, MatchAny>) {
          for (auto* v : vals) if (any_equal(*v, m.values)) return true;
          return false;
        } else if constexpr (std::is_same_v<T, MatchExcept>) {
          // Qdrant: matches when some stored value is not in the list (a missing field does not).
          for (auto* v : vals) if (!v->is_null() && !any_equal(*v, m.values)) return true;
          return false;
        } else if (m.words) {  // MatchText with a text index
          auto want = text_words(m.text);
          for (auto* v : vals) {
            if (!v->is_string()) continue;
            auto have = text_words(v->get_ref<const std::string&>());
            std::sort(have.begin(), have.end());
            if (std::all_of(want.begin(), want.end(),
                            [&](const std::string& w) { return std::binary_search(have.begin(), have.end(), w); }))
              return true;
          }
          return false;
        } else {  // MatchText
          for (auto* v : vals)
            if (v->is_string() && v->get_ref<const std::string&>().find(m.text) != std::string::npos) return true;
          return false;
        }
      },
      f.match);
}

bool check(const Condition& c, const PointId& id, const json& payload) {
  return std::visit(
      [&](const auto& cond) -> bool {
        using T = std::decay_t<decltype(cond)>;
        if constexpr (std::is_same_v<T, FieldCondition>) {
          return check_field(cond, payload);
        } else if constexpr (std::is_same_v<T, IsEmptyCondition>) {
          std::vector<const json*> vals;
          walk(payload, cond.key, 0, vals);
          return std::all_of(vals.begin(), vals.end(), [](const json* v) { return v->is_null(); });
        } else if constexpr (std::is_same_v<T, IsNullCondition>) {
          std::vector<const json*> vals;
          walk_raw(payload, cond.key, 0, vals);
          return std::any_of(vals.begin(), vals.end(), [](const json* v) { return v->is_null(); });
        } else if constexpr (std::is_same_v<T, HasIdCondition>) {
          return std::find(cond.ids.begin(), cond.ids.end(), id) != cond.ids.end();
        } else if constexpr (std::is_same_v<T, NestedCondition>) {
          std::vector<const json*> vals;
          walk_raw(payload, cond.key, 0, vals);
          for (auto* v : vals) {
            if (v->is_array()) {
              for (const auto& e : *v)
                if (cond.filter->matches(id, e)) return true;
            } else if (v->is_object() && cond.filter->matches(id, *v)) {
              return true;
            }
          }
          return false;
        } else {
          return cond->matches(id, payload);
        }
      },
      c);
}

}  // namespace

std::vector<const json*> values_at(const json& payload, const KeyPath& key) {
  std::vector<const json*> out;
  walk(payload, key, 0, out);
  return out;
}

bool Range::contains(double x) const {
  if (gt && !(x > *gt)) return false;
  if (gte && !(x >= *gte)) return false;
  if (lt && !(x < *lt)) return false;
  if (lte && !(x <= *lte)) return false;
  return true;
}

bool Filter::matches(const PointId& id, const json& payload) const {
  for (const auto& c : must)
    if (!check(c, id, payload)) return false;
  for (const auto& c : must_not)
    if (check(c, id, payload)) return false;
  if (!should.empty()) {
    bool any = false;
    for (const auto& c : should)
      if (check(c, id, payload)) { any = true; break; }
    if (!any) return false;
  }
  if (min_should) {
    size_t n = 0;
    for (const auto& c : min_should->conditions)
      if (check(c, id, payload) && ++n >= min_should->min_count) break;
    if (n < min_should->min_count) return false;
  }
  return true;
}

// ---- parsing ----

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  fail(ErrorKind::invalid_argument, "{}: {}", where, what);
}

std::shared_ptr<const Filter> parse_filter_at(const json& j, const std::string& where);

KeyPath parse_key(const json& j, const std::string& where) {
  if (!j.is_string()) bad(where, "expected a string payload key");
  try {
    return KeyPath::parse(j.get<std::string>());
  } catch (const Error& e) {
    bad(where, e.what());
  }
}

json parse_match_value(const json& v, const std::string& where) {
  if (v.is_string() || v.is_boolean() || v.is_number_integer() || v.is_number_unsigned()) return v;
  bad(where, "expected a string, integer or boolean");
}

Range parse_range(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where, "expected an object with gt / gte / lt / lte");
  Range r;
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::optional<double>* slot = nullptr;
    if (it.key() == "gt") slot = &r.gt;
    else if (it.key() == "gte") slot = &r.gte;
    else if (it.key() == "lt") slot = &r.lt;
    else if (it.key() == "lte") slot = &r.lte;
    else bad(where, "unknown range bound '" + it.key() + "' (expected gt, gte, lt, lte)");
    if (it->is_null()) continue;
    if (it->is_string()) {
      auto t = parse_datetime(it->get<std::string>());
      if (!t) bad(where + "." + it.key(), "expected a number or an RFC 3339 date-time");
      if (!r.datetime && (r.gt || r.gte || r.lt || r.lte)) bad(where + "." + it.key(), "mixes a date-time with number bounds");
      *slot = *t;
      r.datetime = true;
      continue;
    }
    if (!it->is_number()) bad(where + "." + it.key(), "expected a number or an RFC 3339 date-time");
    if (r.datetime) bad(where + "." + it.key(), "mixes a number with date-time bounds");
    *slot = it->get<double>();
  }
  return r;
}

FieldCondition parse_field(const json& j, const std::string& where) {
  FieldCondition f;
  f.key = parse_key(j["key"], where + ".key");
  bool any = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    std::string w = where + "." + k;
    if (k == "key") continue;
    if (it->is_null()) continue;
    if (k == "match") {
      if (!it->is_object() || it->size() != 1) bad(w, "expected exactly one of value, any, except, text");
      auto m = it->begin();
      if (m.key() == "value") {
        f.match = MatchValue{parse_match_value(*m, w + ".value")};
      } else if (m.key() == "any" || m.key() == "except") {
        if (!m->is_array()) bad(w + "." + m.key(), "expected an array");
        std::vector<json> vals;
        for (size_t i = 0; i < m->size(); ++i)
          vals.push_back(parse_match_value((*m)[i], fmt::format("{}.{}[{}]", w, m.key(), i)));
        if (m.key() == "any") f.match = MatchAny{std::move(vals)};
        else f.match = MatchExcept{std::move(vals)};
      } else if (m.key() == "text") {
        if (!m->is_string()) bad(w + ".text", "expected a string");
        f.match = MatchText{m->get<std::string>()};
      } else {
        bad(w, "unknown match kind '" + m.key() + "' (expected value, any, except, text)");
      }
      any = true;
    } else if (k == "range") {
      f.range = parse_range(*it, w);
      any = true;
    } else if (k == "values_count") {
      f.values_count = parse_range(*it, w);
      any = true;
    } else if (k.rfind("geo_", 0) == 0) {
      fail(ErrorKind::unsupported, "{}: geo conditions are not supported", w);
    } else {
      bad(w, "unknown field condition (expected match, range or values_count)");
    }
  }
  if (!any) bad(where, "field condition on '" + f.key.text + "' needs match, range or values_count");
  return f;
}

KeyPath parse_key_object(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("key")) bad(where, "expected {\"key\": \"...\"}");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "key") bad(where, "unexpected field '" + it.key() + "'");
  return parse_key(j["key"], where + ".key");
}

// Filters recurse once per nesting level (and build a path string per level): bounded here.
constexpr int kMaxFilterDepth = 64;
thread_local int t_filter_depth = 0;
struct FilterDepthGuard {
  explicit FilterDepthGuard(const std::string& where) {
    if (++t_filter_depth > kMaxFilterDepth) {
      --t_filter_depth;
      fail(ErrorKind::invalid_argument, "{}: filters nest deeper than {} levels (the limit)",
           where.size() > 80 ? where.substr(0, 80) + "..." : where, kMaxFilterDepth);
    }
  }
  ~FilterDepthGuard() { --t_filter_depth; }
  FilterDepthGuard(const FilterDepthGuard&) = delete;
  FilterDepthGuard& operator=(const FilterDepthGuard&) = delete;
};

Condition parse_condition(const json& j, const std::string& where) {
  FilterDepthGuard guard(where);
  if (!j.is_object() || j.empty()) bad(where, "expected a condition object");
  if (j.contains("key")) return parse_field(j, where);
  if (j.size() != 1 && !(j.contains("must") || j.contains("should") || j.contains("must_not") || j.contains("min_should")))
    bad(where, "a condition must have exactly one kind");
  const std::string& kind = j.begin().key();
  const json& v = j.begin().value();
  if (kind == "is_empty") return IsEmptyCondition{parse_key_object(v, where + ".is_empty")};
  if (kind == "is_null") return IsNullCondition{parse_key_object(v, where + ".is_null")};
  if (kind == "has_id") {
    if (!v.is_array()) bad(where + ".has_id", "expected an array of point ids");
    HasIdCondition h;
    for (size_t i = 0; i < v.size(); ++i) {
      try {
        h.ids.push_back(PointId::from_json(v[i]));
      } catch (const Error& e) {
        bad(fmt::format("{}.has_id[{}]", where, i), e.what());
      }
    }
    return h;
  }
  if (kind == "nested") {
    std::string w = where + ".nested";
    if (!v.is_object() || !v.contains("key") || !v.contains("filter")) bad(w, "expected {\"key\": ..., \"filter\": {...}}");
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.key() != "key" && it.key() != "filter") bad(w, "unexpected field '" + it.key() + "'");
    NestedCondition n{parse_key(v["key"], w + ".key"), parse_filter_at(v["filter"], w + ".filter")};
    if (!n.filter) bad(w + ".filter", "expected a filter object");
    return n;
  }
  if (kind == "must" || kind == "should" || kind == "must_not" || kind == "min_should")
    return parse_filter_at(j, where);
  if (kind == "geo_bounding_box" || kind == "geo_radius" || kind == "geo_polygon")
    fail(ErrorKind::unsupported, "{}: geo conditions are not supported", where);
  bad(where, "unknown condition '" + kind + "' (expected key, is_empty, is_null, has_id, nested or a filter)");
}

std::vector<Condition> parse_clause(const json& j, const std::string& where) {
  std::vector<Condition> out;
  if (j.is_null()) return out;
  if (j.is_object()) {
    out.push_back(parse_condition(j, where));
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) out.push_back(parse_condition(j[i], fmt::format("{}[{}]", where, i)));
  } else {
    bad(where, "expected an array of conditions");
  }
  return out;
}

std::shared_ptr<const Filter> parse_filter_at(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) bad(where, "expected a filter object");
  auto f = std::make_shared<Filter>();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "must") f->must = parse_clause(*it, where + ".must");
    else if (k == "should") f->should = parse_clause(*it, where + ".should");
    else if (k == "must_not") f->must_not = parse_clause(*it, where + ".must_not");
    else if (k == "min_should") {
      if (it->is_null()) continue;
      std::string w = where + ".min_should";
      if (!it->is_object() || !it->contains("conditions") || !it->contains("min_count"))
        bad(w, "expected {\"conditions\": [...], \"min_count\": N}");
      Filter::MinShould ms;
      ms.conditions = parse_clause((*it)["conditions"], w + ".conditions");
      const json& mc = (*it)["min_count"];
      if (!mc.is_number_unsigned() && !(mc.is_number_integer() && mc.get<int64_t>() >= 0))
        bad(w + ".min_count", "expected a non-negative integer");
      ms.min_count = mc.get<size_t>();
      f->min_should = std::move(ms);
    } else {
      bad(where, "unknown filter clause '" + k + "' (expected must, should, must_not, min_should)");
    }
  }
  return f;
}

}  // namespace

std::shared_ptr<const Filter> parse_filter(const json& j) { return parse_filter_at(j, "filter"); }

// ---- full-text matching ----

std::vector<std::string> text_words(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c >= 0x80) {
      cur.push_back(static_cast<char>(std::tolower(c)));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

namespace {

Condition bind_condition(const Condition& c, const std::vector<std::string>& keys);

std::vector<Condition> bind_all(const std::vector<Condition>& cs, const std::vector<std::string>& keys) {
  std::vector<Condition> out;
  for (const auto& c : cs) out.push_back(bind_condition(c, keys));
  return out;
}

Condition bind_condition(const Condition& c, const std::vector<std::string>& keys) {
  if (auto* f = std::get_if<FieldCondition>(&c)) {
    auto* m = std::get_if<MatchText>(&f->match);
    if (m && std::find(keys.begin(), keys.end(), f->key.text) != keys.end()) {
      FieldCondition g = *f;
      std::get<MatchText>(g.match).words = true;
      return g;
    }
    return c;
  }
  if (auto* sub = std::get_if<std::shared_ptr<const Filter>>(&c)) return bind_text_indexes(*sub, keys);
  return c;  // nested conditions address array elements, which the index does not cover
}

}  // namespace

std::shared_ptr<const Filter> bind_text_indexes(const std::shared_ptr<const Filter>& f,
                                                const std::vector<std::string>& keys) {
  if (!f || keys.empty()) return f;
  auto g = std::make_shared<Filter>();
  g->must = bind_all(f->must, keys);
  g->should = bind_all(f->should, keys);
  g->must_not = bind_all(f->must_not, keys);
  if (f->min_should) g->min_should = Filter::MinShould{bind_all(f->min_should->conditions, keys), f->min_should->min_count};
  return g;
}

}  // namespace etna::store
