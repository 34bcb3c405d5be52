// peft_render_chat_template: renders chat-template cases with peft::text::ChatTemplate, for the
// comparison with Python jinja2 (tests/python/compare_chat_templates.py). Not a ctest entry.
//
//   peft_render_chat_template CASES.json OUT.json
//
// CASES.json is a list of {"name", "template" | "model_dir", "variables": {...}}: a "template"
// text is parsed as is; a "model_dir" goes through load_chat_template (its tokenizer_config.json
// special tokens become variables). "variables" (messages, add_generation_prompt, date_string, ...)
// are passed to render(). OUT.json gets one {"name", "output"} or {"name", "error"} per case, so a
// template that raises (raise_exception, an unsupported feature) is a result, not a crash.

#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/text/chat_template.hpp"

namespace {

peft::JsonValue render_case(const peft::JsonValue& c) {
  peft::JsonValue result = peft::JsonValue::object();
  const peft::JsonValue* name = c.find("name");
  result.set("name", name ? *name : peft::JsonValue(""));
  const peft::JsonValue* vars = c.find("variables");
  try {
    std::optional<peft::text::ChatTemplate> tmpl;
    if (const peft::JsonValue* text = c.find("template")) {
      tmpl.emplace(text->as_string(), "case template");
    } else {
      const peft::JsonValue* dir = c.find("model_dir");
      if (!dir) throw peft::SerializationError("a case needs \"template\" or \"model_dir\"");
      tmpl = peft::text::load_chat_template(dir->as_string());
      if (!tmpl) throw peft::SerializationError(dir->as_string() + ": no chat template");
    }
    result.set("output", tmpl->render(vars ? *vars : peft::JsonValue::object()));
  } catch (const peft::Error& e) {
    result.set("error", std::string(e.what()));
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: peft_render_chat_template CASES.json OUT.json\n";
    return 2;
  }
  try {
    const peft::JsonValue cases = peft::JsonValue::parse(peft::read_text_file(argv[1]));
    if (!cases.is_array()) throw peft::SerializationError(std::string(argv[1]) + ": expected a JSON list of cases");
    peft::JsonValue out = peft::JsonValue::array();
    for (const auto& c : cases.as_array()) out.as_array().push_back(render_case(c));
    std::ofstream(argv[2], std::ios::binary) << out.dump(1) << "\n";
  } catch (const peft::Error& e) {
    std::cerr << "peft_render_chat_template: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
