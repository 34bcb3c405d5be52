#pragma once
// Python str operations on UTF-8 text, by code point (case mapping through utf8proc's simple
// mappings: one code point to one, so "ß".upper() stays "ß" where Python writes "SS").

#include <optional>
#include <string>
#include <vector>

namespace peft::text::detail {

bool is_py_space(char32_t c);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
/// str.title(): upper-case a cased character after an uncased one, lower-case the rest.
std::string py_title(const std::string& s);
/// str.capitalize(): first character upper, the rest lower.
std::string py_capitalize(const std::string& s);
/// str.strip/lstrip/rstrip(chars): whitespace when `chars` is nullopt.
std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left, bool right);
/// str.split(sep, maxsplit): runs of whitespace when `sep` is nullopt.
std::vector<std::string> py_split(const std::string& s, const std::optional<std::string>& sep, long maxsplit);
/// str.splitlines() (\n, \r\n, \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029 end a line).
std::vector<std::string> py_splitlines(const std::string& s);
/// str.replace(old, new, count); count < 0 = all.
std::string py_replace(const std::string& s, const std::string& old_text, const std::string& new_text, long count);
/// Number of code points (Python's len(str)).
std::size_t py_len(const std::string& s);

}  // namespace peft::text::detail
