#pragma once
/// String helpers shared by the readers, writers and error messages (LibTorch-free).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace peft::detail {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// `s` in backticks, as error messages name keys: `lin0.weight`.
inline std::string ticked(const std::string& s) { return "`" + s + "`"; }

/// `s` in double quotes (no escaping): "F32".
inline std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

/// A shape as error messages print it: "[2, 3]" ("[]" for a scalar). `Dims` is any range of
/// integers (torch::IntArrayRef, std::vector<std::int64_t>).
template <class Dims>
std::string shape_string(const Dims& dims) {
  std::string out = "[";
  bool first = true;
  for (const auto d : dims) {
    out += (first ? "" : ", ") + std::to_string(d);
    first = false;
  }
  return out + "]";
}

/// The first `max` items, each between `quote`s, joined by `separator`; when some are left out,
/// `separator` + "... (N in all)" follows: `a b ... (12 in all)`.
inline std::string abbreviated_list(const std::vector<std::string>& items, std::size_t max,
                                    const std::string& separator, const std::string& quote = "") {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < max; ++i) out += (i ? separator : "") + quote + items[i] + quote;
  if (items.size() > max) out += separator + "... (" + std::to_string(items.size()) + " in all)";
  return out;
}

}  // namespace peft::detail
