#pragma once
/// GPT-2's byte-level pre-tokenization, the regex HF's ByteLevel pre-tokenizer uses (run by PCRE2
/// with Unicode properties, src/text/detail/pcre2_regex.hpp):
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// Alternatives are tried in that order at each position (leftmost-first, greedy), as Oniguruma
/// does; contractions are case-sensitive, the optional space is U+0020 only. \s is Unicode
/// White_Space, \p{L}/\p{N} the Unicode categories. Invalid UTF-8 bytes are treated as one
/// "other" (punctuation-class) character each, so they stay inside ` ?[^\s\p{L}\p{N}]+` pieces.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peft::text {

enum class CharClass : uint8_t { Letter, Number, Space, Other };

/// The class of one Unicode code point: White_Space, then L*, then N* (Unicode categories).
CharClass classify_code_point(uint32_t cp);

/// Split `text` into GPT-2 pre-tokens (views into `text`; concatenated they give `text` back).
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

/// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100.. in byte order (space -> U+0120 'Ġ', newline -> U+010A 'Ċ'). Returns the code points.
const std::array<uint32_t, 256>& bytes_to_unicode();

/// Raw bytes -> the byte-level "unicode" spelling used in vocab.json / tokenizer.json (UTF-8).
std::string bytes_to_byte_level(std::string_view bytes);
/// The inverse; false when `token` has a character outside the 256 byte-level characters.
bool byte_level_to_bytes(std::string_view token, std::string& out);

}  // namespace peft::text
