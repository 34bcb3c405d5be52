#pragma once
// The value model of the Jinja interpreter behind peft::text::ChatTemplate: Python's objects as
// jinja2 sees them (None, bool, int, float, str, list, tuple, dict, namespace, callables) plus
// jinja2's default Undefined. Printing, truthiness, equality and ordering follow Python.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/format/json_value.hpp"

namespace peft::text::detail {

class Value;
using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict

/// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  int line = 0;
};
using Function = std::function<Value(const CallArgs&)>;

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Tuple, Dict, Namespace, Callable };

  Value() = default;  // Undefined
  static Value undefined(std::string name = "") {
    Value v;
    v.str_ = std::move(name);
    return v;
  }
  static Value none() { return with_kind(Kind::None); }
  static Value boolean(bool b) {
    Value v = with_kind(Kind::Bool);
    v.int_ = b ? 1 : 0;
    return v;
  }
  static Value integer(std::int64_t i) {
    Value v = with_kind(Kind::Int);
    v.int_ = i;
    return v;
  }
  static Value floating(double d) {
    Value v = with_kind(Kind::Float);
    v.float_ = d;
    return v;
  }
  static Value string(std::string s) {
    Value v = with_kind(Kind::String);
    v.str_ = std::move(s);
    return v;
  }
  static Value list(ValueList items, Kind kind = Kind::List) {
    Value v = with_kind(kind);
    v.list_ = std::make_shared<const ValueList>(std::move(items));
    return v;
  }
  static Value tuple(ValueList items) { return list(std::move(items), Kind::Tuple); }
  /// A list that prints as a dict view does: `dict_items([('a', 1)])` (`view` = "dict_items").
  static Value dict_view(ValueList items, std::string view) {
    Value v = list(std::move(items));
    v.str_ = std::move(view);
    return v;
  }
  static Value dict(ValueDict items) {
    Value v = with_kind(Kind::Dict);
    v.dict_ = std::make_shared<ValueDict>(std::move(items));
    return v;
  }
  /// A namespace() object: the one mutable value (`{% set ns.x = ... %}`), shared by copies.
  static Value namespace_object(ValueDict items) {
    Value v = dict(std::move(items));
    v.kind_ = Kind::Namespace;
    return v;
  }
  static Value callable(Function f, std::string name) {
    Value v = with_kind(Kind::Callable);
    v.fn_ = std::make_shared<const Function>(std::move(f));
    v.str_ = std::move(name);
    return v;
  }
  static Value from_json(const JsonValue& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  /// int, float or bool (Python's bool is an int).
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple; }
  bool is_mapping() const { return kind_ == Kind::Dict || kind_ == Kind::Namespace; }

  bool as_bool() const { return int_ != 0; }
  std::int64_t as_int() const { return int_; }  // Int or Bool
  double as_double() const { return kind_ == Kind::Float ? float_ : static_cast<double>(int_); }
  /// String text, an Undefined's variable name, a Callable's name or a dict view's type name.
  const std::string& as_string() const { return str_; }
  const ValueList& items() const { return *list_; }
  const ValueDict& entries() const { return *dict_; }
  ValueDict& namespace_entries() const { return *dict_; }
  const Function& function() const { return *fn_; }

  /// Mapping lookup; nullptr when absent.
  const Value* find(const std::string& key) const;

  /// Python's truthiness (empty containers, 0, "", None and Undefined are false).
  bool truthy() const;
  /// Python's str(): None, True, 1.5, [1, 'a'], {'k': 'v'}; Undefined prints nothing.
  std::string str() const;
  /// Python's repr() (strings quoted as Python quotes them).
  std::string repr() const;
  /// The Python type name, for error messages ("str", "int", "list", ...).
  std::string type_name() const;

 private:
  static Value with_kind(Kind k) {
    Value v;
    v.kind_ = k;
    return v;
  }
  Kind kind_ = Kind::Undefined;
  std::int64_t int_ = 0;
  double float_ = 0.0;
  std::string str_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const Function> fn_;
};

/// Python's ==: 1 == 1.0 == True, containers element-wise; values of different types differ.
bool values_equal(const Value& a, const Value& b);
/// Python's ordering (<0, 0, >0) of numbers, strings (by code point = by UTF-8 byte) and
/// sequences; `ok` turns false where Python raises TypeError.
int compare_values(const Value& a, const Value& b, bool& ok);
/// Python's str(float): shortest round-trip digits, 'inf', 'nan'.
std::string python_float_str(double d);
/// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=...) as transformers'
/// tojson filter calls it. indent < 0 = None; `indent_text` overrides indent when non-empty.
/// Throws std::invalid_argument for values JSON cannot hold (Undefined, callables).
std::string to_json(const Value& v, int indent, const std::string& indent_text, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys);

/// UTF-8 <-> code points (strings index, slice and count by code point, as Python's str does).
std::vector<char32_t> to_code_points(const std::string& s);
std::string from_code_points(const std::vector<char32_t>& cps, std::size_t begin, std::size_t end);
void append_utf8(std::string& out, char32_t cp);

}  // namespace peft::text::detail
