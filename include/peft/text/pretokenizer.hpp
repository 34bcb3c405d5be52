#pragma once
/// GPT-2's byte-level pre-tokenization, by hand (std::regex has no \p{..} classes):
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// Alternatives are tried in that order at each position (leftmost-first, greedy), as PCRE /
/// Oniguruma do; contractions are case-sensitive, the optional space is U+0020 only.
///
/// Character classes on decoded UTF-8 code points:
///  - ASCII exactly (L = A-Za-z, N = 0-9, \s = \t \n \v \f \r and space).
///  - \s beyond ASCII: Unicode White_Space (U+0085, U+00A0, U+1680, U+2000-200A, U+2028/9, U+202F,
///    U+205F, U+3000).
///  - \p{L} beyond ASCII (an approximation by block, not the full Unicode tables): Latin-1 letters
///    and ª µ º, Latin Extended-A/B, IPA, Greek and Coptic, Cyrillic (+ Supplement), Armenian,
///    Hebrew and Arabic letters, Devanagari/Thai/Georgian/Hangul Jamo letters, Latin Extended
///    Additional, Greek Extended, Glagolitic, Hiragana, Katakana, Bopomofo, CJK Unified Ideographs
///    (+ Ext. A-F), Yi, Hangul syllables, CJK compatibility ideographs, fullwidth Latin letters,
///    halfwidth Katakana/Hangul. Combining marks (\p{M}) are not letters, as in Unicode; so Indic
///    vowel signs split words exactly as in GPT-2, but letters of scripts not listed here are
///    treated as punctuation (the only place this tokenizer may differ from HF's).
///  - \p{N}: decimal digits of Arabic-Indic, Devanagari ... Thai, Lao, Tibetan, Myanmar, Khmer,
///    Mongolian and fullwidth digits; superscripts/subscripts ² ³ ¹ ⁰-⁹ ₀-₉, vulgar fractions
///    ¼ ½ ¾ ⅐-⅟, Roman numerals Ⅰ-ↈ, circled/parenthesised numbers ①-⒛ ⓪-⓿ ❶-➓, 〇 〡-〩.
///  - Invalid UTF-8: each bad byte is one code point of the "other" class (punctuation), so it
///    stays inside a ` ?[^\s\p{L}\p{N}]+` piece and round-trips through the byte-level mapping.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peft::text {

enum class CharClass : uint8_t { Letter, Number, Space, Other };

/// The class of one Unicode code point (see the header comment for the approximation).
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
