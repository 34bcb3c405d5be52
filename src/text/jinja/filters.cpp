// jinja2's built-in filters as jinja2 3.1 defines them, with transformers' tojson override
// (json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False): no HTML
// escaping, unlike jinja2's own tojson).

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "builtins.hpp"
#include "str_ops.hpp"

namespace peft::text::detail {

Value argument(const CallArgs& args, std::size_t index, const char* keyword, Value fallback) {
  if (index < args.positional.size()) return args.positional[index];
  if (keyword)
    for (const auto& kv : args.keyword)
      if (kv.first == keyword) return kv.second;
  return fallback;
}

namespace {

std::optional<std::string> optional_str(const Value& v) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  return v.str();
}

// environment.getattr over a dotted path ("a.b", "0"), as selectattr/map/join(attribute=) do.
Value attribute_path(Evaluator& ev, Value v, const std::string& path, int line) {
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = digits ? ev.get_item(v, Value::integer(std::atoll(part.c_str())), line) : ev.get_attr(v, part, line);
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

Value tojson(Evaluator& ev, const Value& v, const CallArgs& a) {
  const Value indent = argument(a, 0, "indent");
  const Value separators = argument(a, 1, "separators");
  const bool sort_keys = argument(a, 2, "sort_keys", Value::boolean(false)).truthy();
  if (argument(a, 3, "ensure_ascii", Value::boolean(false)).truthy())
    ev.fail(a.line, "filter", "tojson(ensure_ascii=True)", "ensure_ascii=True is not supported");
  const bool indented = !indent.is_undefined() && !indent.is_none();
  std::string item_sep = indented ? "," : ", ", key_sep = ": ";
  if (separators.is_sequence() && separators.items().size() == 2) {
    item_sep = separators.items()[0].str();
    key_sep = separators.items()[1].str();
  }
  try {
    return Value::string(to_json(v, indented && !indent.is_string() ? static_cast<int>(indent.as_int()) : -1,
                                 indent.is_string() ? indent.as_string() : "", item_sep, key_sep, sort_keys));
  } catch (const std::invalid_argument& e) {
    ev.fail(a.line, "filter", "tojson", e.what());
  }
}

Value indent_filter(const Value& v, const CallArgs& a) {
  const Value width = argument(a, 0, "width", Value::integer(4));
  const bool first = argument(a, 1, "first", Value::boolean(false)).truthy();
  const bool blank = argument(a, 2, "blank", Value::boolean(false)).truthy();
  const std::string ind = width.is_string() ? width.as_string() : std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, width.as_int())), ' ');
  // jinja2 appends "\n" before splitlines(), so a trailing newline does not add an indented line.
  const auto lines = py_splitlines(v.str() + "\n");
  std::string rv;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i) rv += "\n";
    if (i && (blank || !lines[i].empty())) rv += ind;
    rv += lines[i];
  }
  return Value::string(first ? ind + rv : rv);
}

Value to_int(const Value& v, const CallArgs& a) {
  const Value dflt = argument(a, 0, "default", Value::integer(0));
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.kind() == Value::Kind::Float) return std::isfinite(v.as_double()) ? Value::integer(static_cast<std::int64_t>(v.as_double())) : dflt;
  if (!v.is_string()) return dflt;
  const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
  char* end = nullptr;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && end == s.c_str() + s.size()) return Value::integer(i);
  if (s.find_first_of("xXpP") != std::string::npos) return dflt;  // strtod reads hex floats, Python does not
  const double d = std::strtod(s.c_str(), &end);  // jinja2 falls back to int(float(s))
  if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return Value::integer(static_cast<std::int64_t>(d));
  return dflt;
}

Value to_float(const Value& v, const CallArgs& a) {
  const Value dflt = argument(a, 0, "default", Value::floating(0.0));
  if (v.is_number()) return Value::floating(v.as_double());
  if (!v.is_string()) return dflt;
  const std::string s = py_strip(v.as_string(), std::nullopt, true, true);
  if (s.find_first_of("xXpP") != std::string::npos) return dflt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() ? Value::floating(d) : dflt;
}

Value select_items(Evaluator& ev, const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  const std::size_t first = by_attr ? 1 : 0;
  const std::string attr = by_attr ? argument(a, 0, nullptr).str() : "";
  const Value test = argument(a, first, nullptr);
  CallArgs test_args;
  test_args.line = a.line;
  for (std::size_t i = first + 1; i < a.positional.size(); ++i) test_args.positional.push_back(a.positional[i]);
  ValueList out;
  for (const auto& item : ev.iterate(seq, a.line)) {
    const Value x = by_attr ? attribute_path(ev, item, attr, a.line) : item;
    const bool ok = test.is_undefined() ? x.truthy() : apply_test(ev, test.str(), x, test_args);
    if (ok == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value map_filter(Evaluator& ev, const Value& seq, const CallArgs& a) {
  ValueList out;
  const Value attr = argument(a, 99, "attribute");
  if (!attr.is_undefined()) {
    const Value dflt = argument(a, 99, "default");
    for (const auto& item : ev.iterate(seq, a.line)) {
      Value x = attribute_path(ev, item, attr.str(), a.line);
      out.push_back(x.is_undefined() && !dflt.is_undefined() ? dflt : x);
    }
    return Value::list(std::move(out));
  }
  if (a.positional.empty()) ev.fail(a.line, "filter", "map", "map() needs a filter name or attribute=");
  CallArgs rest;
  rest.line = a.line;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const auto& item : ev.iterate(seq, a.line)) out.push_back(apply_filter(ev, a.positional[0].str(), item, rest));
  return Value::list(std::move(out));
}

// sort / dictsort / min / max: Python's ordering, strings compared lower-cased unless
// case_sensitive; incomparable items (e.g. str and int) fail as Python's TypeError does.
Value sort_key(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? Value::string(py_lower(v.as_string())) : v;
}

std::vector<Value> sorted(Evaluator& ev, std::vector<Value> items, const std::vector<Value>& keys, bool reverse, int line) {
  std::vector<std::size_t> order(items.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  bool ok = true;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    bool fine = true;
    const int c = compare_values(keys[x], keys[y], fine);
    ok = ok && fine;
    return reverse ? c > 0 : c < 0;
  });
  if (!ok) ev.fail(line, "filter", "sort", "'<' not supported between the items' types");
  std::vector<Value> out;
  for (std::size_t i : order) out.push_back(items[i]);
  return out;
}

Value sort_filter(Evaluator& ev, const std::string& name, const Value& v, const CallArgs& a) {
  const int line = a.line;
  if (name == "dictsort") {
    if (!v.is_mapping()) ev.fail(line, "filter", "dictsort", "can only sort a mapping, not " + v.type_name());
    const bool cs = argument(a, 0, "case_sensitive", Value::boolean(false)).truthy();
    const std::string by = argument(a, 1, "by", Value::string("key")).str();
    std::vector<Value> pairs, keys;
    for (const auto& kv : v.entries()) {
      pairs.push_back(Value::tuple({Value::string(kv.first), kv.second}));
      keys.push_back(sort_key(by == "value" ? kv.second : Value::string(kv.first), cs));
    }
    return Value::list(sorted(ev, pairs, keys, argument(a, 2, "reverse", Value::boolean(false)).truthy(), line));
  }
  const bool is_sort = name == "sort";
  const bool reverse = is_sort && argument(a, 0, "reverse", Value::boolean(false)).truthy();
  const bool cs = argument(a, is_sort ? 1 : 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = argument(a, is_sort ? 2 : 1, "attribute");
  std::vector<Value> items = ev.iterate(v, line), keys;
  for (const auto& item : items) keys.push_back(sort_key(attr.is_undefined() ? item : attribute_path(ev, item, attr.str(), line), cs));
  std::vector<Value> out = sorted(ev, items, keys, reverse || name == "max", line);
  if (is_sort) return Value::list(std::move(out));
  return out.empty() ? Value::undefined(name) : out.front();
}

std::string unique_key(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? py_lower(v.as_string()) : v.repr();
}

}  // namespace

Value apply_filter(Evaluator& ev, const std::string& name, const Value& v, const CallArgs& a) {
  const int line = a.line;
  if (name == "tojson") return tojson(ev, v, a);
  if (name == "trim") return Value::string(py_strip(v.str(), optional_str(argument(a, 0, "chars")), true, true));
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::integer(static_cast<std::int64_t>(py_len(v.as_string())));
    if (v.is_sequence()) return Value::integer(static_cast<std::int64_t>(v.items().size()));
    if (v.is_mapping()) return Value::integer(static_cast<std::int64_t>(v.entries().size()));
    if (v.is_undefined()) return Value::integer(0);
    ev.fail(line, "filter", name, "object of type '" + v.type_name() + "' has no len()");
  }
  if (name == "upper") return Value::string(py_upper(v.str()));
  if (name == "lower") return Value::string(py_lower(v.str()));
  if (name == "capitalize") return Value::string(py_capitalize(v.str()));
  if (name == "title") {
    // jinja2's title: split on runs of '-', whitespace, '(', '{', '[', '<'; capitalise each piece.
    const auto cps = to_code_points(v.str());
    std::string out;
    bool word_start = true;
    for (char32_t c : cps) {
      const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c);
      const std::string one = from_code_points({c}, 0, 1);
      out += sep ? one : (word_start ? py_upper(one) : py_lower(one));
      word_start = sep;
    }
    return Value::string(out);
  }
  if (name == "string") return Value::string(v.str());
  if (name == "safe") return v;
  if (name == "escape" || name == "e") {
    std::string out;
    for (char c : v.str()) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return Value::string(out);
  }
  if (name == "default" || name == "d") {
    const bool boolean = argument(a, 1, "boolean", Value::boolean(false)).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return argument(a, 0, "default_value", Value::string(""));
    return v;
  }
  if (name == "first" || name == "last") {
    const auto items = ev.iterate(v, line);
    if (items.empty()) return Value::undefined("first");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    const std::string sep = argument(a, 0, "d", Value::string("")).str();
    const Value attr = argument(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& item : ev.iterate(v, line)) {
      if (!first) out += sep;
      first = false;
      out += (attr.is_undefined() ? item : attribute_path(ev, item, attr.str(), line)).str();
    }
    return Value::string(out);
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list({});
    if (!v.is_mapping()) ev.fail(line, "filter", "items", "can only get item pairs from a mapping, not " + v.type_name());
    ValueList out;
    for (const auto& kv : v.entries()) out.push_back(Value::tuple({Value::string(kv.first), kv.second}));
    return Value::list(std::move(out));
  }
  if (name == "list") return Value::list(ev.iterate(v, line));
  if (name == "reverse") {
    if (v.is_string()) {
      auto cps = to_code_points(v.as_string());
      std::reverse(cps.begin(), cps.end());
      return Value::string(from_code_points(cps, 0, cps.size()));
    }
    auto items = ev.iterate(v, line);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "replace") {
    const Value count = argument(a, 2, "count");
    return Value::string(py_replace(v.str(), argument(a, 0, "old").str(), argument(a, 1, "new").str(),
                                    count.is_int() ? static_cast<long>(count.as_int()) : -1));
  }
  if (name == "int") return to_int(v, a);
  if (name == "float") return to_float(v, a);
  if (name == "abs") {
    if (!v.is_number()) ev.fail(line, "filter", "abs", "bad operand type for abs(): '" + v.type_name() + "'");
    return v.kind() == Value::Kind::Float ? Value::floating(std::fabs(v.as_double())) : Value::integer(std::llabs(v.as_int()));
  }
  if (name == "indent") return indent_filter(v, a);
  if (name == "selectattr" || name == "rejectattr") return select_items(ev, v, a, true, name == "selectattr");
  if (name == "select" || name == "reject") return select_items(ev, v, a, false, name == "select");
  if (name == "map") return map_filter(ev, v, a);
  if (name == "attr") return ev.get_attr(v, argument(a, 0, "name").str(), line);
  if (name == "unique") {
    const bool cs = argument(a, 0, "case_sensitive", Value::boolean(false)).truthy();
    const Value attr = argument(a, 1, "attribute");
    std::vector<std::string> seen;
    ValueList out;
    for (const auto& item : ev.iterate(v, line)) {
      const std::string key = unique_key(attr.is_undefined() ? item : attribute_path(ev, item, attr.str(), line), cs);
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
      seen.push_back(key);
      out.push_back(item);
    }
    return Value::list(std::move(out));
  }
  if (name == "sort" || name == "dictsort" || name == "min" || name == "max") return sort_filter(ev, name, v, a);
  if (name == "sum") {
    const Value attr = argument(a, 0, "attribute");
    Value total = argument(a, 1, "start", Value::integer(0));
    for (const auto& item : ev.iterate(v, line)) {
      std::string error;
      total = arithmetic("+", total, attr.is_undefined() ? item : attribute_path(ev, item, attr.str(), line), error);
      if (!error.empty()) ev.fail(line, "filter", "sum", error);
    }
    return total;
  }
  ev.fail(line, "filter", "'" + name + "'", "unknown filter",
          "peft's chat-template interpreter implements the filters listed in docs/chat_templates.md");
}

bool apply_test(Evaluator& ev, const std::string& name, const Value& v, const CallArgs& a) {
  const Value arg = argument(a, 0, nullptr);
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind() == Value::Kind::Dict;
  if (name == "iterable") return v.is_sequence() || v.is_string() || v.kind() == Value::Kind::Dict || v.is_undefined();
  if (name == "sequence") return v.is_sequence() || v.is_string() || v.kind() == Value::Kind::Dict || v.is_undefined();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.kind() == Value::Kind::Float;
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "callable") return v.kind() == Value::Kind::Callable;
  if (name == "equalto" || name == "eq" || name == "==") return values_equal(v, arg);
  if (name == "ne" || name == "!=") return !values_equal(v, arg);
  if (name == "sameas") return v.kind() == arg.kind() && values_equal(v, arg);
  if (name == "lt" || name == "<" || name == "le" || name == "<=" || name == "gt" || name == ">" || name == "ge" ||
      name == ">=") {
    bool ok = true;
    const int c = compare_values(v, arg, ok);
    if (!ok) ev.fail(a.line, "test", name, "'" + name + "' not supported between '" + v.type_name() + "' and '" + arg.type_name() + "'");
    if (name == "lt" || name == "<") return c < 0;
    if (name == "le" || name == "<=") return c <= 0;
    if (name == "gt" || name == ">") return c > 0;
    return c >= 0;
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool()) ev.fail(a.line, "test", name, "needs an integer, not " + v.type_name());
    if (name == "divisibleby") {
      if (arg.as_int() == 0) ev.fail(a.line, "test", "divisibleby 0", "integer division or modulo by zero");
      return v.as_int() % arg.as_int() == 0;
    }
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "lower") return v.is_string() && py_lower(v.as_string()) == v.as_string() && py_upper(v.as_string()) != v.as_string();
  if (name == "upper") return v.is_string() && py_upper(v.as_string()) == v.as_string() && py_lower(v.as_string()) != v.as_string();
  if (name == "in") {
    if (arg.is_string()) {
      if (!v.is_string()) ev.fail(a.line, "operator in", v.repr(), "'in <string>' requires string as left operand, not " + v.type_name());
      return arg.as_string().find(v.as_string()) != std::string::npos;
    }
    if (arg.is_mapping()) return v.is_string() && arg.find(v.as_string()) != nullptr;
    if (arg.is_sequence()) {
      for (const auto& item : arg.items())
        if (values_equal(item, v)) return true;
      return false;
    }
    if (arg.is_undefined()) return false;
    ev.fail(a.line, "operator in", arg.repr(), "argument of type '" + arg.type_name() + "' is not iterable");
  }
  ev.fail(a.line, "test", "'" + name + "'", "unknown test",
          "peft's chat-template interpreter implements the tests listed in docs/chat_templates.md");
}

}  // namespace peft::text::detail
