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
