#pragma once
// Line iteration shared by the text readers (dataset.cpp's documents, records.cpp's records):
// one place decides what a line, a blank line and a malformed JSONL line are.

#include <cstddef>
#include <string>
#include <string_view>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"

namespace peft::text::detail {

inline bool is_blank(std::string_view line) {
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

/// f(line, line_no) for each line of `text`, without its '\n' and a trailing '\r'; lines count from 1.
template <typename F>
void for_each_line(const std::string& text, F&& f) {
  std::size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line, ++line_no);
    pos = nl + 1;
  }
}

/// f(object, "file:line") for each non-blank line of a JSONL text; a line that is not one JSON
/// object throws peft::SerializationError naming file:line.
template <typename F>
void for_each_jsonl_object(const std::string& text, const std::string& file, F&& f) {
  for_each_line(text, [&](std::string_view line, std::size_t line_no) {
    if (is_blank(line)) return;
    const std::string where = file + ":" + std::to_string(line_no);
    JsonValue v;
    try {
      v = JsonValue::parse(std::string(line));
    } catch (const Error& e) {
      throw SerializationError(where + ": malformed JSON: " + e.what());
    }
    if (!v.is_object()) throw SerializationError(where + ": expected one JSON object per line");
    f(v, where);
  });
}

}  // namespace peft::text::detail
