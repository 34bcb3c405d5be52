#pragma once
// A tokenizer.json `pattern` ({"String": s} or {"Regex": r}) ready to search: what Split,
// the Replace normalizer and the Replace decoder share.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "json_fields.hpp"
#include "pcre2_regex.hpp"

namespace peft::text::detail {

class Pattern {
 public:
  /// Compiles a Regex pattern; one that PCRE2 rejects is a ConfigError naming `at` (the pattern field).
  Pattern(const PatternSpec& spec, const JsonPlace& at);
  /// A literal string pattern.
  explicit Pattern(std::string literal) : literal_(std::move(literal)) {}

  /// Non-overlapping matches left to right (an empty literal matches nothing).
  void find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;
  /// Every match replaced by `content`; returns the first match's range through `first` (npos, npos if none).
  std::string replace_all(const std::string& text, const std::string& content,
                          std::pair<std::size_t, std::size_t>* first = nullptr) const;

 private:
  std::string literal_;
  std::unique_ptr<Pcre2Regex> regex_;
};

}  // namespace peft::text::detail
