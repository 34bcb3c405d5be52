// JsonValue parsing (nlohmann::ordered_json, kept private to this file) and Python-compatible
// printing (json.dumps with ensure_ascii and repr floats), so adapter_config.json we write reads
// like the file PEFT writes.

#include "peft/json_value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "peft/error.hpp"

namespace peft {
namespace {

constexpr int kMaxDepth = 512;

JsonValue from_nlohmann(const nlohmann::ordered_json& j) {
  using nlohmann::ordered_json;
  switch (j.type()) {
    case ordered_json::value_t::null: return JsonValue();
    case ordered_json::value_t::boolean: return JsonValue(j.get<bool>());
    case ordered_json::value_t::number_integer: return JsonValue(j.get<std::int64_t>());
    case ordered_json::value_t::number_unsigned: {
      auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX))
        throw SerializationError("JSON integer " + std::to_string(u) + " does not fit in int64");
      return JsonValue(static_cast<std::int64_t>(u));
    }
    case ordered_json::value_t::number_float: {
      // 1e999 parses to infinity, which no config field can use and which we could not write
      // back as valid JSON; reject it here rather than carry it around.
      const double d = j.get<double>();
      if (!std::isfinite(d)) throw SerializationError("JSON number out of the range of a double");
      return JsonValue(d);
    }
    case ordered_json::value_t::string: return JsonValue(j.get<std::string>());
    case ordered_json::value_t::array: {
      JsonValue::Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_nlohmann(e));
      return JsonValue(std::move(a));
    }
    case ordered_json::value_t::object: {
      JsonValue out = JsonValue::object();
      for (auto it = j.begin(); it != j.end(); ++it) out.set(it.key(), from_nlohmann(it.value()));
      return out;
    }
    default: throw SerializationError("unsupported JSON value (binary or discarded)");
  }
}

// Python's float repr: shortest round-trip digits; fixed notation for 1e-4 <= |v| < 1e16,
// scientific otherwise with a sign and at least two exponent digits; always a '.0' or exponent.
std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci = [-]d[.ddd]e[+-]XX
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  auto e_pos = sci.find('e');
  std::string mant = sci.substr(0, e_pos);
  int exp10 = std::atoi(sci.c_str() + e_pos + 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 >= 0) {
      if (static_cast<int>(digits.size()) <= exp10 + 1) {
        out = digits + std::string(exp10 + 1 - digits.size(), '0') + ".0";
      } else {
        out = digits.substr(0, exp10 + 1) + "." + digits.substr(exp10 + 1);
      }
    } else {
      out = "0." + std::string(-exp10 - 1, '0') + digits;
    }
    return (negative ? "-" : "") + out;
  }
  out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return (negative ? "-" : "") + out + ebuf;
}

void append_escaped(std::string& out, const std::string& s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      case '\b': out += "\\b"; ++i; continue;
      case '\f': out += "\\f"; ++i; continue;
      default: break;
    }
    char hex[16];
    if (c < 0x20 || c == 0x7F) {  // Python escapes everything outside ' '..'~', DEL included
      std::snprintf(hex, sizeof hex, "\\u%04x", c);
      out += hex;
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence (input was validated by the parser or built by us).
    std::uint32_t cp = 0;
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    cp = c & (extra == 3 ? 0x07 : extra == 2 ? 0x0F : 0x1F);
    for (int k = 1; k <= extra && i + k < s.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += extra + 1;
    if (cp >= 0x10000) {  // ensure_ascii writes a surrogate pair
      cp -= 0x10000;
      std::snprintf(hex, sizeof hex, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else {
      std::snprintf(hex, sizeof hex, "\\u%04x", cp);
    }
    out += hex;
  }
  out += '"';
}

void dump_into(const JsonValue& v, std::string& out, int indent, bool sort_keys, int level) {
  auto newline = [&](int lvl) {
    if (indent >= 0) {
      out += '\n';
      out.append(static_cast<std::size_t>(indent * lvl), ' ');
    }
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (v.type()) {
    case JsonValue::Type::Null: out += "null"; return;
    case JsonValue::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case JsonValue::Type::Int: out += std::to_string(v.as_int()); return;
    case JsonValue::Type::Float: out += python_float_repr(v.as_double()); return;
    case JsonValue::Type::String: append_escaped(out, v.as_string()); return;
    case JsonValue::Type::Array: {
      const auto& a = v.as_array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t k = 0; k < a.size(); ++k) {
        if (k) out += item_sep;
        newline(level + 1);
        dump_into(a[k], out, indent, sort_keys, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case JsonValue::Type::Object: {
      std::vector<const std::pair<std::string, JsonValue>*> items;
      for (const auto& kv : v.as_object()) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      // Python sorts str keys by code point; UTF-8 byte order is the same order.
      if (sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      out += '{';
      for (std::size_t k = 0; k < items.size(); ++k) {
        if (k) out += item_sep;
        newline(level + 1);
        append_escaped(out, items[k]->first);
        out += ": ";
        dump_into(items[k]->second, out, indent, sort_keys, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
  }
}

}  // namespace

JsonValue JsonValue::parse(const std::string& text) {
  // nlohmann's lexer takes a NUL byte for the end of the input, which would accept anything
  // after `{...}\0`; valid JSON text holds none (control characters must be escaped).
  const auto nul = text.find('\0');
  if (nul != std::string::npos)
    throw SerializationError("invalid JSON: NUL byte at offset " + std::to_string(nul));
  // Reject pathological nesting before handing the text to the parser.
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        throw SerializationError("JSON nesting deeper than " + std::to_string(kMaxDepth) +
                                 " levels at byte " + std::to_string(i));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw SerializationError(std::string("invalid JSON: ") + e.what());
  }
  return from_nlohmann(j);
}

std::string JsonValue::dump(int indent, bool sort_keys) const {
  std::string out;
  dump_into(*this, out, indent, sort_keys, 0);
  return out;
}

}  // namespace peft
