// GPT-2's pre-tokenizer regex by hand, and the byte-level alphabet. See peft/text/pretokenizer.hpp
// for the exact rules and the Unicode approximation.
#include "peft/text/pretokenizer.hpp"

#include <algorithm>
#include <iterator>

namespace peft::text {
namespace {

struct Range {
  uint32_t lo, hi;
};

// \p{L} beyond ASCII, by block (sorted, disjoint). Marks (\p{M}) inside these blocks are left out
// where they form whole sub-ranges, since GPT-2 does not count them as letters either.
constexpr Range kLetters[] = {
    {0x00AA, 0x00AA}, {0x00B5, 0x00B5}, {0x00BA, 0x00BA}, {0x00C0, 0x00D6}, {0x00D8, 0x00F6},
    {0x00F8, 0x02C1}, {0x02C6, 0x02D1}, {0x02E0, 0x02E4}, {0x02EC, 0x02EC}, {0x02EE, 0x02EE},
    {0x0370, 0x0374}, {0x0376, 0x0377}, {0x037A, 0x037D}, {0x037F, 0x037F}, {0x0386, 0x0386},
    {0x0388, 0x038A}, {0x038C, 0x038C}, {0x038E, 0x03A1}, {0x03A3, 0x03F5}, {0x03F7, 0x0481},
    {0x048A, 0x052F}, {0x0531, 0x0556}, {0x0559, 0x0559}, {0x0560, 0x0588}, {0x05D0, 0x05EA},
    {0x05EF, 0x05F2}, {0x0620, 0x064A}, {0x066E, 0x066F}, {0x0671, 0x06D3}, {0x06D5, 0x06D5},
    {0x06E5, 0x06E6}, {0x06EE, 0x06EF}, {0x06FA, 0x06FC}, {0x06FF, 0x06FF}, {0x0904, 0x0939},
    {0x093D, 0x093D}, {0x0950, 0x0950}, {0x0958, 0x0961}, {0x0971, 0x0980}, {0x0E01, 0x0E30},
    {0x0E32, 0x0E33}, {0x0E40, 0x0E46}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD},
    {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2139}, {0x2C00, 0x2CE4},
    {0x2D00, 0x2D25}, {0x3005, 0x3006}, {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096},
    {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E},
    {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xA000, 0xA48C},
    {0xAC00, 0xD7A3}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0x20000, 0x2A6DF}, {0x2A700, 0x2EBE0},
    {0x2F800, 0x2FA1D}, {0x30000, 0x3134A},
};

// \p{N} beyond ASCII (Nd digits of the common scripts, No/Nl numbers).
constexpr Range kNumbers[] = {
    {0x00B2, 0x00B3}, {0x00B9, 0x00B9}, {0x00BC, 0x00BE}, {0x0660, 0x0669}, {0x06F0, 0x06F9},
    {0x07C0, 0x07C9}, {0x0966, 0x096F}, {0x09E6, 0x09EF}, {0x0A66, 0x0A6F}, {0x0AE6, 0x0AEF},
    {0x0B66, 0x0B6F}, {0x0BE6, 0x0BF2}, {0x0C66, 0x0C6F}, {0x0CE6, 0x0CEF}, {0x0D66, 0x0D6F},
    {0x0E50, 0x0E59}, {0x0ED0, 0x0ED9}, {0x0F20, 0x0F33}, {0x1040, 0x1049}, {0x16EE, 0x16F0},
    {0x17E0, 0x17E9}, {0x1810, 0x1819}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229},
    {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xFF10, 0xFF19},
    {0x1D7CE, 0x1D7FF},
};

// Unicode White_Space beyond ASCII (what \s means for Oniguruma / Python's `regex`).
constexpr Range kSpaces[] = {
    {0x0085, 0x0085}, {0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};

template <std::size_t N>
bool in_ranges(const Range (&ranges)[N], uint32_t cp) {
  const Range* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                     [](uint32_t c, const Range& r) { return c < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

struct AsciiTable {
  CharClass cls[128];
  constexpr AsciiTable() : cls() {
    for (int c = 0; c < 128; ++c) {
      CharClass k = CharClass::Other;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) k = CharClass::Letter;
      else if (c >= '0' && c <= '9') k = CharClass::Number;
      else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) k = CharClass::Space;
      cls[c] = k;
    }
  }
};
constexpr AsciiTable kAscii{};

// One decoded code point: its class and byte length (a bad byte is 1 byte of class Other).
struct Cp {
  uint32_t cp;
  CharClass cls;
  uint8_t len;
};

inline Cp decode_one(const unsigned char* s, std::size_t avail) {
  unsigned char c = s[0];
  if (c < 0x80) return {c, kAscii.cls[c], 1};
  int need;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) need = 1, cp = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) need = 2, cp = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) need = 3, cp = c & 0x07, min = 0x10000;
  else return {0xFFFD, CharClass::Other, 1};
  if (avail < static_cast<std::size_t>(need) + 1) return {0xFFFD, CharClass::Other, 1};
  for (int i = 1; i <= need; ++i) {
    if ((s[i] & 0xC0) != 0x80) return {0xFFFD, CharClass::Other, 1};
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0xFFFD, CharClass::Other, 1};
  return {cp, classify_code_point(cp), static_cast<uint8_t>(need + 1)};
}

}  // namespace

CharClass classify_code_point(uint32_t cp) {
  if (cp < 0x80) return kAscii.cls[cp];
  if (in_ranges(kLetters, cp)) return CharClass::Letter;
  if (in_ranges(kNumbers, cp)) return CharClass::Number;
  if (in_ranges(kSpaces, cp)) return CharClass::Space;
  return CharClass::Other;
}

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  // Decode once; the regex alternatives then only look at classes and a few code points.
  std::vector<Cp> cps;
  cps.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    Cp c = decode_one(p + i, text.size() - i);
    cps.push_back(c);
    i += c.len;
  }
  std::vector<std::string_view> out;
  const std::size_t m = cps.size();
  std::size_t k = 0, byte = 0;
  auto emit = [&](std::size_t end_k) {
    std::size_t len = 0;
    for (std::size_t i = k; i < end_k; ++i) len += cps[i].len;
    out.emplace_back(text.data() + byte, len);
    byte += len;
    k = end_k;
  };
  while (k < m) {
    const uint32_t c = cps[k].cp;
    // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive, tried first).
    if (c == '\'' && k + 1 < m) {
      const uint32_t c1 = cps[k + 1].cp;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        emit(k + 2);
        continue;
      }
      if (k + 2 < m) {
        const uint32_t c2 = cps[k + 2].cp;
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          emit(k + 3);
          continue;
        }
      }
    }
    // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+`: the optional U+0020 belongs to the run after it.
    const std::size_t s = (c == ' ' && k + 1 < m) ? k + 1 : k;
    const CharClass run = cps[s].cls;
    if (run != CharClass::Space) {
      std::size_t e = s + 1;
      while (e < m && cps[e].cls == run) ++e;
      emit(e);
      continue;
    }
    // \s+(?!\S) | \s+ : a whitespace run; before a non-space, its last code point is left to
    // prefix the next word (so "a   b" -> "a", "  ", " b"), unless the run is one code point.
    std::size_t e = k + 1;
    while (e < m && cps[e].cls == CharClass::Space) ++e;
    if (e < m && e - k >= 2) --e;
    emit(e);
  }
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

namespace {
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = bytes_to_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, t[b]);
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
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  for (std::size_t i = 0; i < token.size();) {
    Cp c = decode_one(p + i, token.size() - i);
    if (c.cp == 0xFFFD && c.len == 1 && p[i] >= 0x80) return false;
    if (c.cp >= inverse.size() || inverse[c.cp] < 0) return false;
    out += static_cast<char>(inverse[c.cp]);
    i += c.len;
  }
  return true;
}

}  // namespace peft::text
