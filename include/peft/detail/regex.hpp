#pragma once
/// Python `re` semantics on std::regex (ECMAScript), for the patterns PEFT users write:
///   re.fullmatch(p, s) -> python_fullmatch      re.match(p, s) -> python_match (anchored start)
/// Both engines are backtracking, leftmost-first, so match results and groups agree for the
/// shared syntax. Python-only spellings are translated: `(?P<name>...)` -> `(...)`, `\A` -> `^`,
/// `\Z` -> `$`, a leading `(?i)` -> icase. Other Python-only syntax (lookbehind, `(?P=name)`)
/// raises ConfigError naming the field.

#include <regex>
#include <string>

#include "peft/error.hpp"

namespace peft {

/// Compile a Python-style regex; `field` names the config key for the error message.
inline std::regex compile_python_regex(const std::string& pattern, const std::string& field) {
  std::string out;
  auto flags = std::regex::ECMAScript;
  std::size_t i = 0;
  if (pattern.rfind("(?i)", 0) == 0) {
    flags |= std::regex::icase;
    i = 4;
  }
  for (; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char n = pattern[i + 1];
      if (n == 'A') out += '^';
      else if (n == 'Z') out += '$';
      else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (pattern.compare(i, 4, "(?P<") == 0) {
      auto close = pattern.find('>', i + 4);
      if (close == std::string::npos) break;  // let std::regex report the malformed group
      out += '(';
      i = close;
      continue;
    }
    if (pattern.compare(i, 4, "(?P=") == 0 || pattern.compare(i, 4, "(?<=") == 0 ||
        pattern.compare(i, 4, "(?<!") == 0)
      throw ConfigError(field, "\"" + pattern + "\"",
                        "uses Python regex syntax that peft-cpp does not support "
                        "(named back-reference or lookbehind)",
                        "rewrite the pattern without it");
    out += c;
  }
  try {
    return std::regex(out, flags);
  } catch (const std::regex_error& e) {
    throw ConfigError(field, "\"" + pattern + "\"", std::string("is not a valid regular expression (") +
                      e.what() + ")", "patterns use Python `re` syntax, e.g. \".*\\\\.(q|v)_proj\"");
  }
}

/// re.fullmatch
inline bool python_fullmatch(const std::regex& re, const std::string& s) {
  return std::regex_match(s, re);
}

/// re.match: the pattern must match a prefix of s. `groups` receives the match if given.
inline bool python_match(const std::regex& re, const std::string& s, std::smatch* groups = nullptr) {
  std::smatch m;
  bool ok = std::regex_search(s, m, re, std::regex_constants::match_continuous);
  if (ok && groups) *groups = m;
  return ok;
}

}  // namespace peft
