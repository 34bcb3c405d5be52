#pragma once
/// Chat templates: the Jinja `chat_template` of a model's tokenizer_config.json, rendered as
/// transformers' `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`
/// does (jinja2 sandbox with trim_blocks and lstrip_blocks, `raise_exception`, the tokenizer's
/// special-token strings as variables). Output is byte-identical to Python jinja2 for the
/// templates this library supports; a Jinja feature it does not implement is a peft::ConfigError
/// naming the template and its line, never a silently different prompt.

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peft/format/json_value.hpp"

namespace peft::text {

/// One message of a conversation: role ("system", "user", "assistant", ...) and its text.
struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  /// Parses `source` (Jinja). `name` names the template in errors (e.g. "tokenizer_config.json
  /// chat_template"). Throws peft::ConfigError naming the line of a syntax error or of a feature
  /// that is not implemented.
  explicit ChatTemplate(const std::string& source, std::string name = "chat_template");
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  /// A string variable visible to every render (transformers passes bos_token, eos_token,
  /// unk_token, pad_token, ... from tokenizer_config.json this way).
  void set_variable(const std::string& name, const std::string& value);

  /// The rendered conversation. Throws peft::ConfigError with the template's message when it calls
  /// raise_exception (e.g. "Conversation roles must alternate user/assistant/..."), naming the line.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt = false) const;

  /// The template rendered with `variables` (a JSON object) as jinja2's render(**variables): e.g.
  /// {"messages": [...with tool_calls...], "add_generation_prompt": true, "tools": [...],
  /// "date_string": "26 Jul 2024"}. `tools` and `documents` default to None (as transformers passes
  /// them) and set_variable's strings to their values; `variables` overrides both.
  std::string render(const JsonValue& variables) const;

  /// render() plus the [begin, end) byte ranges of the output of each `{% generation %}` block
  /// (transformers' return_assistant_tokens_mask uses them to mark the assistant's tokens).
  std::string render(const JsonValue& variables, std::vector<std::pair<std::size_t, std::size_t>>& generation_spans) const;

  const std::string& source() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The chat template of a model directory: `dir/tokenizer_config.json`'s `chat_template` (a string,
/// or a list of {"name", "template"} from which `name` picks one), else `dir/chat_template.jinja`
/// (transformers >= 4.43 saves it there), with the special-token strings of tokenizer_config.json
/// (`bos_token`, `eos_token`, ...; plain strings or AddedToken objects) set as variables.
/// nullopt when the directory has no template. Throws peft::SerializationError on a malformed
/// file and peft::ConfigError when `name` is not among the listed templates.
std::optional<ChatTemplate> load_chat_template(const std::filesystem::path& dir, const std::string& name = "default");

}  // namespace peft::text
