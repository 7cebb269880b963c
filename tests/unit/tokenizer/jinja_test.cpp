// The Jinja expression language and statements, checked against what Jinja2 (as Hugging Face
// configures it: trim_blocks, lstrip_blocks) renders for the same input.
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "etna/base/error.h"
#include "etna/tokenizer/jinja/interpreter.h"

namespace etna::tokenizer::jinja {
namespace {

std::string render(const std::string& source, const nlohmann::json& context = nlohmann::json::object(),
                   const RenderOptions& options = {}) {
  return Template(source).render(from_json(context), options);
}

// Renders and returns the etna::Error message ("" if it rendered).
std::string error_of(const std::string& source, const nlohmann::json& context = nlohmann::json::object(),
                     const RenderOptions& options = {}) {
  try {
    Template(source).render(from_json(context), options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Jinja, TextAndOutput) {
  EXPECT_EQ(render("hello"), "hello");
  EXPECT_EQ(render("{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 2.5 }}"), "ab12.5");
  EXPECT_EQ(render("{{ x }}", {{"x", "X"}}), "X");
  EXPECT_EQ(render("[{{ missing }}]"), "[]");
  EXPECT_EQ(render("{# comment #}a{# another\n #}b"), "ab");
  EXPECT_EQ(render("{{ none }}|{{ true }}|{{ False }}"), "None|True|False");
  EXPECT_EQ(render("{{ 'a' 'b' }}"), "ab");  // adjacent literals concatenate
}

TEST(Jinja, StringEscapes) {
  EXPECT_EQ(render(R"({{ 'a\nb\t\'c\'' }})"), "a\nb\t'c'");
  EXPECT_EQ(render(R"({{ "\u00e9\x41" }})"), "\xc3\xa9" "A");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }}"), "7");
  EXPECT_EQ(render("{{ (1 + 2) * 3 }}"), "9");
  EXPECT_EQ(render("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }}"), "3.5 3 -4 1 2");
  EXPECT_EQ(render("{{ 2 ** 10 }} {{ 2 ** -1 }}"), "1024 0.5");
  EXPECT_EQ(render("{{ 4 / 2 }}"), "2.0");
  EXPECT_EQ(render("{{ -3 }} {{ - 2.5 }} {{ 1e3 }} {{ 0.1 + 0.2 }}"), "-3 -2.5 1000.0 0.30000000000000004");
  EXPECT_EQ(render("{{ 'ab' * 3 }}{{ [1] * 2 }}"), "ababab[1, 1]");
  EXPECT_EQ(render("{{ 'a' + 'b' }}{{ [1, 2] + [3] }}"), "ab[1, 2, 3]");
  EXPECT_EQ(render("{{ 'n=' ~ 5 ~ none }}"), "n=5None");
  EXPECT_NE(error_of("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' + 1 }}").find("unsupported operand"), std::string::npos);
}

TEST(Jinja, Comparisons) {
  EXPECT_EQ(render("{{ 1 < 2 }} {{ 2 <= 1 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}"),
            "True False True True True False");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}"),
            "True True True True");
  EXPECT_EQ(render("{{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ none == none }}"), "True True True");
}

TEST(Jinja, LogicReturnsOperands) {
  EXPECT_EQ(render("{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }}| {{ not 0 }} {{ not [1] }}"), "x b | True False");
  EXPECT_EQ(render("{{ 'yes' if x else 'no' }}", {{"x", true}}), "yes");
  EXPECT_EQ(render("{{ 'yes' if x else 'no' }}"), "no");
  EXPECT_EQ(render("[{{ 'yes' if x }}]"), "[]");
  EXPECT_EQ(render("{{ 'a' if false else 'b' if true else 'c' }}"), "b");
}

TEST(Jinja, UndefinedIsFalsyAndEmpty) {
  EXPECT_EQ(render("{% if u %}T{% else %}F{% endif %}{{ u.attr.deeper }}{{ u['k'] }}"), "F");
  EXPECT_EQ(render("{{ u is defined }} {{ u is undefined }} {{ d.missing is defined }}", {{"d", {{"k", 1}}}}),
            "False True False");
  EXPECT_EQ(render("{% for x in u %}x{% else %}empty{% endfor %}"), "empty");
}

TEST(Jinja, SubscriptsAndSlices) {
  nlohmann::json ctx = {{"l", {1, 2, 3, 4, 5}}, {"s", "hello"}, {"m", {{"role", "user"}, {"content", "hi"}}}};
  EXPECT_EQ(render("{{ l[0] }}{{ l[-1] }}{{ l[1:3] }}{{ l[::2] }}{{ l[::-1] }}{{ l[-2:] }}{{ l[:-4] }}", ctx),
            "15[2, 3][1, 3, 5][5, 4, 3, 2, 1][4, 5][1]");
  EXPECT_EQ(render("{{ s[1:] }} {{ s[-1] }} {{ s[::-1] }} {{ s[10:] }}|{{ l[10] }}|", ctx), "ello o olleh ||");
  EXPECT_EQ(render("{{ l[::9223372036854775807] }}{{ l[4:0:-2] }}{{ l[-100:100] }}", ctx), "[1][5, 3][1, 2, 3, 4, 5]");
  EXPECT_EQ(render("{{ m['content'] }} {{ m.content }} {{ m.role }}", ctx), "hi hi user");
  EXPECT_EQ(render("{{ l.0 }}", ctx), "1");
  // Code points, not bytes.
  EXPECT_EQ(render("{{ s[1] }}{{ s|length }}{{ s[:2] }}", {{"s", "\xc3\xa9t\xc3\xa9"}}), "t3\xc3\xa9t");
}

TEST(Jinja, ListsDictsAndPrinting) {
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5] }}"), "[1, 'a', None, True, 1.5]");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [2]} }}"), "{'a': 1, 'b': [2]}");
  EXPECT_EQ(render("{{ (1, 2) }}{{ () }}"), "[1, 2][]");
  EXPECT_EQ(render("{{ [\"it's\"] }}"), "[\"it's\"]");
}

TEST(Jinja, IfElifElse) {
  const std::string t = "{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}";
  EXPECT_EQ(render(t, {{"x", 1}}), "one");
  EXPECT_EQ(render(t, {{"x", 2}}), "two");
  EXPECT_EQ(render(t, {{"x", 3}}), "many");
}

TEST(Jinja, ForLoopVariables) {
  EXPECT_EQ(render("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
                   "{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }}{{ x }} {% endfor %}"),
            "1032103a 2121003b 3210013c ");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}"), "-2,1-3,2-,");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}"), "aba");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}),
            "a=1;b=2;");
  EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}), "ab");
  EXPECT_EQ(render("{% for c in 'abc' %}{{ c }}.{% endfor %}"), "a.b.c.");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(render("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}"
                   "{{ x }}{% endfor %}"),
            "02");
  EXPECT_EQ(render("{% for a in [1,2] %}{% for b in [3,4] %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|"
                   "{% endfor %}"),
            "131 142 1|231 242 2|");
}

TEST(Jinja, ScopingAndNamespace) {
  // Assignments inside a loop do not leak out; namespace attributes do.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1,2] %}{% set x = 5 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(n=0, found=false) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}"
                   "{% endfor %}{{ ns.n }} {{ ns.found }}"),
            "6 False");
  EXPECT_EQ(render("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ a }}{{ b }}"), "12");
  EXPECT_EQ(render("{% set t = 1, 2 %}{{ t }}"), "[1, 2]");
  EXPECT_EQ(render("{% set block %}in {{ 'block' }}{% endset %}[{{ block }}]"), "[in block]");
  EXPECT_NE(error_of("{% set d = {} %}{% set d.x = 1 %}").find("namespace"), std::string::npos);
}

TEST(Jinja, Macros) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }}"),
            "Hi Ann! Hi Bob? Hi Cy.");
  EXPECT_EQ(render("{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}"), "<inner>");
  EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}"
                   "{{ fact(5) }}"),
            "120");
  EXPECT_EQ(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
  // Hugging Face's {% generation %} marks assistant text; it renders its body unchanged.
  EXPECT_EQ(render("{%- generation %}{{ 'gen' }}{%- endgeneration %}"), "gen");
  EXPECT_EQ(render("{% set ns = namespace(l=[]) %}{% do ns.update if false %}{{ ns.l }}"), "[]");
}

TEST(Jinja, Filters) {
  EXPECT_EQ(render("{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}"), "x|hi|ABC|abc");
  EXPECT_EQ(render("{{ 'hello world-wide'|title }}|{{ 'hELLO'|capitalize }}"), "Hello World-Wide|Hello");
  EXPECT_EQ(render("{{ [1,2,3]|length }}{{ 'abcd'|length }}{{ {'a':1}|count }}{{ u|length }}"), "3410");
  EXPECT_EQ(render("{{ u|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ 0|d(5, boolean=true) }}"),
            "d||d|5");
  EXPECT_EQ(render("{{ [3,1,2]|first }}{{ [3,1,2]|last }}{{ 'abc'|first }}{{ [3,1,2]|sort|join(',') }}"), "32a1,2,3");
  EXPECT_EQ(render("{{ ['a','b']|join }}|{{ [1,2]|join(', ') }}"), "ab|1, 2");
  EXPECT_EQ(render("{{ 'a-b-c'|replace('-', '+') }}|{{ 'aaa'|replace('a', 'b', 2) }}"), "a+b+c|bba");
  EXPECT_EQ(render("{{ 'ab'|list }}|{{ 12|string ~ 'x' }}|{{ '42'|int + 1 }}|{{ 'x'|int }}|{{ '2.5'|float }}|{{ 3|float }}"),
            "['a', 'b']|12x|43|0|2.5|3.0");
  EXPECT_EQ(render("{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.1|round(0, 'ceil') }}|{{ -3|abs }}"),
            "2.57|2.0|4.0|3.0|3");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|items|list }}|{{ {'b': 1, 'a': 2}|dictsort }}"),
            "[['b', 1], ['a', 2]]|[['a', 2], ['b', 1]]");
  EXPECT_EQ(render("{{ [1,2,2,3]|unique|list }}{{ [1,2,3]|reverse|list }}{{ [4,9,2]|max }}{{ [4,9,2]|min }}{{ [1,2]|sum }}"),
            "[1, 2, 3][3, 2, 1]923");
  EXPECT_EQ(render("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{{ '<a & \"b\">'|e }}|{{ '<x>'|safe }}"), "&lt;a &amp; &#34;b&#34;&gt;|<x>");
  EXPECT_EQ(render("{{ '%s is %d'|format('x', 3) }}|{{ '%05.1f' % 3.14159 }}|{{ '%s-%s' % ('a', 'b') }}"),
            "x is 3|003.1|a-b");
  EXPECT_NE(error_of("{{ 1|nosuchfilter }}").find("unknown filter 'nosuchfilter'"), std::string::npos);
}

TEST(Jinja, MapSelectReject) {
  nlohmann::json ctx = {{"msgs", {{{"role", "system"}, {"content", "s"}},
                                  {{"role", "user"}, {"content", "u1"}},
                                  {{"role", "user"}, {"content", "u2"}}}}};
  EXPECT_EQ(render("{{ msgs|map(attribute='role')|join(',') }}", ctx), "system,user,user");
  EXPECT_EQ(render("{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}", ctx),
            "['u1', 'u2']");
  EXPECT_EQ(render("{{ msgs|rejectattr('role', 'equalto', 'user')|list|length }}", ctx), "1");
  EXPECT_EQ(render("{{ msgs|selectattr('missing')|list }}", ctx), "[]");
  EXPECT_EQ(render("{{ [1,2,3,4]|select('odd')|list }}{{ [1,2,3,4]|reject('odd')|list }}{{ [0,1,'',2]|select|list }}"),
            "[1, 3][2, 4][1, 2]");
  EXPECT_EQ(render("{{ ['a','b']|map('upper')|join }}"), "AB");
  EXPECT_EQ(render("{{ [{'x': {'y': 1}}]|map(attribute='x.y')|list }}"), "[1]");
}

TEST(Jinja, ToJson) {
  nlohmann::ordered_json tool = nlohmann::ordered_json::parse(
      R"({"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
          "required": ["city"]}, "strict": true, "n": null, "f": 0.5, "u": "é\"\n"})");
  Value v = from_json(tool);
  Value ctx = Value::object();
  ctx.as_object()->set("t", v);
  EXPECT_EQ(Template("{{ t|tojson }}").render(ctx),
            R"({"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, )"
            R"("required": ["city"]}, "strict": true, "n": null, "f": 0.5, "u": "é\"\n"})");
  EXPECT_EQ(render("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}"), R"({"a": 2, "b": 1})");
  EXPECT_EQ(render("{{ 'x'|tojson }}{{ 3|tojson }}{{ none|tojson }}"), "\"x\"3null");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(render("{{ none is none }}{{ 1 is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1.5 is number }}"
                   "{{ 'a' is number }}"),
            "TrueFalseTrueTrueTrueFalse");
  EXPECT_EQ(render("{{ {} is mapping }}{{ [] is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}"
                   "{{ [] is sequence }}"),
            "TrueFalseTrueTrueFalseTrue");
  EXPECT_EQ(render("{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ false is false }}{{ 1 is true }}"),
            "TrueFalseTrueTrueFalse");
  EXPECT_EQ(render("{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is equalto 'a' }}{{ 2 is eq 3 }}"
                   "{{ 2 is in [1,2] }}{{ x is not defined }}"),
            "TrueFalseTrueTrueFalseTrueTrue");
  EXPECT_EQ(render("{{ 'abc' is lower }}{{ 'aBc' is upper }}{{ 1 is integer }}{{ 1.0 is float }}"), "TrueFalseTrueTrue");
  EXPECT_EQ(render("{{ not x is defined }}"), "True");  // not (x is defined)
}

TEST(Jinja, StringMethods) {
  EXPECT_EQ(render("[{{ '  a b  '.strip() }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'xax'.strip('x') }}]"),
            "[a b|a|a|a]");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}"),
            "['a', 'b', '', 'c']['a', 'b']['a', 'b,c']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}"),
            "TrueTrueTrue");
  EXPECT_EQ(render("{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ \"hello o'neil\".title() }}{{ 'a-a'.replace('a', 'b') }}"),
            "ABabHello O'Neilb-b");
  EXPECT_EQ(render("{{ 'hello'.find('l') }}{{ 'hello'.find('z') }}{{ 'a</think>b'.split('</think>')[-1] }}"), "2-1b");
  EXPECT_EQ(render("{{ '{} and {name}'.format(1, name='x') }}|{{ ', '.join(['a', 'b']) }}"), "1 and x|a, b");
}

TEST(Jinja, DictMethods) {
  nlohmann::json ctx = {{"d", {{"a", 1}, {"b", 2}}}};
  EXPECT_EQ(render("{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 'dflt') }}{{ d.keys()|list }}{{ d.values()|list }}",
                   ctx),
            "1Nonedflt['a', 'b'][1, 2]");
  EXPECT_EQ(render("{{ d.items()|list }}", ctx), "[['a', 1], ['b', 2]]");
  EXPECT_EQ(render("{{ dict(x=1)['x'] }}{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(3, 0, -1)|list }}"),
            "1[0, 1, 2][1, 3, 5][3, 2, 1]");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(render("a\n  {%- if true -%}\n  b\n  {%- endif -%}\n  c"), "abc");
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it goes.
  EXPECT_EQ(render("{% if true %}\nyes\n{% endif %}\nend"), "yes\nend");
  EXPECT_EQ(render("<ul>\n    {% for x in [1,2] %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>"),
            "<ul>\n    <li>1</li>\n    <li>2</li>\n</ul>");
  // Expression tags keep their newline; {%+ and +%} opt out.
  EXPECT_EQ(render("{{ 'a' }}\nb"), "a\nb");
  EXPECT_EQ(render("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
  // One trailing newline of the template is dropped (keep_trailing_newline=False).
  EXPECT_EQ(render("abc\n"), "abc");
  EXPECT_EQ(render("abc\n\n"), "abc\n");
  EXPECT_EQ(render("a\r\nb"), "a\nb");
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("a\n    {# comment #}\nb"), "a\nb");  // comments are lstripped and trimmed like blocks
  EXPECT_EQ(render("{% if true %}  x{% endif %}"), "  x");  // lstrip only applies at the start of a line
  EXPECT_EQ(render("{{ {'a': {'b': 1}}['a']['b'] }}"), "1");  // "}}" inside a dict literal is not the tag end
}

TEST(Jinja, RaiseException) {
  try {
    render("{{ raise_exception('Roles must alternate') }}");
    FAIL() << "expected an exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_STREQ(e.what(), "Roles must alternate");
  }
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("line one\n{% if x %}never closed"),
            "chat template syntax error at line 2, column 23: unexpected end of template, expected '{% endif %}' (a "
            "block is not closed)");
  EXPECT_EQ(error_of("{{ 1 + }}"), "chat template syntax error at line 1, column 8: unexpected '}}' in expression");
  EXPECT_NE(error_of("ab\n  {{ 'unterminated }}").find("line 2, column 6: unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{% frobnicate %}").find("unknown tag 'frobnicate'"), std::string::npos);
  EXPECT_NE(error_of("{% endfor %}").find("unexpected 'endfor'"), std::string::npos);
  EXPECT_NE(error_of("{% for x in y %}{% endif %}").find("expected 'endfor'"), std::string::npos);
  EXPECT_NE(error_of("{{ x").find("unterminated '{{'"), std::string::npos);
  EXPECT_NE(error_of("{# x").find("unterminated comment"), std::string::npos);
  EXPECT_NE(error_of("{{ a $ b }}").find("unexpected character '$'"), std::string::npos);
  EXPECT_NE(error_of("{{ (1 }}").find("syntax error"), std::string::npos);
}

TEST(Jinja, StrftimeNow) {
  RenderOptions options;
  options.now_unix = 1721952000;  // 2024-07-26 00:00:00 UTC
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}", nlohmann::json::object(), options),
            "26 Jul 2024|2024-07-26");
  EXPECT_FALSE(render("{{ strftime_now('%Y') }}").empty());
}

TEST(JinjaLimits, RunawayRecursionFailsCleanly) {
  std::string msg = error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(msg.find("macro calls nested deeper"), std::string::npos) << msg;
  // Mutual recursion through call blocks.
  msg = error_of("{% macro a() %}{% call a() %}x{% endcall %}{% endmacro %}{{ a() }}");
  EXPECT_NE(msg.find("nested deeper"), std::string::npos) << msg;
}

TEST(JinjaLimits, HugeLoopsAndStringsFailCleanly) {
  RenderOptions small;
  small.limits.max_steps = 100000;
  std::string msg = error_of("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                             nlohmann::json::object(), small);
  EXPECT_NE(msg.find("steps"), std::string::npos) << msg;
  msg = error_of("{{ range(100000000000) }}");
  EXPECT_NE(msg.find("element limit"), std::string::npos) << msg;
  msg = error_of("{{ 'x' * 10000000000 }}");
  EXPECT_NE(msg.find("byte limit"), std::string::npos) << msg;
  RenderOptions tiny;
  tiny.limits.max_output = 1000;
  msg = error_of("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 nlohmann::json::object(), tiny);
  EXPECT_NE(msg.find("byte limit"), std::string::npos) << msg;
  msg = error_of("{% for i in range(10000) %}xxxxxxxxxx{% endfor %}", nlohmann::json::object(), tiny);
  EXPECT_NE(msg.find("output exceeds"), std::string::npos) << msg;
}

TEST(JinjaLimits, DeepNestingAndCyclesFailCleanly) {
  std::string deep = std::string(100000, '(') + "1" + std::string(100000, ')');
  EXPECT_NE(error_of("{{ " + deep + " }}").find("nested too deeply"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nested too deeply"), std::string::npos);
  std::string nots = "{{ " + [] { std::string s; for (int i = 0; i < 100000; ++i) s += "not "; return s; }() + "1 }}";
  EXPECT_NE(error_of(nots).find("nested too deeply"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}").find("nested more than"),
            std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").find("nested more than"),
            std::string::npos);
}

TEST(JinjaLimits, GarbageNeverCrashes) {
  // A spread of malformed inputs: each either renders or throws etna::Error.
  const char* inputs[] = {"{{", "{%", "{#", "}}", "{{}}", "{%%}", "{% if %}", "{% for %}", "{% for x in %}",
                          "{% set %}", "{% set x %}", "{% macro %}", "{{ a.( }}", "{{ a[ }}", "{{ a[1:2:3:4] }}",
                          "{{ 'a' is }}", "{{ x | }}", "{{ ,,, }}", "{% endif %}{% if %}", "{{ 1 if }}",
                          "{% call x %}{% endcall %}", "{{ f(**x) }}", "{{ 999999999999999999999 }}", "{{ '\\",
                          "{% raw %}never ends", "{{ [1,2][1:0:0] }}", "{{ caller() }}", "{{ loop.index }}",
                          "{{ 'a'.nosuchmethod() }}", "{{ range(1,2,0) }}", "{{ 5 // 0 }}", "{{ 5 % 0 }}",
                          "{{ {1: 2} }}", "{{ [] < {} }}", "{{ -9223372036854775807 - 2 }}", "{{ 2 ** 64 }}",
                          "{{ [1,2,3][::-9223372036854775807 - 1] }}", "{{ 'abc'[::9223372036854775807] }}",
                          "{{ range(0, 9223372036854775807, 4611686018427387904) }}", "{{ '{99999999999999999999}'.format(1) }}",
                          "{{ '%999999d' % 1 }}", "{{ strftime_now('%Q%') }}"};
  for (const char* in : inputs) {
    try {
      Template(in).render(Value::object());
    } catch (const Error&) {
    }
  }
  SUCCEED();
}

// Random soups of template fragments: every one renders or throws etna::Error, nothing else.
TEST(JinjaLimits, RandomFragmentSoup) {
  const char* fragments[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "x", "ns", "ns.a", "loop",
                             "loop.index", "if", "elif", "else", "endif", "for", "in", "endfor", "set", "=", "macro",
                             "endmacro", "m(", ")", "(", "[", "]", "{", "}", ",", ":", "|", "trim", "join", "tojson",
                             "map(attribute='a')", "is", "not", "defined", "none", "and", "or", "1", "0", "-1",
                             "'s'", "\"t\"", "[1,2]", "{'a': 1}", "range(3)", "namespace(a=1)", "~", "*", "/", "//",
                             "%", "**", "==", "<", "[::-1]", "[1:]", ".items()", ".split(',')", ".strip()", "raise_exception('r')",
                             "caller()", "call", "endcall", "filter", "endfilter", "upper", "break", "continue"};
  std::mt19937 rng(1234);
  RenderOptions options;
  options.limits.max_steps = 20000;
  options.limits.max_output = 1 << 16;
  int rendered = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string src;
    int n = 1 + static_cast<int>(rng() % 24);
    for (int k = 0; k < n; ++k) src += fragments[rng() % (sizeof fragments / sizeof *fragments)];
    try {
      Template(src).render(from_json(nlohmann::json{{"x", {1, 2}}, {"ns", {{"a", "b"}}}}), options);
      ++rendered;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(rendered, 0);
}

}  // namespace
}  // namespace etna::tokenizer::jinja
