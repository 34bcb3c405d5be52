#pragma once
/// Text for error messages: a 100k-character key or value would drown the message it is in.

#include <cstddef>
#include <string>
#include <string_view>

namespace peft::detail {

/// `s` itself, or its first `max_bytes` bytes (whole UTF-8 characters) + "... (N characters)".
inline std::string shortened(std::string_view s, std::size_t max_bytes = 200) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "... (" + std::to_string(s.size()) + " characters)";
}

}  // namespace peft::detail
