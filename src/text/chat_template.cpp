// ChatTemplate: parses once (the tree is shared by copies) and renders with transformers'
// variables; load_chat_template reads a model directory as transformers' tokenizer does.

#include "peft/text/chat_template.hpp"

#include "jinja/ast.hpp"
#include "jinja/evaluator.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"

namespace peft::text {

struct ChatTemplate::Impl {
  std::string source;
  std::shared_ptr<const detail::Template> tree;
  JsonValue variables = JsonValue::object();
};

ChatTemplate::ChatTemplate(const std::string& source, std::string name) : impl_(std::make_unique<Impl>()) {
  impl_->source = source;
  impl_->tree = detail::parse_template(source, name);
}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
ChatTemplate& ChatTemplate::operator=(const ChatTemplate& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

void ChatTemplate::set_variable(const std::string& name, const std::string& value) { impl_->variables.set(name, value); }

const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::render(const JsonValue& variables,
                                 std::vector<std::pair<std::size_t, std::size_t>>& generation_spans) const {
  if (!variables.is_object())
    throw ConfigError::about(impl_->tree->name, "variables", "", "render() takes a JSON object of variables", "");
  detail::ValueDict vars = {{"tools", detail::Value::none()}, {"documents", detail::Value::none()}};
  auto put = [&vars](const std::string& key, const JsonValue& v) {
    for (auto& kv : vars)
      if (kv.first == key) {
        kv.second = detail::Value::from_json(v);
        return;
      }
    vars.emplace_back(key, detail::Value::from_json(v));
  };
  for (const auto& kv : impl_->variables.as_object()) put(kv.first, kv.second);
  for (const auto& kv : variables.as_object()) put(kv.first, kv.second);
  detail::Evaluator ev(*impl_->tree, vars);
  std::string out = ev.render();
  generation_spans = ev.generation_spans();
  return out;
}

std::string ChatTemplate::render(const JsonValue& variables) const {
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  return render(variables, spans);
}

std::string ChatTemplate::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  JsonValue list = JsonValue::array();
  for (const auto& m : messages) {
    JsonValue msg = JsonValue::object();
    msg.set("role", m.role);
    msg.set("content", m.content);
    list.as_array().push_back(std::move(msg));
  }
  JsonValue vars = JsonValue::object();
  vars.set("messages", std::move(list));
  vars.set("add_generation_prompt", add_generation_prompt);
  return render(vars);
}

std::optional<ChatTemplate> load_chat_template(const std::filesystem::path& dir, const std::string& name) {
  const auto config_path = dir / "tokenizer_config.json";
  JsonValue config = JsonValue::object();
  if (std::filesystem::exists(config_path)) {
    try {
      config = JsonValue::parse(read_text_file(config_path));
    } catch (const SerializationError& e) {
      throw SerializationError(config_path.string() + ": " + e.what());
    }
    if (!config.is_object()) throw SerializationError(config_path.string() + ": expected a JSON object");
  }
  std::optional<ChatTemplate> tmpl;
  const JsonValue* field = config.find("chat_template");
  if (field && field->is_string()) {
    tmpl.emplace(field->as_string(), "tokenizer_config.json chat_template");
  } else if (field && field->is_array()) {
    std::string names;
    for (const auto& entry : field->as_array()) {
      const JsonValue* n = entry.find("name");
      const JsonValue* t = entry.find("template");
      if (!n || !t || !n->is_string() || !t->is_string())
        throw SerializationError(config_path.string() + ": chat_template entries must be {\"name\": str, \"template\": str}");
      if (n->as_string() == name) tmpl.emplace(t->as_string(), "tokenizer_config.json chat_template '" + name + "'");
      names += (names.empty() ? "" : ", ") + n->as_string();
    }
    if (!tmpl)
      throw ConfigError::about("load_chat_template", "name", name, "no chat template of that name in " + config_path.string(),
                               "the file lists: " + names);
  } else if (field && !field->is_null()) {
    throw SerializationError(config_path.string() + ": chat_template must be a string or a list of {name, template}");
  } else if (std::filesystem::exists(dir / "chat_template.jinja")) {
    tmpl.emplace(read_text_file(dir / "chat_template.jinja"), "chat_template.jinja");
  }
  if (!tmpl) return std::nullopt;
  // The special-token strings transformers passes to the template (bos_token, eos_token, ...).
  for (const auto& kv : config.as_object()) {
    const std::string& key = kv.first;
    if (key.size() < 6 || key.compare(key.size() - 6, 6, "_token") != 0) continue;
    if (kv.second.is_string()) {
      tmpl->set_variable(key, kv.second.as_string());
    } else if (const JsonValue* content = kv.second.find("content"); content && content->is_string()) {
      tmpl->set_variable(key, content->as_string());
    }
  }
  return tmpl;
}

}  // namespace peft::text
