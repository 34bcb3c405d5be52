#pragma once
/// Python `re` for the patterns PEFT users write (target_modules, exclude_modules, rank/alpha
/// patterns, layers_pattern, modules_to_save), on PCRE2 (docs/matching.md#regex-dialect):
///   re.fullmatch(p, s) -> PythonRegex::fullmatch     re.match(p, s) -> PythonRegex::match
/// PCRE2 runs with UTF + UCP, so \d \w \s and case folding are Unicode as in Python 3 `str`
/// patterns. Python spellings are PCRE2 spellings (`(?P<name>…)`, `(?P=name)`, lookbehind, inline
/// flags) except `\Z`, which is translated to PCRE2's `\z` (Python's \Z is the very end). A
/// pattern that backtracks catastrophically stops at PCRE2's match limit with a ConfigError
/// instead of running for hours or recursing without bound.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace peft {

class PythonRegex {
 public:
  /// Compiles `pattern`; `field` names the config key in errors. Throws peft::ConfigError (field,
  /// pattern, PCRE2's message and offset) when the pattern is invalid.
  PythonRegex(const std::string& pattern, const std::string& field);

  /// re.fullmatch(pattern, s) is not None.
  bool fullmatch(std::string_view s) const;
  /// re.match(pattern, s) is not None; `groups` (if given) receives groups 1..n of the match
  /// (an unset group is empty).
  bool match(std::string_view s, std::vector<std::string>* groups = nullptr) const;

  const std::string& pattern() const { return pattern_; }
  const std::string& field() const { return field_; }

  /// Backtracking steps allowed per match (PCRE2's match limit); exceeding it throws ConfigError.
  static constexpr std::uint32_t kMatchLimit = 1000000;

 private:
  struct Code;
  bool run(std::string_view s, bool full, std::vector<std::string>* groups) const;
  std::string pattern_;
  std::string field_;
  std::shared_ptr<const Code> code_;
};

/// Compile a Python-style regex; `field` names the config key for the error message.
inline PythonRegex compile_python_regex(const std::string& pattern, const std::string& field) {
  return PythonRegex(pattern, field);
}

}  // namespace peft
