#pragma once
// UTF-8 and Unicode helpers for the tokenizer pipeline (utf8proc underneath). Invalid UTF-8 is
// walked one byte at a time: each bad byte is a "character" of its own with code point kInvalid.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace peft::text::detail {

constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

/// Byte length of the character at text[i] (1 for an invalid byte).
std::size_t utf8_char_len(std::string_view text, std::size_t i);
/// The code point at text[i] (kInvalidCodePoint for an invalid byte); `len` receives its length.
uint32_t utf8_decode(std::string_view text, std::size_t i, std::size_t& len);
void utf8_append(std::string& out, uint32_t cp);
bool is_valid_utf8(std::string_view text);
/// Each invalid byte replaced by `with` (one byte: lengths and offsets are kept).
std::string replace_invalid_utf8_bytes(std::string_view text, char with);
/// Each invalid byte replaced by U+FFFD (as Rust's String::from_utf8_lossy, per byte).
std::string lossy_utf8(std::string_view text);

/// Rust's char::is_whitespace (Unicode White_Space).
bool is_whitespace(uint32_t cp);
/// Rust's char::is_numeric (Nd, Nl, No).
bool is_numeric(uint32_t cp);
/// Any Unicode punctuation (P*) or ASCII punctuation, as HF's Punctuation pre-tokenizer.
bool is_punctuation(uint32_t cp);
/// Unicode \w (letters, marks, decimal digits, connector punctuation), as Rust regex's \w.
bool is_word_char(uint32_t cp);
bool is_letter(uint32_t cp);

/// "NFC", "NFD", "NFKC", "NFKD" of valid UTF-8 (invalid bytes become U+FFFD first).
std::string unicode_normalize(std::string_view text, const std::string& form);
/// Rust's str::to_lowercase (full mapping: İ -> i̇, final sigma -> ς).
std::string unicode_lowercase(std::string_view text);

}  // namespace peft::text::detail
