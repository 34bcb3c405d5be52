// Python semantics of the Jinja value model: str()/repr(), truthiness, ==, ordering, json.dumps.

#include "value.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include <utf8proc.h>

#include "peft/detail/float_repr.hpp"
#include "../detail/unicode.hpp"

namespace peft::text::detail {

Value Value::from_json(const JsonValue& j) {
  switch (j.type()) {
    case JsonValue::Type::Null: return none();
    case JsonValue::Type::Bool: return boolean(j.as_bool());
    case JsonValue::Type::Int: return integer(j.as_int());
    case JsonValue::Type::Float: return floating(j.as_double());
    case JsonValue::Type::String: return string(j.as_string());
    case JsonValue::Type::Array: {
      ValueList items;
      for (const auto& e : j.as_array()) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case JsonValue::Type::Object: {
      ValueDict entries;
      for (const auto& kv : j.as_object()) entries.emplace_back(kv.first, from_json(kv.second));
      return dict(std::move(entries));
    }
  }
  return none();
}

const Value* Value::find(const std::string& key) const {
  if (!is_mapping()) return nullptr;
  for (const auto& kv : *dict_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool:
    case Kind::Int: return int_ != 0;
    case Kind::Float: return float_ != 0.0;
    case Kind::String: return !str_.empty();
    case Kind::List:
    case Kind::Tuple: return !list_->empty();
    case Kind::Dict: return !dict_->empty();
    case Kind::Namespace:
    case Kind::Callable: return true;
  }
  return false;
}

std::string python_float_str(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  return peft::detail::python_float_repr(d);
}

namespace {

// Python's str.isprintable(): not the Other (C*) and Separator (Z*) categories, except ' '.
bool printable(char32_t c) {
  if (c == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return false;
    default: return true;
  }
}

void append_repr_string(std::string& out, const std::string& s) {
  // Python picks double quotes only for text with a single quote and no double quote.
  const char32_t quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  out += static_cast<char>(quote);
  for (const char32_t c : to_code_points(s)) {
    if (c == '\\' || c == quote) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!printable(c)) {
      char buf[16];
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    } else {
      append_utf8(out, c);
    }
  }
  out += static_cast<char>(quote);
}

void append_repr(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::String: append_repr_string(out, v.as_string()); return;
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const bool tuple = v.kind() == Value::Kind::Tuple;
      const bool view = !tuple && !v.as_string().empty();  // dict.items()/keys()/values()
      if (view) out += v.as_string() + "(";
      out += tuple ? '(' : '[';
      const auto& items = v.items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, items[i]);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      if (view) out += ')';
      return;
    }
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
      if (v.kind() == Value::Kind::Namespace) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (const auto& kv : v.entries()) {
        if (!first) out += ", ";
        first = false;
        append_repr_string(out, kv.first);
        out += ": ";
        append_repr(out, kv.second);
      }
      out += '}';
      if (v.kind() == Value::Kind::Namespace) out += '>';
      return;
    }
    default: out += v.str(); return;
  }
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return int_ ? "True" : "False";
    case Kind::Int: return std::to_string(int_);
    case Kind::Float: return python_float_str(float_);
    case Kind::String: return str_;
    case Kind::Callable: return "<function " + str_ + ">";
    default: {
      std::string out;
      append_repr(out, *this);
      return out;
    }
  }
}

std::string Value::repr() const {
  if (kind_ == Kind::Undefined) return "Undefined";
  std::string out;
  append_repr(out, *this);
  return out;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Callable: return "function";
  }
  return "object";
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::Float || b.kind() == Value::Kind::Float) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.as_string() == b.as_string();
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i)
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case Value::Kind::Dict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& kv : a.entries()) {
        const Value* other = b.find(kv.first);
        if (!other || !values_equal(kv.second, *other)) return false;
      }
      return true;
    }
    case Value::Kind::Namespace: return &a.namespace_entries() == &b.namespace_entries();
    case Value::Kind::Callable: return &a.function() == &b.function();
    default: return false;
  }
}

int compare_values(const Value& a, const Value& b, bool& ok) {
  ok = true;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::Float || b.kind() == Value::Kind::Float) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string()) < 0 ? -1 : (a.as_string() == b.as_string() ? 0 : 1);
  if (a.is_sequence() && a.kind() == b.kind()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i])) continue;
      return compare_values(x[i], y[i], ok);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  ok = false;
  return 0;
}

namespace {

void append_json_string(std::string& out, const std::string& s) {
  // ensure_ascii=False: UTF-8 passes through; only '"', '\\' and control characters are escaped.
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

struct JsonWriter {
  std::string indent_unit;  // meaningful when indented
  bool indented;
  std::string item_sep, key_sep;
  bool sort_keys;
  std::string out;

  void newline(int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) out += indent_unit;
  }
  void write(const Value& v, int level) {
    switch (v.kind()) {
      case Value::Kind::None: out += "null"; return;
      case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
      case Value::Kind::Int: out += std::to_string(v.as_int()); return;
      case Value::Kind::Float: {
        const double d = v.as_double();
        if (std::isnan(d)) out += "NaN";
        else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
        else out += python_float_str(d);
        return;
      }
      case Value::Kind::String: append_json_string(out, v.as_string()); return;
      case Value::Kind::List:
      case Value::Kind::Tuple: {
        if (v.items().empty()) {
          out += "[]";
          return;
        }
        out += '[';
        bool first = true;
        for (const auto& item : v.items()) {
          if (!first) out += item_sep;
          first = false;
          if (indented) newline(level + 1);
          write(item, level + 1);
        }
        if (indented) newline(level);
        out += ']';
        return;
      }
      case Value::Kind::Dict: {
        if (v.entries().empty()) {
          out += "{}";
          return;
        }
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& kv : v.entries()) entries.push_back(&kv);
        if (sort_keys)
          std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        bool first = true;
        for (const auto* kv : entries) {
          if (!first) out += item_sep;
          first = false;
          if (indented) newline(level + 1);
          append_json_string(out, kv->first);
          out += key_sep;
          write(kv->second, level + 1);
        }
        if (indented) newline(level);
        out += '}';
        return;
      }
      default:
        throw std::invalid_argument("Object of type " + v.type_name() + " is not JSON serializable");
    }
  }
};

}  // namespace

std::string to_json(const Value& v, int indent, const std::string& indent_text, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys) {
  JsonWriter w;
  w.indented = indent >= 0 || !indent_text.empty();
  w.indent_unit = indent_text.empty() ? std::string(static_cast<std::size_t>(std::max(indent, 0)), ' ') : indent_text;
  w.item_sep = item_sep;
  w.key_sep = key_sep;
  w.sort_keys = sort_keys;
  w.write(v, 0);
  return w.out;
}

std::vector<char32_t> to_code_points(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + static_cast<std::size_t>(n) > s.size()) n = 1;
    char32_t cp = n == 1 ? c : (c & (0x7f >> n));
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    out.push_back(cp);
    i += static_cast<std::size_t>(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) { utf8_append(out, static_cast<uint32_t>(cp)); }

std::string from_code_points(const std::vector<char32_t>& cps, std::size_t begin, std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end && i < cps.size(); ++i) append_utf8(out, cps[i]);
  return out;
}

}  // namespace peft::text::detail
