#pragma once
// Jinja lexer with transformers' settings (trim_blocks, lstrip_blocks, no trailing newline kept):
// template text becomes Data tokens, tags become delimiters around expression tokens.

#include <string>
#include <vector>

namespace peft::text::detail {

struct Token {
  enum class Type { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type;
  std::string text;  // Data text, a name, a decoded string literal, a number's digits, an operator
  int line;
};

/// Throws peft::ConfigError (naming `template_name` and the line) on an unterminated tag, string
/// or comment, or a character Jinja does not know.
std::vector<Token> tokenize(const std::string& source, const std::string& template_name);

}  // namespace peft::text::detail
