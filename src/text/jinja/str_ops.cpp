// Python str semantics over UTF-8 by code point; see str_ops.hpp.

#include "str_ops.hpp"

#include <utf8proc.h>

#include "value.hpp"

namespace peft::text::detail {
namespace {

bool is_cased(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}
char32_t upper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
char32_t lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
char32_t title(char32_t c) { return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))); }

// The full (one-to-many) mappings Python applies that utf8proc's simple ones lack: German sharp s
// and the Latin ligatures U+FB00..FB06 (upper: "SS", "FF", ...; title: "Ss", "Ff", ...).
const char* special_upper(char32_t c, bool title_case) {
  static const char* const upper[] = {"FF", "FI", "FL", "FFI", "FFL", "ST", "ST"};
  static const char* const title[] = {"Ff", "Fi", "Fl", "Ffi", "Ffl", "St", "St"};
  if (c == 0xdf) return title_case ? "Ss" : "SS";
  if (c >= 0xfb00 && c <= 0xfb06) return (title_case ? title : upper)[c - 0xfb00];
  return nullptr;
}

// Upper- or title-cases one code point into `out`.
void append_upper(std::string& out, char32_t c, bool title_case) {
  if (const char* s = special_upper(c, title_case)) out += s;
  else append_utf8(out, title_case ? title(c) : upper(c));
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028 ||
         c == 0x2029;
}

}  // namespace

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string py_upper(const std::string& s) {
  std::string out;
  for (char32_t c : to_code_points(s)) append_upper(out, c, false);
  return out;
}
std::string py_lower(const std::string& s) {
  std::string out;
  for (char32_t c : to_code_points(s)) {
    if (c == 0x130) out += "i\xcc\x87";  // İ -> i + combining dot above, as Python's full mapping
    else append_utf8(out, lower(c));
  }
  return out;
}

std::string py_title(const std::string& s) {
  bool prev_cased = false;
  std::string out;
  for (char32_t c : to_code_points(s)) {
    if (prev_cased) append_utf8(out, lower(c));
    else append_upper(out, c, true);
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out;
  bool first = true;
  for (char32_t c : to_code_points(s)) {
    if (first) append_upper(out, c, true);
    else append_utf8(out, lower(c));
    first = false;
  }
  return out;
}

std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left, bool right) {
  const auto cps = to_code_points(s);
  const auto set = chars ? to_code_points(*chars) : std::vector<char32_t>{};
  auto strip_it = [&](char32_t c) {
    if (!chars) return is_py_space(c);
    for (char32_t x : set)
      if (x == c) return true;
    return false;
  };
  std::size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

std::vector<std::string> py_split(const std::string& s, const std::optional<std::string>& sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    std::size_t pos = 0;
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      const std::size_t hit = s.find(*sep, pos);
      if (hit == std::string::npos) break;
      out.push_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.push_back(s.substr(pos));
    return out;
  }
  const auto cps = to_code_points(s);
  std::size_t i = 0;
  while (true) {
    while (i < cps.size() && is_py_space(cps[i])) ++i;
    if (i >= cps.size()) break;
    if (maxsplit >= 0 && static_cast<long>(out.size()) >= maxsplit) {
      std::size_t e = cps.size();
      while (e > i && is_py_space(cps[e - 1])) --e;
      out.push_back(from_code_points(cps, i, e));
      break;
    }
    std::size_t j = i;
    while (j < cps.size() && !is_py_space(cps[j])) ++j;
    out.push_back(from_code_points(cps, i, j));
    i = j;
  }
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s) {
  std::vector<std::string> out;
  const auto cps = to_code_points(s);
  std::size_t start = 0;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    if (!is_line_break(cps[i])) continue;
    out.push_back(from_code_points(cps, start, i));
    if (cps[i] == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < cps.size()) out.push_back(from_code_points(cps, start, cps.size()));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old_text, const std::string& new_text, long count) {
  std::string out;
  long done = 0;
  if (old_text.empty()) {  // Python inserts `new` before every character and at the end
    const auto cps = to_code_points(s);
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  std::size_t pos = 0;
  while (count < 0 || done < count) {
    const std::size_t hit = s.find(old_text, pos);
    if (hit == std::string::npos) break;
    out += s.substr(pos, hit - pos) + new_text;
    pos = hit + old_text.size();
    ++done;
  }
  return out + s.substr(pos);
}

std::size_t py_len(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

}  // namespace peft::text::detail
