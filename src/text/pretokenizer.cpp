// GPT-2's pre-tokenizer (PCRE2, the same regex HF's ByteLevel uses) and the byte-level alphabet.
#include "peft/text/pretokenizer.hpp"

#include "detail/pcre2_regex.hpp"
#include "detail/pre_tokenizers.hpp"
#include "detail/unicode.hpp"

namespace peft::text {

CharClass classify_code_point(uint32_t cp) {
  if (detail::is_whitespace(cp)) return CharClass::Space;
  if (detail::is_letter(cp)) return CharClass::Letter;
  if (detail::is_numeric(cp)) return CharClass::Number;
  return CharClass::Other;
}

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  static const detail::Pcre2Regex re(detail::kGpt2Pattern);
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  re.find_all(text, matches);
  // Every character matches one of the alternatives, so the matches tile the text; invalid bytes
  // (matched as U+007F) fall in the punctuation class.
  std::vector<std::string_view> out;
  out.reserve(matches.size());
  std::size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev < b) out.push_back(text.substr(prev, b - prev));
    if (e > b) out.push_back(text.substr(b, e - b));
    prev = e;
  }
  if (prev < text.size()) out.push_back(text.substr(prev));
  return out;
}

const std::array<uint32_t, 256>& bytes_to_unicode() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : 256 + n++;
    }
    return t;
  }();
  return table;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = bytes_to_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) detail::utf8_append(out, t[b]);
  return out;
}

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  // Inverse table over U+0000..U+0143 (the byte-level alphabet lives there).
  static const std::array<int, 0x144> inverse = [] {
    std::array<int, 0x144> inv{};
    inv.fill(-1);
    const auto& t = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) inv[t[b]] = b;
    return inv;
  }();
  out.clear();
  for (std::size_t i = 0; i < token.size();) {
    std::size_t len = 1;
    const uint32_t cp = detail::utf8_decode(token, i, len);
    if (cp >= inverse.size() || inverse[cp] < 0) return false;  // also kInvalidCodePoint
    out += static_cast<char>(inverse[cp]);
    i += len;
  }
  return true;
}

}  // namespace peft::text
