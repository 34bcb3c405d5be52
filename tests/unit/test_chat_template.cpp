// ChatTemplate: the Jinja subset chat templates use, rendered as transformers renders them (jinja2
// sandbox, trim_blocks, lstrip_blocks). Expected strings are worked out by hand (and were checked
// once against Python jinja2 3.1 with transformers' settings).

#include <gtest/gtest.h>

#include <fstream>

#include "peft/error.hpp"
#include "peft/text/chat_template.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using peft::JsonValue;
using peft::text::ChatMessage;
using peft::text::ChatTemplate;

namespace {

std::string render(const std::string& src, const std::string& vars_json = "{}") {
  return ChatTemplate(src, "test").render(JsonValue::parse(vars_json));
}

// The message of the ConfigError that rendering (or parsing) `src` throws; "" when none.
std::string error_of(const std::string& src, const std::string& vars_json = "{}") {
  try {
    render(src, vars_json);
  } catch (const peft::ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kConversation = R"({"messages": [
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "Hi"},
  {"role": "assistant", "content": "Hello!"}]})";

}  // namespace

TEST(ChatTemplate, PrintsVariablesAndText) {
  EXPECT_EQ(render("Hello {{ name }}!", R"({"name": "Ann"})"), "Hello Ann!");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }}"), "a1None");
  EXPECT_EQ(render("{{ true }} {{ false }} {{ none }}"), "True False None");
}

TEST(ChatTemplate, UndefinedPrintsNothingIteratesEmptyAndIsNotDefined) {
  EXPECT_EQ(render("[{{ nope }}]{% for x in nope %}x{% endfor %}{{ nope is defined }}{{ nope | length }}"),
            "[]False0");
  EXPECT_EQ(render("{{ nope | default('d') }}{{ '' | default('e', true) }}"), "de");
}

TEST(ChatTemplate, AttributeOfUndefinedRaisesAsJinja2Does) {
  const std::string err = error_of("line one\n{{ nope.x }}");
  EXPECT_NE(err.find("test:2"), std::string::npos) << err;
  EXPECT_NE(err.find("'nope' is undefined"), std::string::npos) << err;
  // None has no attributes: the result is Undefined, not an error.
  EXPECT_EQ(render("[{{ none.x }}]"), "[]");
}

TEST(ChatTemplate, LoopOverMessagesWithLoopVariables) {
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}",
                   kConversation),
            "1s,2u,3a");
  EXPECT_EQ(render("{% for x in 'abc' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.length }}"
                   "{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('+', '-') }}{% endfor %}"),
            "033b+" "123ac-" "213b+");
}

TEST(ChatTemplate, TrimBlocksAndLstripBlocks) {
  // The `{% if %}` lines vanish whole: lstrip_blocks eats the indent, trim_blocks the newline.
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
  // `{{ }}` is not a block: its indentation and newline stay.
  EXPECT_EQ(render("  {{ 1 }}\n{{ 2 }}\n\n"), "  1\n2\n");
  // `+` turns both off for its tag.
  EXPECT_EQ(render("  {%+ if true %}x{% endif +%}\n  y"), "  x\n  y");
}

TEST(ChatTemplate, MinusStripsWhitespaceAroundTags) {
  EXPECT_EQ(render("{%- for m in messages -%}\n  {{- m.content | trim -}}\n{%- endfor %}\n", kConversation),
            "Be brief.HiHello!");
  EXPECT_EQ(render("a  {#- note -#}  b"), "ab");
}

TEST(ChatTemplate, IfElifElse) {
  EXPECT_EQ(render("{% if a %}A{% elif b %}B{% else %}C{% endif %}", R"({"a": 0, "b": ""})"), "C");
  EXPECT_EQ(render("{% if a %}A{% elif b %}B{% else %}C{% endif %}", R"({"a": [], "b": [0]})"), "B");
}

TEST(ChatTemplate, RaiseExceptionIsAConfigErrorWithTheMessageAndLine) {
  const std::string err = error_of("{% if true %}\n{{ raise_exception('Roles must alternate') }}\n{% endif %}");
  EXPECT_NE(err.find("Roles must alternate"), std::string::npos) << err;
  EXPECT_NE(err.find("test:2"), std::string::npos) << err;
}

TEST(ChatTemplate, UnknownFilterIsAConfigErrorNamingFilterAndLine) {
  const std::string err = error_of("x\ny\n{{ 'abc' | wordwrap(2) }}");
  EXPECT_NE(err.find("test:3"), std::string::npos) << err;
  EXPECT_NE(err.find("wordwrap"), std::string::npos) << err;
}

TEST(ChatTemplate, SyntaxErrorIsThrownByTheConstructor) {
  try {
    ChatTemplate("ok\n{% if %}", "my_template");
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("my_template:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ChatTemplate("{% for x in y %}never closed"), peft::ConfigError);
  EXPECT_THROW(ChatTemplate("{% include 'other.jinja' %}"), peft::ConfigError);
}

TEST(ChatTemplate, ApplyChatTemplatePassesMessagesAndGenerationPrompt) {
  ChatTemplate t(
      "{% for m in messages %}<{{ m['role'] }}>{{ m.content }}{{ eos_token }}\n{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}");
  t.set_variable("eos_token", "</s>");
  const std::vector<ChatMessage> conv = {{"user", "Hi"}, {"assistant", "Yo"}};
  EXPECT_EQ(t.apply_chat_template(conv), "<user>Hi</s>\n<assistant>Yo</s>\n");
  EXPECT_EQ(t.apply_chat_template(conv, true), "<user>Hi</s>\n<assistant>Yo</s>\n<assistant>");
}

TEST(ChatTemplate, SetNamespaceAndLoopScoping) {
  // A `set` inside a loop does not leak out of it; a namespace attribute does.
  EXPECT_EQ(render("{% set x = 'outer' %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}"), "outer");
  EXPECT_EQ(render("{% set ns = namespace(found=false, n=0) %}{% for m in messages %}"
                   "{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.n = ns.n + 1 %}{% endif %}"
                   "{% endfor %}{{ ns.found }} {{ ns.n }}",
                   kConversation),
            "True 1");
  // `if` opens no scope.
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set s %}x{{ a }}y{% endset %}[{{ s }}]"), "21[x1y]");
}

TEST(ChatTemplate, ForLoopFilterElseBreakContinue) {
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}"), "1/3 3/3 5/3 ");
  EXPECT_EQ(render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}{% if x > 3 %}{% break %}{% endif %}"
                   "{{ x }}{% endfor %}"),
            "023");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
}

TEST(ChatTemplate, MacrosWithDefaultsAndCallBlocks) {
  EXPECT_EQ(render("{% macro tag(name, body='-') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}"
                   "{{ tag('a') }}{{ tag('b', 'x') }}{{ tag(body='y', name='c') }}"),
            "<a>-</a><b>x</b><c>y</c>");
  EXPECT_EQ(render("{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}in{{ 1 + 1 }}{% endcall %}"), "[in2]");
}

TEST(ChatTemplate, PythonArithmeticAndNumberPrinting) {
  EXPECT_EQ(render("{{ 1 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}"), "0.5 2.0 3 -4 2 1024");
  EXPECT_EQ(render("{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.0e-5 }} {{ 3.0 }} {{ -0.0 }}"), "0.30000000000000004 1e+20 1e-05 3.0 -0.0");
  EXPECT_EQ(render("{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'a' ~ 2 }} {{ 1 < 2 < 3 }} {{ 1 == 1.0 }}"), "abab [1, 2] a2 True True");
  // `~` binds tighter than `+`, filters tighter than both.
  EXPECT_EQ(render("{{ 'x' + 'y' ~ 'z' }} {{ 1 + [1, 2] | length }}"), "xyz 3");
  EXPECT_NE(error_of("{{ 'a' + 1 }}").find("unsupported operand"), std::string::npos);
}

TEST(ChatTemplate, ReprOfContainersAsPythonPrintsThem) {
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5] }} {{ {'k': \"it's\"} }} {{ (1,) }} {{ ('a', 2) }}"),
            "[1, 'a', None, True, 1.5] {'k': \"it's\"} (1,) ('a', 2)");
  EXPECT_EQ(render("{{ ['a\\nb', 'q\\'\"'] }}"), "['a\\nb', 'q\\'\"']");
}

TEST(ChatTemplate, StringLiteralsAndEscapes) {
  EXPECT_EQ(render("{{ \"a\\tb\" }}|{{ 'it\\'s' }}|{{ '\\u00e9' }}|{{ 'a' 'b' }}|{{ 'x\\qy' }}"), "a\tb|it's|\xc3\xa9|ab|x\\qy");
}

TEST(ChatTemplate, SubscriptsSlicesAndAttributes) {
  EXPECT_EQ(render("{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[1:] | length }} {{ messages.0.role }}",
                   kConversation),
            "system Hello! 2 system");
  EXPECT_EQ(render("{{ 'abc'[::-1] }} {{ 'h\xc3\xa9llo'[1:3] }} {{ [1, 2, 3][-2:] }} {{ 'abc'[5] is defined }}"),
            "cba \xc3\xa9l [2, 3] False");
  // A dict's method wins over a key of the same name for `.`, the key wins for `[]`.
  EXPECT_EQ(render("{{ d['items'] }} {{ d.items() | list }}", R"({"d": {"items": 3}})"), "3 [('items', 3)]");
}

TEST(ChatTemplate, StringFilters) {
  EXPECT_EQ(render("[{{ '  x y  ' | trim }}] {{ 'hello wORLD-foo(bar' | title }} {{ 'hELLO' | capitalize }}"),
            "[x y] Hello World-Foo(Bar Hello");
  EXPECT_EQ(render("{{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'aXa' | replace('a', 'b') }} {{ 'abc' | reverse }}"),
            "AB ab bXb cba");
  EXPECT_EQ(render("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{{ 42 | string }} {{ '12' | int + 1 }} {{ 'x' | int }} {{ '1.5' | float }} {{ 'a<b' | safe }}"),
            "42 13 0 1.5 a<b");
}

TEST(ChatTemplate, SequenceFilters) {
  EXPECT_EQ(render("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
                   " {{ messages | rejectattr('role', '==', 'system') | map(attribute='role') | join(',') }}"
                   " {{ messages | map(attribute='role') | first }} {{ messages | last | tojson }}",
                   kConversation),
            "1 user,assistant system {\"role\": \"assistant\", \"content\": \"Hello!\"}");
  EXPECT_EQ(render("{{ [3, 1, 3, 'a', 'A'] | unique | list }} {{ [1, 2] | reverse | list }} {{ {'b': 1} | items | list }}"),
            "[3, 1, 'a'] [2, 1] [('b', 1)]");
  EXPECT_EQ(render("{{ [1, 2, 3] | length }} {{ 'h\xc3\xa9' | length }} {{ {'a': 1} | count }}"), "3 2 1");
}

TEST(ChatTemplate, TojsonKeepsUnicodeAndTakesIndentSeparatorsSortKeys) {
  EXPECT_EQ(render("{{ x | tojson }}", R"({"x": {"b": [1.0, null, true], "a": "\u00e9\n\"<>&"}})"),
            "{\"b\": [1.0, null, true], \"a\": \"\xc3\xa9\\n\\\"<>&\"}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [2]} | tojson(sort_keys=true, separators=(',', ':')) }}"), "{\"a\":[2],\"b\":1}");
  EXPECT_EQ(render("{{ {'a': [1]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
}

TEST(ChatTemplate, Tests) {
  EXPECT_EQ(render("{{ x is none }}{{ x is not none }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is integer }}"
                   "{{ true is boolean }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}",
                   R"({"x": null})"),
            "TrueFalseTrueTrueFalseTrueTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ 2 is even }}{{ 3 is odd }}{{ true is true }}{{ 0 is false }}{{ 'a' is equalto 'a' }}"
                   "{{ 'a' is in 'cat' }}{{ 'a' in 'cat' }}{{ 1 not in [2] }}{{ 'a' in {'a': 1} }}"),
            "TrueTrueTrueFalseTrueTrueTrueTrueTrue");
  EXPECT_NE(error_of("{{ 1 is prime }}").find("unknown test"), std::string::npos);
}

TEST(ChatTemplate, StringAndDictMethods) {
  EXPECT_EQ(render("[{{ '  x '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'a  '.rstrip() }}] {{ 'a,b,,c'.split(',') }} "
                   "{{ ' a  b '.split() }} {{ 'a-b-c'.split('-', 1) }}"),
            "[x|a|a] ['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b-c']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }} {{ 'ab cd'.title() }} {{ 'Ab'.upper() }}"
                   "{{ 'Ab'.lower() }} {{ 'aXa'.replace('a', '') }} {{ '{}-{x}'.format(1, x=2) }}"),
            "TrueTrue Ab Cd ABab X 1-2");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z', 'no') }} {{ d.get('z') }} {{ d.keys() | list }} {{ d.values() | list }}",
                   R"({"d": {"a": 1}})"),
            "1 no None ['a'] [1]");
  // The sandbox forbids modifying values.
  EXPECT_NE(error_of("{{ messages.append(1) }}", kConversation).find("not allowed"), std::string::npos);
}

TEST(ChatTemplate, ConditionalAndBooleanExpressions) {
  EXPECT_EQ(render("{{ 'a' if x else 'b' }}|{{ 'a' if x }}|{{ x or 'dflt' }}|{{ 1 and 2 }}|{{ not x }}", R"({"x": false})"),
            "b||dflt|2|True");
}

TEST(ChatTemplate, CommentsRawAndWhitespaceControl) {
  EXPECT_EQ(render("{# comment #}\n  {# indented #}\nx{#- tight -#}  y\n"), "xy");
  EXPECT_EQ(render("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
  // `-` strips Python's whitespace, Unicode spaces (NBSP, EM SPACE) included.
  EXPECT_EQ(render("a\u00a0 {%- if true -%} \u2003\u00a0b{% endif %}"), "ab");
  // The trailing newline of the template is dropped (keep_trailing_newline=False), CRLF becomes LF.
  EXPECT_EQ(render("a\r\nb {% if true %}\r\nc{% endif %}\r\n"), "a\nb c");
}

TEST(ChatTemplate, ErrorsNameTemplateLineAndConstruct) {
  std::string err = error_of("{% for m in messages %}\n{{ m.content | wordwrap }}\n{% endfor %}", kConversation);
  EXPECT_NE(err.find("test:2"), std::string::npos) << err;
  err = error_of("a\n\n{% block body %}{% endblock %}");
  EXPECT_NE(err.find("test:3"), std::string::npos) << err;
  EXPECT_NE(err.find("block"), std::string::npos) << err;
  err = error_of("{{ 'x' }\n}");
  EXPECT_NE(err.find("test:1"), std::string::npos) << err;
  EXPECT_NE(error_of("{% endif %}").find("unexpected 'endif'"), std::string::npos);
  EXPECT_NE(error_of("{{ messages[0] | tojson(ensure_ascii=true) }}", kConversation).find("ensure_ascii"), std::string::npos);
}

TEST(ChatTemplate, GenerationBlocksRenderTheirBodyAndReportByteSpans) {
  ChatTemplate t("{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}"
                 "{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{{ '\\n' }}{% endfor %}");
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  const std::string out = t.render(JsonValue::parse(kConversation), spans);
  EXPECT_EQ(out, "system: Be brief.\nuser: Hi\nassistant: Hello!\n");
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(out.substr(spans[0].first, spans[0].second - spans[0].first), "Hello!");
}

TEST(ChatTemplate, CopiesRenderIndependently) {
  ChatTemplate a("{{ bos_token }}{{ messages | length }}");
  a.set_variable("bos_token", "<s>");
  ChatTemplate b = a;
  b.set_variable("bos_token", "<b>");
  const std::vector<ChatMessage> conv = {{"user", "x"}};
  EXPECT_EQ(a.apply_chat_template(conv), "<s>1");
  EXPECT_EQ(b.apply_chat_template(conv), "<b>1");
  ChatTemplate c = std::move(b);
  EXPECT_EQ(c.apply_chat_template(conv), "<b>1");
  EXPECT_EQ(c.source(), "{{ bos_token }}{{ messages | length }}");
}

TEST(ChatTemplate, ToolsAndDocumentsAreNoneUnlessGiven) {
  EXPECT_EQ(render("{{ tools is none }} {{ tools is defined }} {{ documents }}"), "True True None");
  EXPECT_EQ(render("{{ tools | length }}", R"({"tools": [{"name": "f"}]})"), "1");
}

// ---- load_chat_template ----

namespace {

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

}  // namespace

TEST(LoadChatTemplate, StringTemplateWithSpecialTokensAsStringsOrAddedTokens) {
  const fs::path dir = peft_test::scratch_dir("chat_template_string");
  write_file(dir / "tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "unk_token": null, "add_bos_token": true,
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{{ eos_token }}{% endfor %}{{ unk_token is defined }}"})");
  auto t = peft::text::load_chat_template(dir);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->apply_chat_template({{"user", "hi"}}), "<s>[hi]</s>False");
}

TEST(LoadChatTemplate, ListFormPicksByName) {
  const fs::path dir = peft_test::scratch_dir("chat_template_list");
  write_file(dir / "tokenizer_config.json", R"({"chat_template": [
    {"name": "default", "template": "D{{ messages | length }}"},
    {"name": "tool_use", "template": "T{{ tools | length }}"}]})");
  EXPECT_EQ(peft::text::load_chat_template(dir)->apply_chat_template({{"user", "a"}}), "D1");
  EXPECT_EQ(peft::text::load_chat_template(dir, "tool_use")->render(JsonValue::parse(R"({"tools": [1, 2]})")), "T2");
  try {
    peft::text::load_chat_template(dir, "rag");
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("default, tool_use"), std::string::npos) << e.what();
  }
}

TEST(LoadChatTemplate, ChatTemplateJinjaFileAndNoTemplate) {
  const fs::path dir = peft_test::scratch_dir("chat_template_jinja");
  write_file(dir / "tokenizer_config.json", R"({"eos_token": "<end>"})");
  EXPECT_FALSE(peft::text::load_chat_template(dir).has_value());
  write_file(dir / "chat_template.jinja", "{% for m in messages %}{{ m.role }}{{ eos_token }}\n{% endfor %}\n");
  auto t = peft::text::load_chat_template(dir);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->apply_chat_template({{"user", "a"}, {"assistant", "b"}}), "user<end>\nassistant<end>\n");
  write_file(dir / "tokenizer_config.json", "{\"chat_template\": ");
  EXPECT_THROW(peft::text::load_chat_template(dir), peft::SerializationError);
}

// ---- real templates against Python jinja2's renders (tests/data/chat_templates/cases.json) ----

TEST(ChatTemplateReference, ShippedTemplatesRenderAsPythonJinja2) {
  const fs::path data = fs::path(PEFT_TEST_DATA_DIR) / "chat_templates";
  const JsonValue cases = peft_test::read_json(data / "cases.json");
  ASSERT_GE(cases.as_array().size(), 50u);
  int raising = 0;
  for (const auto& c : cases.as_array()) {
    const std::string file = c.find("template")->as_string();
    std::ifstream in(data / file, std::ios::binary);
    const std::string source((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ChatTemplate t(source, file);
    const std::string what = file + " / " + c.find("conversation")->as_string() +
                             (c.find("add_generation_prompt")->as_bool() ? " + generation prompt" : "");
    if (const JsonValue* expected = c.find("expected")) {
      EXPECT_EQ(t.render(*c.find("variables")), expected->as_string()) << what;
    } else {
      ++raising;
      try {
        t.render(*c.find("variables"));
        ADD_FAILURE() << what << ": no error, Python raised " << c.find("raises")->as_string();
      } catch (const peft::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find(c.find("raises")->as_string()), std::string::npos) << what << ": " << e.what();
      }
    }
  }
  EXPECT_GT(raising, 0);
}

TEST(ChatTemplate, MacroArgumentsAreCheckedAsJinja2Does) {
  EXPECT_EQ(render("{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}"), "1(2,){'k': 3}");
  EXPECT_EQ(render("{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m() }}{{ m(b=1) }}"), "[|][|1]");
  EXPECT_NE(error_of("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}").find("takes not more than 1"), std::string::npos);
  EXPECT_NE(error_of("{% macro m(a) %}{% endmacro %}{{ m(b=2) }}").find("no keyword argument 'b'"), std::string::npos);
  EXPECT_NE(error_of("{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}").find("'caller'"), std::string::npos);
}

TEST(ChatTemplate, RunawayRecursionAndNestingAreErrorsNotCrashes) {
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}"), "321");
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("nested deeper"), std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}").find("nesting deeper"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(300, '{') + std::string(300, '}')).find("test:1"), std::string::npos);
}

TEST(ChatTemplate, IntegersBeyond64BitsAreErrorsNotWrongNumbers) {
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ -9223372036854775807 - 1 }}"), "4611686018427387904 -9223372036854775808");
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ 2 ** 64 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ 12345678901234567890 }}").find("64 bits"), std::string::npos);
}

TEST(ChatTemplate, SortDictsortMinMaxAndLoopChanged) {
  EXPECT_EQ(render("{{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }} {{ [3, 1] | sort(reverse=true) }}"),
            "['A', 'b', 'c'] ['A', 'b', 'c'] [3, 1]");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ [2, 5, 1] | min }}{{ [2, 5, 1] | max }}"),
            "[('a', 2), ('b', 1)] [('b', 1), ('a', 2)] 15");
  EXPECT_NE(error_of("{{ [1, 'a'] | sort }}").find("not supported"), std::string::npos);
  EXPECT_EQ(render("{% for x in [1, 1, 2] %}{{ loop.changed(x) }} {% endfor %}"), "True False True ");
}

TEST(ChatTemplate, UnicodeCaseMappingAndDictViews) {
  EXPECT_EQ(render("{{ 'straße' | upper }} {{ 'ÉA' | lower }} {{ 'été' | capitalize }}"), "STRASSE éa Été");
  EXPECT_EQ(render("{{ {'a': 1}.items() }} {{ {'a': 1}.keys() }}"), "dict_items([('a', 1)]) dict_keys(['a'])");
}
