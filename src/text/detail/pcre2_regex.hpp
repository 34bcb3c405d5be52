#pragma once
// A compiled PCRE2 pattern (UTF + UCP, JIT when available) for the tokenizer pipeline: HF's
// Oniguruma patterns (GPT-2, Llama-3, Qwen: \p{L}, \p{N}, (?i:...), lookahead) mean the same here.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace peft::text::detail {

class Pcre2Regex {
 public:
  /// Throws std::invalid_argument with PCRE2's message and offset when the pattern does not compile.
  explicit Pcre2Regex(const std::string& pattern);
  ~Pcre2Regex();
  Pcre2Regex(const Pcre2Regex&) = delete;
  Pcre2Regex& operator=(const Pcre2Regex&) = delete;

  /// All non-overlapping matches [begin, end) left to right, as Oniguruma's find_iter: after an
  /// empty match the search resumes one character later. Invalid UTF-8 bytes are matched as if
  /// they were U+007F (a control character: not \s, \p{L} or \p{N}), so they stay searchable.
  /// Thread-safe (match data is per call).
  void find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::text::detail
