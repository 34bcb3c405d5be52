// Literal or PCRE2 pattern search and replace for the tokenizer.json components.

#include "pattern.hpp"

#include <stdexcept>

namespace peft::text::detail {

Pattern::Pattern(const PatternSpec& spec, const JsonPlace& at) {
  if (!spec.is_regex) {
    literal_ = spec.text;
    return;
  }
  try {
    regex_ = std::make_unique<Pcre2Regex>(spec.text);
  } catch (const std::invalid_argument& e) {
    unsupported(at, spec.text, std::string("the regex does not compile: ") + e.what(), "use a PCRE2-compatible pattern");
  }
}

void Pattern::find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  if (regex_) {
    regex_->find_all(text, out);
    return;
  }
  out.clear();
  if (literal_.empty()) return;
  for (auto p = text.find(literal_); p != std::string_view::npos; p = text.find(literal_, p + literal_.size()))
    out.emplace_back(p, p + literal_.size());
}

std::string Pattern::replace_all(const std::string& text, const std::string& content,
                                 std::pair<std::size_t, std::size_t>* first) const {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  find_all(text, matches);
  if (first) *first = matches.empty() ? std::make_pair(std::string::npos, std::string::npos) : matches.front();
  if (matches.empty()) return text;
  std::string out;
  out.reserve(text.size());
  std::size_t prev = 0;
  for (const auto& [b, e] : matches) {
    out.append(text, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(text, prev, std::string::npos);
  return out;
}

}  // namespace peft::text::detail
