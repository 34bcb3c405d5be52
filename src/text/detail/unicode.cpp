// UTF-8 walking and Unicode classes via utf8proc.

#include "unicode.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <stdexcept>

namespace peft::text::detail {

std::size_t utf8_char_len(std::string_view text, std::size_t i) {
  std::size_t len = 1;
  utf8_decode(text, i, len);
  return len;
}

uint32_t utf8_decode(std::string_view text, std::size_t i, std::size_t& len) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char c = s[i];
  len = 1;
  if (c < 0x80) return c;
  std::size_t need = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07;
  else return kInvalidCodePoint;
  if (i + need >= text.size()) return kInvalidCodePoint;  // truncated sequence
  for (std::size_t k = 1; k <= need; ++k) {
    const unsigned char d = s[i + k];
    if ((d & 0xC0) != 0x80) return kInvalidCodePoint;
    cp = (cp << 6) | (d & 0x3F);
  }
  // Overlong 3/4-byte forms, surrogates and > U+10FFFF are invalid, as for Rust's str.
  if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
    return kInvalidCodePoint;
  len = need + 1;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 1;
    if (utf8_decode(text, i, len) == kInvalidCodePoint) return false;
    i += len;
  }
  return true;
}

std::string replace_invalid_utf8_bytes(std::string_view text, char with) {
  std::string out(text);
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    if (utf8_decode(text, i, len) == kInvalidCodePoint) out[i] = with;
    i += len;
  }
  return out;
}

std::string lossy_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    if (utf8_decode(text, i, len) == kInvalidCodePoint) out += "\xEF\xBF\xBD";
    else out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

bool is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

namespace {
utf8proc_category_t category(uint32_t cp) {
  if (cp == kInvalidCodePoint) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}
}  // namespace

bool is_numeric(uint32_t cp) {
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_punctuation(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                        (cp >= 0x7B && cp <= 0x7E);
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_letter(uint32_t cp) {
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

bool is_word_char(uint32_t cp) {
  const auto c = category(cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
         c == UTF8PROC_CATEGORY_PC || cp == 0x200C || cp == 0x200D;
}

std::string unicode_normalize(std::string_view text, const std::string& form) {
  int options = UTF8PROC_STABLE;
  if (form == "NFC") options |= UTF8PROC_COMPOSE;
  else if (form == "NFD") options |= UTF8PROC_DECOMPOSE;
  else if (form == "NFKC") options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  else if (form == "NFKD") options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  else throw std::invalid_argument("unknown normalization form " + form);
  const std::string valid = is_valid_utf8(text) ? std::string(text) : lossy_utf8(text);
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid.data()),
                              static_cast<utf8proc_ssize_t>(valid.size()), &out,
                              static_cast<utf8proc_option_t>(options));
  if (n < 0) return valid;  // cannot happen on valid UTF-8; keep the text rather than lose it
  std::string result(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  std::free(out);
  return result;
}

namespace {
bool is_cased(uint32_t cp) {
  if (cp == kInvalidCodePoint) return false;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}
bool is_case_ignorable(uint32_t cp) {
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == 0x2019 || cp == '.' ||
         cp == ':' || cp == 0xB7;
}
}  // namespace

std::string unicode_lowercase(std::string_view text) {
  const std::string valid = is_valid_utf8(text) ? std::string(text) : lossy_utf8(text);
  std::string out;
  out.reserve(valid.size());
  for (std::size_t i = 0; i < valid.size();) {
    std::size_t len = 1;
    const uint32_t cp = utf8_decode(valid, i, len);
    if (cp == 0x130) {  // İ: the one unconditional multi-character lowercase mapping
      out += "i\xCC\x87";
    } else if (cp == 0x3A3) {
      // Final sigma (Rust's rule): preceded by a cased letter and not followed by one, skipping
      // case-ignorable characters on both sides.
      bool before = false, after = false;
      for (std::size_t j = i; j > 0;) {
        std::size_t k = j - 1;
        while (k > 0 && (static_cast<unsigned char>(valid[k]) & 0xC0) == 0x80) --k;
        std::size_t l = 1;
        const uint32_t p = utf8_decode(valid, k, l);
        if (is_case_ignorable(p)) { j = k; continue; }
        before = is_cased(p);
        break;
      }
      for (std::size_t j = i + len; j < valid.size();) {
        std::size_t l = 1;
        const uint32_t p = utf8_decode(valid, j, l);
        if (is_case_ignorable(p)) { j += l; continue; }
        after = is_cased(p);
        break;
      }
      utf8_append(out, before && !after ? 0x3C2 : 0x3C3);
    } else {
      utf8_append(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
    i += len;
  }
  return out;
}

}  // namespace peft::text::detail
