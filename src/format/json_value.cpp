// JsonValue parsing (nlohmann SAX events, kept private to this file) and Python-compatible
// printing (json.dumps with ensure_ascii and repr floats), so adapter_config.json we write reads
// like the file PEFT writes.

#include "peft/format/json_value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "peft/detail/float_repr.hpp"
#include "peft/error.hpp"

namespace peft {

namespace detail {

// Fixed notation for 1e-4 <= |v| < 1e16, scientific otherwise with a sign and at least two
// exponent digits; always a '.0' or exponent.
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

}  // namespace detail

namespace {

constexpr int kMaxDepth = 512;

/// Builds a JsonValue straight from nlohmann's SAX events. Objects index their keys in a hash
/// map while they are built, so an object of n keys costs O(n), not the O(n²) of ordered_json
/// or JsonValue::set (a hostile file of millions of keys must not hang a reader). Duplicate
/// keys keep the first position and the last value, like Python's json.loads into a dict.
class Builder : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::string error;
  JsonValue root;

  bool null() override { return put(JsonValue()); }
  bool boolean(bool b) override { return put(JsonValue(b)); }
  bool number_integer(number_integer_t i) override { return put(JsonValue(static_cast<std::int64_t>(i))); }
  bool number_unsigned(number_unsigned_t u) override {
    if (u > static_cast<std::uint64_t>(INT64_MAX)) {
      error = "JSON integer " + std::to_string(u) + " does not fit in int64";
      return false;
    }
    return put(JsonValue(static_cast<std::int64_t>(u)));
  }
  bool number_float(number_float_t d, const string_t&) override {
    // 1e999 parses to infinity, which no config field can use and which we could not write
    // back as valid JSON; reject it here rather than carry it around.
    if (!std::isfinite(d)) {
      error = "JSON number out of the range of a double";
      return false;
    }
    return put(JsonValue(static_cast<double>(d)));
  }
  bool string(string_t& v) override { return put(JsonValue(std::move(v))); }
  bool binary(binary_t&) override {
    error = "unsupported JSON value (binary)";
    return false;
  }
  bool start_object(std::size_t) override {
    stack_.push_back(Frame{JsonValue::object(), {}, {}, true});
    return true;
  }
  bool key(string_t& k) override {
    stack_.back().pending_key = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override {
    stack_.push_back(Frame{JsonValue::array(), {}, {}, false});
    return true;
  }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = std::string("invalid JSON: ") + ex.what();
    return false;
  }

 private:
  struct Frame {
    JsonValue value;
    std::unordered_map<std::string, std::size_t> index;
    std::string pending_key;
    bool is_object;
  };
  bool put(JsonValue v) {
    if (stack_.empty()) {
      root = std::move(v);
      return true;
    }
    Frame& f = stack_.back();
    if (!f.is_object) {
      f.value.as_array().push_back(std::move(v));
      return true;
    }
    auto& obj = f.value.as_object();
    auto it = f.index.find(f.pending_key);
    if (it != f.index.end()) {
      obj[it->second].second = std::move(v);
    } else {
      f.index.emplace(f.pending_key, obj.size());
      obj.emplace_back(std::move(f.pending_key), std::move(v));
    }
    return true;
  }
  bool close() {
    JsonValue v = std::move(stack_.back().value);
    stack_.pop_back();
    return put(std::move(v));
  }
  std::vector<Frame> stack_;
};

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
    case JsonValue::Type::Float: out += detail::python_float_repr(v.as_double()); return;
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
  Builder builder;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text, &builder);
  } catch (const nlohmann::json::exception& e) {
    throw SerializationError(std::string("invalid JSON: ") + e.what());
  }
  if (!ok) throw SerializationError(builder.error.empty() ? "invalid JSON" : builder.error);
  return std::move(builder.root);
}

std::string JsonValue::dump(int indent, bool sort_keys) const {
  std::string out;
  dump_into(*this, out, indent, sort_keys, 0);
  return out;
}

}  // namespace peft
