// The Python methods templates call on values: str (strip, split, startswith, format, ...),
// dict (items, keys, values, get) and list (index, count). Methods that modify a list or dict
// fail, as transformers' ImmutableSandboxedEnvironment raises SecurityError for them.

#include <set>

#include "builtins.hpp"
#include "str_ops.hpp"

namespace peft::text::detail {
namespace {

const std::set<std::string>& str_methods() {
  static const std::set<std::string> m = {"strip", "lstrip", "rstrip", "split", "splitlines", "startswith", "endswith",
                                          "upper", "lower", "title", "capitalize", "replace", "find", "count", "join",
                                          "format", "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower"};
  return m;
}
const std::set<std::string>& dict_methods() {
  static const std::set<std::string> m = {"items", "keys", "values", "get"};
  return m;
}
const std::set<std::string>& list_methods() {
  static const std::set<std::string> m = {"index", "count"};
  return m;
}
const std::set<std::string>& mutating_methods() {
  static const std::set<std::string> m = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
                                          "update", "setdefault", "popitem"};
  return m;
}

std::optional<std::string> optional_str(const Value& v) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  return v.str();
}

Value string_list(const std::vector<std::string>& parts) {
  ValueList out;
  for (const auto& p : parts) out.push_back(Value::string(p));
  return Value::list(std::move(out));
}

// str.startswith/endswith with a string or a tuple of strings.
bool affix(const std::string& s, const Value& what, bool prefix) {
  if (what.is_sequence()) {
    for (const auto& w : what.items())
      if (affix(s, w, prefix)) return true;
    return false;
  }
  const std::string& w = what.as_string();
  if (w.size() > s.size()) return false;
  return prefix ? s.compare(0, w.size(), w) == 0 : s.compare(s.size() - w.size(), w.size(), w) == 0;
}

template <class Pred>
bool all_chars(const std::string& s, Pred p) {
  const auto cps = to_code_points(s);
  if (cps.empty()) return false;
  for (char32_t c : cps)
    if (!p(c)) return false;
  return true;
}

// str.format with `{}`, `{0}` and `{name}` fields (no conversions or format specs).
Value format(Evaluator& ev, const std::string& s, const CallArgs& a) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if ((c == '{' || c == '}') && i + 1 < s.size() && s[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    const std::size_t close = s.find('}', i);
    if (close == std::string::npos) ev.fail(a.line, "str.format", s, "Single '{' encountered in format string");
    const std::string field = s.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos)
      ev.fail(a.line, "str.format", field, "format specs and conversions are not supported");
    Value v;
    if (field.empty()) v = argument(a, auto_index++, nullptr);
    else if (field.find_first_not_of("0123456789") == std::string::npos) v = argument(a, std::stoul(field), nullptr);
    else v = argument(a, 1u << 30, field.c_str());
    if (v.is_undefined()) ev.fail(a.line, "str.format", field, "no argument for this replacement field");
    out += v.str();
    i = close;
  }
  return Value::string(out);
}

Value str_method(Evaluator& ev, const std::string& s, const std::string& name, const CallArgs& a) {
  const Value a0 = argument(a, 0, nullptr);
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return Value::string(py_strip(s, optional_str(argument(a, 0, "chars")), name != "rstrip", name != "lstrip"));
  if (name == "split") {
    const Value maxsplit = argument(a, 1, "maxsplit", Value::integer(-1));
    const auto sep = optional_str(argument(a, 0, "sep"));
    if (sep && sep->empty()) ev.fail(a.line, "str.split", "''", "empty separator");
    return string_list(py_split(s, sep, static_cast<long>(maxsplit.as_int())));
  }
  if (name == "splitlines") return string_list(py_splitlines(s));
  if (name == "startswith" || name == "endswith") {
    if (!a0.is_string() && !a0.is_sequence())
      ev.fail(a.line, "str." + name, a0.repr(), name + " first arg must be str or a tuple of str");
    return Value::boolean(affix(s, a0, name == "startswith"));
  }
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "title") return Value::string(py_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace") {
    const Value count = argument(a, 2, "count", Value::integer(-1));
    return Value::string(py_replace(s, a0.str(), argument(a, 1, nullptr).str(), static_cast<long>(count.as_int())));
  }
  if (name == "find") {
    const std::size_t pos = s.find(a0.str());
    return Value::integer(pos == std::string::npos ? -1 : static_cast<std::int64_t>(py_len(s.substr(0, pos))));
  }
  if (name == "count") {
    const std::string needle = a0.str();
    if (needle.empty()) return Value::integer(static_cast<std::int64_t>(py_len(s) + 1));
    std::int64_t n = 0;
    for (std::size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + needle.size())) ++n;
    return Value::integer(n);
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const auto& item : ev.iterate(a0, a.line)) {
      if (!item.is_string()) ev.fail(a.line, "str.join", item.repr(), "sequence item: expected str instance, " + item.type_name() + " found");
      if (!first) out += s;
      first = false;
      out += item.as_string();
    }
    return Value::string(out);
  }
  if (name == "format") return format(ev, s, a);
  if (name == "isdigit") return Value::boolean(all_chars(s, [](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isspace") return Value::boolean(all_chars(s, is_py_space));
  if (name == "isalpha" || name == "isalnum") {
    const bool alnum = name == "isalnum";
    return Value::boolean(all_chars(s, [&](char32_t c) {
      const std::string one = from_code_points({c}, 0, 1);
      return py_upper(one) != py_lower(one) || (alnum && c >= '0' && c <= '9');
    }));
  }
  // isupper / islower: some cased character and no character of the other case.
  const std::string other = name == "isupper" ? py_upper(s) : py_lower(s);
  return Value::boolean(other == s && py_upper(s) != py_lower(s));
}

}  // namespace

bool has_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return str_methods().count(name) > 0;
  if (obj.kind() == Value::Kind::Dict) return dict_methods().count(name) > 0 || mutating_methods().count(name) > 0;
  if (obj.is_sequence()) return list_methods().count(name) > 0 || mutating_methods().count(name) > 0;
  return false;
}

Value call_method(Evaluator& ev, const Value& obj, const std::string& name, const CallArgs& a) {
  if (mutating_methods().count(name))
    ev.fail(a.line, "method", obj.type_name() + "." + name,
            "modifying a " + obj.type_name() + " is not allowed (transformers renders in an ImmutableSandboxedEnvironment)",
            "build a new value, or use namespace() for state");
  if (obj.is_string()) return str_method(ev, obj.as_string(), name, a);
  if (obj.kind() == Value::Kind::Dict) {
    if (name == "get") {
      const Value key = argument(a, 0, nullptr);
      const Value* v = key.is_string() ? obj.find(key.as_string()) : nullptr;
      return v ? *v : argument(a, 1, nullptr, Value::none());
    }
    ValueList out;
    for (const auto& kv : obj.entries()) {
      if (name == "items") out.push_back(Value::tuple({Value::string(kv.first), kv.second}));
      else if (name == "keys") out.push_back(Value::string(kv.first));
      else out.push_back(kv.second);
    }
    return Value::dict_view(std::move(out), "dict_" + name);
  }
  const Value x = argument(a, 0, nullptr);
  std::int64_t count = 0;
  for (std::size_t i = 0; i < obj.items().size(); ++i) {
    if (!values_equal(obj.items()[i], x)) continue;
    if (name == "index") return Value::integer(static_cast<std::int64_t>(i));
    ++count;
  }
  if (name == "index") ev.fail(a.line, "list.index", x.repr(), "is not in list");
  return Value::integer(count);
}

}  // namespace peft::text::detail
