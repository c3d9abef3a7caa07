// Chat templates (lib/chat): every case of the shared fixture (six real templates, each over twelve
// conversations, rendered by Jinja2 with transformers' settings), hand-written cases of the
// semantics the fixture does not reach, errors and runaway templates, and finding a model's
// template. The expected strings of the hand-written cases are what Jinja2 3.1 prints under
// transformers' settings (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "test_support.h"

using anvil::chat::ChatTemplate;
using anvil::chat::RenderOptions;
using anvil::chat::TemplateRaised;
using ojson = nlohmann::ordered_json;

namespace {

struct Case {
  const char* source;
  const char* expected;
  const char* variables = nullptr;  // JSON: "messages" and any other top-level variables
};

std::string render(const std::string& source, ojson variables = ojson::object(), RenderOptions options = {}) {
  ojson messages = ojson::array();
  if (variables.contains("messages")) {
    messages = variables["messages"];
    variables.erase("messages");
  }
  if (options.bos_token.empty()) options.bos_token = "<s>";
  if (options.eos_token.empty()) options.eos_token = "</s>";
  for (auto it = variables.begin(); it != variables.end(); ++it) options.extra[it.key()] = it.value();
  return ChatTemplate::parse(source, "t.jinja").render(messages, options);
}

void check(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.source);
    try {
      EXPECT_EQ(render(c.source, c.variables ? ojson::parse(c.variables) : ojson::object()), c.expected);
    } catch (const anvil::Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

// The problem() of the anvil::Error that rendering `source` throws ("raised: ..." for
// TemplateRaised); where() must be the template's name.
std::string error_of(const std::string& source, ojson variables = ojson::object(), RenderOptions options = {}) {
  try {
    render(source, std::move(variables), std::move(options));
  } catch (const TemplateRaised& e) {
    EXPECT_EQ(e.where(), "t.jinja");
    return "raised: " + e.problem();
  } catch (const anvil::Error& e) {
    EXPECT_EQ(e.where(), "t.jinja");
    return e.problem();
  }
  ADD_FAILURE() << "no error from " << source;
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The fixture: byte-identical renders, and raise_exception's message exactly.

TEST(ChatTemplateFixture, EveryCaseMatchesJinja2) {
  const auto path = anvil::test::shared_dir() / "refs" / "chat_template_cases.json";
  const ojson fixture = ojson::parse(anvil::test::read_bytes(path));
  int rendered = 0, raised = 0;
  for (const auto& t : fixture.at("templates")) {
    const std::string name = t.at("name").get<std::string>();
    const ChatTemplate tmpl = ChatTemplate::parse(t.at("template").get<std::string>(), name);
    RenderOptions options;
    options.bos_token = t.at("bos_token").get<std::string>();
    options.eos_token = t.at("eos_token").get<std::string>();
    int index = 0;
    for (const auto& c : t.at("cases")) {
      SCOPED_TRACE(name + " case " + std::to_string(index++));
      options.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
      if (c.contains("error")) {
        try {
          tmpl.render(c.at("messages"), options);
          ADD_FAILURE() << "rendered instead of raising";
        } catch (const TemplateRaised& e) {
          EXPECT_EQ(e.problem(), c.at("error").get<std::string>());
          EXPECT_EQ(e.where(), name);
          ++raised;
        }
      } else {
        EXPECT_EQ(tmpl.render(c.at("messages"), options), c.at("rendered").get<std::string>());
        ++rendered;
      }
    }
  }
  EXPECT_EQ(rendered, 56);
  EXPECT_EQ(raised, 16);
}

// ---------------------------------------------------------------------------------------------
// Semantics, against what Jinja2 prints.

TEST(ChatTemplate, WhitespaceControlTrimAndLstripBlocks) {
  check({
      {R"J(a
  {% if true %}
    x
  {% endif %}
  {{ 'v' }}
  {# c #}
b)J",
       R"J(a
    x
  v
b)J"},
      {R"J(a {% if true %}x{% endif %} b)J", R"J(a x b)J"},
      {R"J(  {%+ if true %}X{% endif +%}
Y)J",
       R"J(  X
Y)J"},
      {R"J(a  {%- if true -%}  b  {%- endif %}  
c)J",
       R"J(ab  
c)J"},
      {R"J({{- '  x  ' -}}   
  {{ 'y' }})J",
       R"J(  x  y)J"},
      {R"J(x {#- comment -#} y)J", R"J(xy)J"},
      {"\t{%- if true %}\n\tt\n\t{% endif %}\nend", "\tt\nend"},
      {"line1\015\n{% if true %}\015\n  x\015\n{% endif %}\015\nend\015\n",
       R"J(line1
  x
end)J"},
      {R"J(a

)J",
       R"J(a
)J"},
      {R"J({% raw %}{{ not parsed }}{% endraw %})J", R"J({{ not parsed }})J"},
      {R"J(  {% raw %}
 r {{ }}
  {% endraw %}
tail)J",
       R"J(
 r {{ }}
tail)J"},
      {R"J({% for i in [1, 2] %}
  {% for j in 'ab' %}
    {{ i }}{{ j }}
  {% endfor %}
{% endfor %})J",
       R"J(    1a
    1b
    2a
    2b
)J"},
  });
}

TEST(ChatTemplate, ForLoops) {
  check({
      {R"J({% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %})J",
       R"J(1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;)J"},
      {R"J({% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ x }}|{{ loop.nextitem }}]{% endfor %})J",
       R"J([|1|2][1|2|3][2|3|])J"},
      {R"J({% for x in [1, 2, 3, 4] if x % 2 == 0 %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% else %}none{% endfor %})J",
       R"J(1/2:2 2/2:4 )J"},
      {R"J({% for x in [] %}never{% else %}empty{% endfor %})J", R"J(empty)J"},
      {R"J({% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %})J",
       R"J(0134)J"},
      {R"J({% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }},{% endfor %})J", R"J(b=1,a=2,)J"},
      {R"J({% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ b }}{{ c }}{% endfor %})J", R"J(123)J"},
      {R"J({% for c in 'héllo' %}{{ c }}.{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for u in undefined_thing %}u{% endfor %})J",
       R"J(h.é.l.l.o.|xy|)J"},
      {R"J({% for i in [1, 2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}[{{ x }}])J",
       R"J([][])J"},
      {R"J({% set x = 5 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}[{{ x }}])J", R"J(5152[5])J"},
      {R"J({% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for x in [1, 1, 2] %}{{ loop.changed(x) }}{% endfor %})J",
       R"J(aba|TrueFalseTrue)J"},
      {R"J({% for x in [1, 2] %}{% for y in [1, 2, 3] %}{% if y == 2 %}{% break %}{% endif %}{{ x }}{{ y }} {{ loop.length }}|{% endfor %}{% endfor %})J",
       R"J(11 3|21 3|)J"},
      {R"J({% for m in messages %}{{ loop.index }}:{{ m.role }}={{ m['content'] }};{% endfor %})J",
       R"J(1:user=hi;2:assistant=yo;)J",
       R"J({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})J"},
  });
}

TEST(ChatTemplate, SetNamespaceWithAndFilterBlocks) {
  check({
      {R"J({% set a, b = [1, 2] %}{{ b }}{{ a }}{% set c, d = 'xy' %}{{ d }}{{ c }})J", R"J(21yx)J"},
      {R"J({% set x %}  hi {{ 1 + 1 }}
{% endset %}[{{ x }}])J",
       R"J([  hi 2
])J"},
      {R"J({% set y | upper | replace('B', '-') %}abc{% endset %}{{ y }})J", R"J(A-C)J"},
      {R"J({% filter upper %}shout {{ 'this' }}{% endfilter %})J", R"J(SHOUT THIS)J"},
      {R"J({% if true %}{% set inner = 1 %}{% endif %}{{ inner }})J", R"J(1)J"},
      {R"J({% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}])J", R"J(3[])J"},
      {R"J({% set ns = namespace(found=false, count=0) %}{% for x in [1, 2, 3] %}{% if x > 1 %}{% set ns.found = true %}{% set ns.count = ns.count + x %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }})J",
       R"J(True 5)J"},
      {R"J({% set ns = namespace({'a': 1}, b=2) %}{% set ns.c = [ns.a, ns.b] %}{{ ns.c }} {{ ns }})J",
       R"J([1, 2] <Namespace {'a': 1, 'b': 2, 'c': [1, 2]}>)J"},
      {R"J({% set ns = namespace(items=[]) %}{% for x in 'abc' %}{% set ns.items = ns.items + [x] %}{% endfor %}{{ ns.items|join('-') }})J",
       R"J(a-b-c)J"},
      {R"J({% generation %}kept{% endgeneration %})J", R"J(kept)J"},
  });
}

TEST(ChatTemplate, Macros) {
  check({
      {R"J({% macro m(a, b='B', c=none) %}[{{ a }}|{{ b }}|{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 2, 3) }}{{ m(1, c=5) }}{{ m }})J",
       R"J([1|B|None][1|2|3][1|B|5]<Macro 'm'>)J"},
      {R"J({% macro m(a, b=a * 2) %}{{ a }},{{ b }}{% endmacro %}{{ m(3) }}|{{ m(b=1, a=2) }})J", R"J(3,6|2,1)J"},
      {R"J({% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(10) }})J",
       R"J(3628800)J"},
      {R"J({% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}B{% endmacro %}{{ a() }})J", R"J(B)J"},
      {R"J({% set x = 1 %}{% macro show() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ show() }})J", R"J(2)J"},
      {R"J({% macro m() %}{% set x = 5 %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}{{ x }})J", R"J(52)J"},
      {R"J({% macro m(x) %}{{ x }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }})J", R"J(1(2,){'k': 3})J"},
      {R"J({% macro render(v) %}{% if v is mapping %}{% for k, x in v.items() %}{{ k }}:({{ render(x) }}){% endfor %}{% else %}{{ v }}{% endif %}{% endmacro %}{{ render({'a': {'b': 1, 'c': {'d': 2}}}) }})J",
       R"J(a:(b:(1)c:(d:(2))))J"},
  });
}

TEST(ChatTemplate, ExpressionsPrintLikePython) {
  check({
      {R"J({{ 7 + 2 }} {{ 7 - 2.5 }} {{ 7 * 2 }} {{ 7 / 2 }} {{ 8 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }})J",
       R"J(9 4.5 14 3.5 4.0 3 -4 1 2 -2 1024 0.5 64 4)J"},
      {R"J({{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1 / 3 }} {{ -0.0 }} {{ 1e308 * 10 }} {{ 2.0 ** 0.5 }})J",
       R"J(3.0 0.5 0.30000000000000004 1e+16 1000000000000000.0 0.0001 1e-05 0.3333333333333333 -0.0 inf 1.4142135623730951)J"},
      {R"J({{ 'ab' ~ 1 ~ none ~ true ~ undefined_thing }} {{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ 2 * 'x' }} {{ [1] * 3 }} {{ [1] + [2] }} {{ (1,) + (2,) }})J",
       R"J(ab1NoneTrue abcd ababab xx [1, 1, 1] [1, 2] (1, 2))J"},
      {R"J({{ none }} {{ true }} {{ False }} {{ [1, 'a', none, true, 1.5, {'k': "it's"}, (1,), (1, 2), ()] }} {{ {'a': [1, {'b': none}]} }})J",
       R"J(None True False [1, 'a', None, True, 1.5, {'k': "it's"}, (1,), (1, 2), ()] {'a': [1, {'b': None}]})J"},
      {R"J({{ "it's" }}|{{ ['it\'s', 'say "hi"', 'both \' "'] }}|{{ ['a\nb\t\x01\x7f\xa0é😀\u200b\\'] }})J",
       R"J(it's|["it's", 'say "hi"', 'both \' "']|['a\nb\t\x01\x7f\xa0é😀\u200b\\'])J"},
      {R"J({{ 'a\tb\\n\x41\u00e9\U0001F600\'\"' }}|{{ 'adjacent' ' literals' }}|{{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1.5e3 }})J",
       "a\tb\\nAé😀'\"|adjacent literals|1000 31 15 5 1500.0"},
      {R"J({{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 != 2 }} {{ [1] == [1] }} {{ (1,) == [1] }} {{ {'a': 1} == {'a': 1.0} }})J",
       R"J(True True True True True False True True False True)J"},
      {R"J({{ 2 in [1, 2] }} {{ 'bc' in 'abc' }} {{ 'a' in {'a': 1} }} {{ 'z' not in 'abc' }} {{ (1, 2) in [(1, 2)] }} {{ 1 in [true] }})J",
       R"J(True True True True True True)J"},
      {R"J({{ not 1 == 2 }} {{ 1 or 2 and 0 }} {{ none or 'x' }} {{ 0 and 1 }} {{ '' or [] }} {{ not none }})J",
       R"J(True 1 x 0 [] True)J"},
      {R"J({{ 'yes' if 1 > 2 else 'no' }} {{ 1 if false else 2 if false else 3 }} [{{ 'x' if false }}] {{ ('x' if false) is defined }})J",
       R"J(no 3 [] False)J"},
      {R"J({{ messages[0].role == messages[0]['role'] }} {{ messages[0].content }} {{ messages[-1]['role'] }} [{{ messages[5] }}] [{{ messages[0].missing }}])J",
       R"J(True hi assistant [] [])J",
       R"J({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})J"},
      {R"J({{ 'abcdef'[1:4] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[-2:] }} {{ [1, 2, 3, 4, 5][1:-1] }} {{ [1, 2, 3, 4, 5][::-2] }} {{ [1, 2, 3][10:] }} {{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'abc'[-1] }})J",
       R"J(bcd fedcba ace ef [2, 3, 4] [5, 3, 1] [] é él c)J"},
      {R"J({{ {'a': 1}.a }} {{ {'a': 1}['a'] }} {{ {1: 'x'}[1.0] }} {{ [1, 2][true] }} {{ (1, 2).0 }} [{{ none.foo }}] [{{ [1][5] }}])J",
       R"J(1 1 x 2 1 [] [])J"},
  });
}

TEST(ChatTemplate, StringMethods) {
  check({
      {R"J([{{ '  a b  '.strip() }}] [{{ 'xxhixx'.strip('x') }}] [{{ '\n\nhi\n'.lstrip('\n') }}] [{{ ' hi '.rstrip() }}] [{{ 'a\u3000'.strip()|length }}])J",
       R"J([a b] [hi] [hi
] [ hi] [1])J"},
      {R"J({{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a b  c '.split(maxsplit=1) }} {{ '  a b  c '.rsplit(none, 1) }} {{ 'l1\nl2\r\nl3'.splitlines() }})J",
       R"J(['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b,c'] ['a,b', 'c'] ['a', 'b  c '] ['  a b', 'c'] ['l1', 'l2', 'l3'])J"},
      {R"J({{ 'x<think>r</think>\n\nanswer'.split('</think>')[-1].lstrip('\n') }}|{{ 'x<think>\nr\n</think>a'.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }})J",
       R"J(answer|r)J"},
      {R"J({{ 'Hello'.startswith('He') }} {{ 'Hello'.startswith(('x', 'H')) }} {{ 'Hello'.endswith('lo') }} {{ 'Hello'.startswith('el', 1) }})J",
       R"J(True True True True)J"},
      {R"J({{ 'hello WORLD'.upper() }} {{ 'Hello'.lower() }} {{ "they're here".title() }} {{ 'hello WORLD'.capitalize() }} {{ 'AbC'.swapcase() }})J",
       R"J(HELLO WORLD hello They'Re Here Hello world aBc)J"},
      {R"J({{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '+', 1) }} {{ 'abc'.replace('', '.') }} {{ 'abcabc'.find('c') }} {{ 'abcabc'.rfind('c') }} {{ 'héllo'.find('l') }} {{ 'abc'.find('z') }} {{ 'abcabc'.count('b') }})J",
       R"J(a+b+c a+b-c .a.b.c. 2 5 2 -1 2)J"},
      {R"J({{ ', '.join(['a', 'b']) }} {{ 'x'.join('abc') }} {{ '{} and {}'.format(1, 'two') }} {{ '{name}: {0}'.format(5, name='n') }} {{ '{:>5}|{:<4}|{:^6}|{:05d}|{:.2f}|{!r}'.format('a', 'b', 'c', 42, 3.14159, 'q') }})J",
       R"J(a, b axbxc 1 and two n: 5     a|b   |  c   |00042|3.14|'q')J"},
      {R"J({{ 'a=b=c'.partition('=') }} {{ 'abc'.removeprefix('a') }} {{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ '  '.isspace() }} {{ 'ab'.center(6, '*') }} {{ '-5'.zfill(4) }})J",
       R"J(('a', '=', 'b=c') bc True True True **ab** -005)J"},
      {R"J({{ '{:,}'.format(1234567) }} {{ '{:,.2f}'.format(1234.5) }} {{ '{:_}'.format(1000000) }} {{ '{:>8,}'.format(-1234) }} {{ '{:x}|{:#o}|{:e}|{:.1%}'.format(255, 8, 1234.5, 0.25) }})J",
       R"J(1,234,567 1,234.50 1_000_000   -1,234 ff|0o10|1.234500e+03|25.0%)J"},
  });
}

TEST(ChatTemplate, Filters) {
  check({
      {R"J([{{ '  x  '|trim }}] [{{ 'xxax'|trim('x') }}] {{ 'abc'|upper }} {{ 'ABC'|lower }} {{ "they're bill's-x(y"|title }} {{ 'hELLO'|capitalize }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|length }} {{ 'héllo'|count }})J",
       R"J([x] [a] ABC abc They're Bill's-X(Y Hello bba 3 5)J"},
      {R"J({{ [1, 2, 3]|join(', ') }} {{ [none, 1]|join }} {{ [{'n': 'a'}, {'n': 'b'}]|join('/', attribute='n') }} {{ [1, 2]|first }} {{ 'hey'|last }} [{{ []|first }}] {{ {'a': 1}|list }} {{ 'ab'|list }})J",
       R"J(1, 2, 3 None1 a/b 1 y [] ['a'] ['a', 'b'])J"},
      {R"J({{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|d('d') }} {{ 0|d(5, boolean=true) }} [{{ x|default }}])J",
       R"J(d  d None 5 [])J"},
      {R"J({{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|sort }} {{ ['b', 'A', 'a']|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} {{ [{'n': 2}, {'n': 1}]|sort(attribute='n') }} {{ ['b', 'A', 'a', 'B']|unique|list }} {{ [1, 2]|reverse|list }} {{ 'abc'|reverse }})J",
       R"J([1, 2, 3] ['A', 'a', 'b'] ['A', 'a', 'b'] [3, 2, 1] [{'n': 1}, {'n': 2}] ['b', 'A'] [2, 1] cba)J"},
      {R"J({{ [{'a': 1}, {'a': 2}]|map(attribute='a')|list }} {{ ['a', 'b']|map('upper')|list }} {{ [{'a': {'b': 5}}]|map(attribute='a.b')|list }} {{ [{'a': 1}, {}]|map(attribute='a', default='z')|list }} {{ none|map('upper')|list }})J",
       R"J([1, 2] ['A', 'B'] [5] [1, 'z'] [])J"},
      {R"J({{ [1, none, 0, 'x']|select|list }} {{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }} {{ [1, 2, 3]|select('divisibleby', 3)|list }} {{ ['a', 'b']|reject('equalto', 'a')|list }})J",
       R"J([1, 'x'] [1, 3] [2] [3] ['b'])J"},
      {R"J({{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ messages|rejectattr('role', 'eq', 'user')|list|length }} {{ messages|selectattr('tool_calls', 'defined')|list|length }} {{ messages|selectattr('tool_calls')|list|length }})J",
       R"J(['a', 'c'] 1 1 0)J",
       R"J({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": []}, {"role": "user", "content": "c"}]})J"},
      {R"J({% if []|select %}always{% endif %} {{ (['x']|select)|list }} {% set g = [1, 2, 3]|select %}{{ g|first }}{{ g|list }}{{ g|list }})J",
       R"J(always ['x'] 1[2, 3][])J"},
      {R"J({{ 3.7|int }} {{ '42'|int }} {{ ' 4.9 '|int }} {{ 'x'|int(7) }} {{ '0x1A'|int(base=16) }} {{ '3.5'|float }} {{ 'x'|float }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ 2.675|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ -3|abs }} {{ 15|round(-1) }})J",
       R"J(3 42 4 7 26 3.5 0.0 2.0 3.14 2.67 3.0 3 20)J"},
      {R"J({{ {'a': 1, 'b': 2}|items|list }} {{ {'b': 1, 'A': 2}|dictsort }} {{ [1, 2, 3]|sum }} {{ [{'v': 1}, {'v': 2}]|sum(attribute='v', start=10) }} {{ ['b', 'A', 'c']|max }} {{ [3, 1]|min }} {{ 'one two  three'|wordcount }} {{ [1, 2, 3, 4, 5]|batch(2)|list }})J",
       R"J([('a', 1), ('b', 2)] [('A', 2), ('b', 1)] 6 13 c 1 3 [[1, 2], [3, 4], [5]])J"},
      {R"J({{ 'line1\nline2\n'|indent(2) }}|{{ 'l1\n\nl2'|indent(4, first=true) }}|{{ 'l1\n\nl2'|indent('> ', blank=true) }}|{{ 'abc'|center(9) }}|{{ 1|string ~ [1]|string }}|{{ '%s-%03d'|format('a', 7) }}|{{ '%(k)s' % {'k': 'v'} }})J",
       R"J(line1
  line2
|    l1

    l2|l1
> 
> l2|   abc   |1[1]|a-007|v)J"},
      {R"J({{ '<a href="x">'|e }} {{ '<b>'|safe }} {{ ('<b>'|safe) + '<i>' }} {{ ('<b>'|safe) ~ '<i>' }} {{ ('%s'|safe) % '<x>' }} {{ '<a>'|e|e }} {{ ('x'|safe) is escaped }} {{ 'x' is escaped }})J",
       R"J(&lt;a href=&#34;x&#34;&gt; <b> <b>&lt;i&gt; <b><i> &lt;x&gt; &lt;a&gt; True False)J"},
      {R"J({{ 'hello world foo'|truncate(9) }}|{{ 'hello world foo'|truncate(9, true) }}|{{ 'hello world foo'|truncate(11, false, '..', 0) }}|{{ 'short'|truncate(3) }})J",
       R"J(hello...|hello ...|hello..|short)J"},
      {R"J({{ {'a': 1}.items() }} {{ {'a': 1, 'b': 2}.keys()|list }} {{ {'a': 1}.values()|first }} [{{ {'a': 1}.keys()[0] }}] {{ {'a': 1, 'b': 2}|reverse|list }})J",
       R"J(dict_items([('a', 1)]) ['a', 'b'] 1 [] ['b', 'a'])J"},
  });
}

TEST(ChatTemplate, TojsonIsJsonDumps) {
  check({
      {R"J({{ {'b': 1, 'a': [1, 2.0, 'é\n"', none, true]}|tojson }})J",
       R"J({"b": 1, "a": [1, 2.0, "é\n\"", null, true]})J"},
      {R"J({{ {'b': {}, 'a': []}|tojson(indent=2) }}
{{ [1, {'x': 2}]|tojson(indent=2) }}
{{ [1]|tojson(indent='--') }})J",
       R"J({
  "b": {},
  "a": []
}
[
  1,
  {
    "x": 2
  }
]
[
--1
])J"},
      {R"J({{ {'a': 1, 'b': [1, 2]}|tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': {'d': 1, 'c': 2}}|tojson(sort_keys=true) }} {{ 'é😀'|tojson(ensure_ascii=true) }} {{ 'é\u2028\x7f\x01\t'|tojson }} {{ [1.0, 1e20, 1e-7, 3, 'x']|tojson }} {{ {1: 2, none: 3, 1.5: 4, true: 5}|tojson }})J",
       "{\"a\":1,\"b\":[1,2]} {\"a\": {\"c\": 2, \"d\": 1}, \"b\": 1} \"\\u00e9\\ud83d\\ude00\" \"é \177\\u0001\\t\" [1.0, 1e+20, 1e-07, 3, \"x\"] {\"1\": 5, \"null\": 3, \"1.5\": 4}"},
      {R"J({% for tool in tools %}{{ tool|tojson }}
{{ tool|tojson(indent=4) }}
{% endfor %})J",
       R"J({"type": "function", "function": {"name": "get_weather", "description": "Weather \"now\"", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather \"now\"",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        }
    }
}
)J",
       R"J({"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather \"now\"", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})J"},
  });
}

TEST(ChatTemplate, Tests) {
  check({
      {R"J({{ 3 is divisibleby 3 }} {{ 10 is divisibleby(3) }} {{ 2 is even }} {{ 3 is odd }} {{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ true is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is mapping }})J",
       R"J(True False True True True True True False False True True False)J"},
      {R"J({{ 'a' is iterable }} {{ 5 is iterable }} {{ 'a' is sequence }} {{ {} is sequence }} {{ none is none }} {{ 0 is none }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ true is boolean }} {{ 1 is boolean }})J",
       R"J(True False True True True False True False True True False)J"},
      {R"J({{ x is defined }} {{ x is undefined }} {{ 'a' is equalto 'a' }} {{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 5 is gt 3 }} {{ 5 is lessthan 3 }} {{ 3 is in [1, 3] }} {{ none is sameas none }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ range is callable }})J",
       R"J(False True True True True True False True True True True True False True True)J"},
      {R"J({{ messages[0].reasoning is defined }} {{ messages[0].reasoning is not defined }} {{ messages[0].content is not none }} {{ messages[0].content is string }} {{ enable_thinking is defined and enable_thinking is false }})J",
       R"J(False True True True True)J",
       R"J({"messages": [{"role": "assistant", "content": "x"}], "enable_thinking": false})J"},
  });
}

TEST(ChatTemplate, UndefinedPrintsEmpty) {
  check({
      {R"J([{{ x }}] [{{ x|length }}] [{{ x|list }}] [{{ x|upper }}] [{{ x|trim }}] [{{ x|join }}] [{{ x ~ 'a' }}] {{ x == none }} {{ x != 1 }} {{ not x }} {{ x is none }})J",
       R"J([] [0] [[]] [] [] [] [a] False True True False)J"},
      {R"J({% if x %}t{% else %}f{% endif %}{% for i in x %}never{% endfor %}[{{ {'a': 1}.b }}][{{ loop }}]{{ 'a' in x }})J",
       R"J(f[][]False)J"},
  });
}

// Qwen3's template (from the shared tokenizer files) with tools, a tool call, a tool response, a
// reasoning_content and a <think> block to split off, and enable_thinking=false.
TEST(ChatTemplate, Qwen3WithToolsAndReasoning) {
  const ojson config =
      ojson::parse(anvil::test::read_bytes(anvil::test::shared_dir() / "tokenizers/qwen3/tokenizer_config.json"));
  const ojson messages = ojson::parse(
      R"J([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "reasoning_content": "Need the tool.", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "{\"temp_c\": 21}"}, {"role": "assistant", "content": "<think>\nIt is mild.\n</think>\n\nIt is 21 °C."}, {"role": "user", "content": "Thanks"}])J");
  RenderOptions options;
  options.add_generation_prompt = true;
  options.eos_token = "<|im_end|>";
  options.extra["tools"] = ojson::parse(
      R"J([{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])J");
  options.extra["enable_thinking"] = false;
  const ChatTemplate tmpl = ChatTemplate::parse(config.at("chat_template").get<std::string>(), "qwen3");
  EXPECT_EQ(tmpl.render(messages, options), R"J(<|im_start|>system
Be brief.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
Weather in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temp_c": 21}
</tool_response><|im_end|>
<|im_start|>assistant
It is 21 °C.<|im_end|>
<|im_start|>user
Thanks<|im_end|>
<|im_start|>assistant
<think>

</think>

)J");
}

// Variables as transformers passes them: tools and documents are None unless given; extra
// variables override; tojson lists keys in the order an ordered_json holds them (a plain
// nlohmann::json has sorted them already).
TEST(ChatTemplate, TopLevelVariables) {
  EXPECT_EQ(
      render("{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} {{ bos_token }}{{ eos_token }}"),
      "True True False <s></s>");
  RenderOptions options;
  options.add_generation_prompt = true;
  options.extra = nlohmann::json{{"bos_token", "[BOS]"}, {"date_string", "26 Jul 2024"}};  // a plain json converts
  EXPECT_EQ(render("{{ add_generation_prompt }} {{ bos_token }} {{ date_string }}", ojson::object(), options),
            "True [BOS] 26 Jul 2024");

  const std::string source = "{{ messages[0]|tojson }}";
  const ojson ordered = ojson::parse(R"([{"role": "user", "content": "x", "b": 1, "a": 2}])");
  EXPECT_EQ(ChatTemplate::parse(source, "t").render(ordered, {}),
            R"({"role": "user", "content": "x", "b": 1, "a": 2})");
  const nlohmann::json sorted = nlohmann::json::parse(ordered.dump());
  EXPECT_EQ(ChatTemplate::parse(source, "t").render(sorted, {}), R"({"a": 2, "b": 1, "content": "x", "role": "user"})");
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(ChatTemplateErrors, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_EQ(error_of("a\n  {% if x %}b"),
            "line 2, column 3: unclosed 'if' block: expected 'elif', 'else' or 'endif' before the end of the template");
  EXPECT_EQ(error_of("{{ 1 + }}"), "line 1, column 8: unexpected '}}', expected an expression");
  EXPECT_EQ(error_of("x\n\n {{ 'abc }}"), "line 3, column 5: unterminated string literal");
  EXPECT_EQ(error_of("{% frobnicate %}"), "line 1, column 4: unknown tag 'frobnicate'");
  EXPECT_EQ(error_of("{% for x in y %}{% if x %}{% endfor %}"),
            "line 1, column 30: unexpected 'endfor': the innermost open block is 'if' (line 1, column 17), which needs "
            "'elif', 'else' or 'endif'");
  EXPECT_EQ(error_of("{{ (1 }}"), "line 1, column 7: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{# never closed"), "line 1, column 1: missing end of comment tag");
  EXPECT_EQ(error_of("{% break %}"), "line 1, column 4: 'break' outside a for loop");
  EXPECT_EQ(error_of("{% include 'x.jinja' %}"), "line 1, column 4: the 'include' tag is not supported");
  EXPECT_EQ(error_of("{% macro m(a, a) %}{% endmacro %}"), "line 1, column 15: duplicate argument 'a' in macro 'm'");
  EXPECT_EQ(error_of("{{ é }}\n{{ 1 +* 2 }}"), "line 2, column 7: unexpected '*', expected an expression");
  // A syntax error is found when parsing, before any rendering.
  try {
    ChatTemplate::parse("ok\n{% if %}", "model/chat_template.jinja");
    ADD_FAILURE() << "parsed";
  } catch (const anvil::Error& e) {
    EXPECT_EQ(e.where(), "model/chat_template.jinja");
    EXPECT_EQ(e.problem(), "line 2, column 7: unexpected '%}', expected an expression");
  }
}

TEST(ChatTemplateErrors, UnknownFiltersTestsFunctionsAndMethodsAreNamed) {
  EXPECT_EQ(error_of("{% for x in [] %}{{ x|frobnicate }}{% endfor %}"),
            "line 1, column 23: no filter named 'frobnicate'");
  EXPECT_EQ(error_of("{{ x is frobnicated }}"), "line 1, column 9: no test named 'frobnicated'");
  // Under an `if`, jinja2 waits until the filter is actually used.
  EXPECT_EQ(render("{% if false %}{{ x|frobnicate }}{% endif %}ok"), "ok");
  EXPECT_EQ(error_of("{% if true %}{{ x|frobnicate }}{% endif %}"), "line 1, column 19: no filter named 'frobnicate'");
  EXPECT_EQ(error_of("{{ 'x'|wordwrap }}"), "line 1, column 8: the 'wordwrap' filter is not supported");
  EXPECT_EQ(error_of("{{ frobnicate(1) }}"), "line 1, column 14: 'frobnicate' is undefined");
  EXPECT_EQ(error_of("{{ 'abc'.frobnicate() }}"), "line 1, column 20: 'str object' has no attribute 'frobnicate'");
  EXPECT_EQ(error_of("{{ messages[0].content.frobnicate() }}", ojson::parse(R"({"messages": [{"content": "x"}]})")),
            "line 1, column 34: 'str object' has no attribute 'frobnicate'");
  EXPECT_EQ(error_of("{{ cycler(1, 2) }}"), "line 1, column 10: the 'cycler' function is not supported");
}

TEST(ChatTemplateErrors, RuntimeErrorsAreAnvilErrorsWithPositions) {
  EXPECT_EQ(error_of("{{ x.y }}"), "line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ messages[0].missing.deeper }}", ojson::parse(R"({"messages": [{"role": "user"}]})")),
            "line 1, column 23: 'dict object' has no attribute 'missing'");
  EXPECT_EQ(error_of("\n{{ 'a' + 1 }}"), "line 2, column 8: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{{ 1 < 'a' }}"), "line 1, column 4: '<' not supported between instances of 'int' and 'str'");
  EXPECT_EQ(error_of("{{ 5 // 0 }}"), "line 1, column 6: integer division or modulo by zero");
  EXPECT_EQ(error_of("{% for x in 5 %}{% endfor %}"), "line 1, column 1: 'int' object is not iterable");
  EXPECT_EQ(error_of("{% set a, b = [1, 2, 3] %}"), "line 1, column 1: too many values to unpack (expected 2)");
  EXPECT_EQ(error_of("{{ x|tojson }}"), "line 1, column 6: Object of type Undefined is not JSON serializable");
  EXPECT_EQ(error_of("{{ ([1]|select)|length }}"), "line 1, column 17: object of type 'generator' has no len()");
  EXPECT_EQ(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
            "line 1, column 35: macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(error_of("{% set x = 1 %}{% set x.a = 2 %}"),
            "line 1, column 16: cannot assign attribute on non-namespace object");
  EXPECT_EQ(error_of("{{ 2 ** 64 }}"), "line 1, column 6: integer overflow (template integers are 64-bit)");
  // transformers' ImmutableSandboxedEnvironment refuses to mutate lists and dicts.
  EXPECT_EQ(error_of("{% set l = [] %}{% set _ = l.append(1) %}"),
            "line 1, column 36: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(render("[{{ {}.update }}]"), "[]");
}

TEST(ChatTemplateErrors, RaiseExceptionIsTemplateRaised) {
  EXPECT_EQ(error_of("a{{ raise_exception('Only user and assistant roles are supported!') }}b"),
            "raised: Only user and assistant roles are supported!");
  EXPECT_EQ(error_of("{% if true %}{{ raise_exception('x' ~ 1) }}{% endif %}"), "raised: x1");
}

// Hostile templates end with an error, quickly, instead of hanging or crashing.
TEST(ChatTemplateLimits, RunawayTemplatesEndWithAnError) {
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
            "line 1, column 21: macro calls nest deeper than 100 levels (runaway recursion in 'f'?)");
  EXPECT_EQ(error_of("{% for i in range(100000000) %}x{% endfor %}"),
            "line 1, column 18: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  RenderOptions small;
  small.limits.max_steps = 10000;
  EXPECT_EQ(
      error_of("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", ojson::object(), small),
      "line 1, column 44: the template runs more than 10000 loop iterations and list items (a runaway loop?)");
  EXPECT_EQ(error_of("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
                     ojson::object(), small),
            "line 1, column 76: the template runs more than 10000 loop iterations and list items (a runaway loop?)");
  small.limits.max_output = 1000;
  EXPECT_EQ(error_of("{% for i in range(100) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", ojson::object(), small),
            "line 1, column 26: the output is larger than 1000 bytes");
  EXPECT_EQ(error_of("{{ 'a' * 100000000 }}"), "line 1, column 8: the string would be larger than 67108864 bytes");
  // Work on big strings counts by the byte, however deep it happens (here: counting code points).
  RenderOptions bytes;
  bytes.limits.max_bytes = 100000;
  EXPECT_EQ(
      error_of("{% set s = 'x' * 1000 %}{% for i in range(1000) %}{{ s|length }}{% endfor %}", ojson::object(), bytes),
      "line 1, column 56: the template builds or scans more than 100000 bytes of strings");
  EXPECT_EQ(error_of("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
            "line 1, column 47: the value nests too deeply to print");
  EXPECT_EQ(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}"),
            "line 1, column 57: namespaces nest deeper than 256 levels");
  EXPECT_EQ(error_of("{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}"),
            "line 1, column 104: expressions nest too deeply");
  std::string sum = "{{ 1";
  for (int i = 0; i < 10000; ++i) sum += "+1";
  EXPECT_EQ(error_of(sum + " }}"), "line 1, column 403: the expression nests too deeply");
}

// ---------------------------------------------------------------------------------------------
// Finding a model's template

namespace {
void write(const std::filesystem::path& p, const std::string& text) { anvil::test::write_bytes(p, text); }
}  // namespace

TEST(ChatTemplateFind, StandaloneFileWinsOverTokenizerConfig) {
  anvil::test::TempDir dir;
  write(dir / "tokenizer_config.json",
        R"({"chat_template": "from config", "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"})");
  write(dir / "chat_template.jinja", "from file");
  const auto found = anvil::chat::find_chat_template(dir.path());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->source, "from file");
  EXPECT_EQ(found->where, (dir / "chat_template.jinja").string());
  EXPECT_EQ(found->bos_token, "<s>");
  EXPECT_EQ(found->eos_token, "</s>");
}

TEST(ChatTemplateFind, TokenizerConfigStringOrNamedList) {
  anvil::test::TempDir dir;
  const auto config = dir / "tokenizer_config.json";
  write(config, R"({"chat_template": "{{ bos_token }}hi", "bos_token": null})");
  auto found = anvil::chat::find_chat_template(dir.path());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->source, "{{ bos_token }}hi");
  EXPECT_EQ(found->where, config.string() + ": \"chat_template\"");
  EXPECT_EQ(found->bos_token, "");

  write(config, R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  found = anvil::chat::find_chat_template(dir.path());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->source, "D");

  write(config, R"({"eos_token": "</s>"})");
  EXPECT_FALSE(anvil::chat::find_chat_template(dir.path()));
  anvil::test::TempDir empty;
  EXPECT_FALSE(anvil::chat::find_chat_template(empty.path()));
}

TEST(ChatTemplateFind, MalformedTokenizerConfigNamesFileAndKey) {
  anvil::test::TempDir dir;
  const auto config = dir / "tokenizer_config.json";
  auto problem = [&](const std::string& text) {
    write(config, text);
    try {
      anvil::chat::find_chat_template(dir.path());
    } catch (const anvil::Error& e) {
      EXPECT_EQ(e.where(), config.string());
      return e.problem();
    }
    return std::string("no error");
  };
  EXPECT_EQ(problem(R"({"chat_template": 5})"),
            "\"chat_template\" must be a string or a list of {\"name\", \"template\"}, not 5");
  EXPECT_EQ(problem(R"({"chat_template": [{"name": "rag", "template": "R"}]})"),
            "\"chat_template\" has no template named \"default\" (it has: rag)");
  EXPECT_EQ(problem(R"({"chat_template": [{"name": "default"}]})"), "\"chat_template[0].template\" must be a string");
  EXPECT_EQ(problem(R"({"chat_template": "x", "eos_token": 7})"),
            "\"eos_token\" must be a string or an object with \"content\", not 7");
  EXPECT_NE(problem("{not json").find("not valid JSON"), std::string::npos);
}

TEST(ChatTemplateFind, SharedModelsParse) {
  for (const auto& dir : {anvil::test::model_dir("base"), anvil::test::shared_dir() / "tokenizers" / "gemma-3"}) {
    SCOPED_TRACE(dir.string());
    const auto found = anvil::chat::find_chat_template(dir);
    ASSERT_TRUE(found);
    RenderOptions options;
    options.bos_token = found->bos_token;
    options.eos_token = found->eos_token;
    const auto out = ChatTemplate::parse(found->source, found->where)
                         .render(ojson::parse(R"([{"role": "user", "content": "Hello"}])"), options);
    EXPECT_NE(out.find("Hello"), std::string::npos);
  }
}
