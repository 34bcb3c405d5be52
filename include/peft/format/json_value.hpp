#pragma once
/// A small JSON value for the parts of a config PEFT treats as free-form dicts (megatron_config,
/// variant sub-configs, auto_mapping, unknown keys of a newer PEFT). Objects keep insertion order.
/// Parsing and Python-compatible printing live in src/format/json_value.cpp; no parser type leaks here.

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace peft {

class JsonValue {
 public:
  enum class Type { Null, Bool, Int, Float, String, Array, Object };
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;  // insertion order kept

  JsonValue() = default;
  JsonValue(std::nullptr_t) {}
  JsonValue(bool b) : v_(b) {}
  JsonValue(int i) : v_(static_cast<std::int64_t>(i)) {}
  JsonValue(std::int64_t i) : v_(i) {}
  JsonValue(double d) : v_(d) {}
  JsonValue(const char* s) : v_(std::string(s)) {}
  JsonValue(std::string s) : v_(std::move(s)) {}
  JsonValue(Array a) : v_(std::move(a)) {}
  JsonValue(Object o) : v_(std::move(o)) {}

  static JsonValue array() { return JsonValue(Array{}); }
  static JsonValue object() { return JsonValue(Object{}); }

  Type type() const noexcept { return static_cast<Type>(v_.index()); }
  bool is_null() const noexcept { return type() == Type::Null; }
  bool is_bool() const noexcept { return type() == Type::Bool; }
  bool is_int() const noexcept { return type() == Type::Int; }
  bool is_float() const noexcept { return type() == Type::Float; }
  bool is_number() const noexcept { return is_int() || is_float(); }
  bool is_string() const noexcept { return type() == Type::String; }
  bool is_array() const noexcept { return type() == Type::Array; }
  bool is_object() const noexcept { return type() == Type::Object; }

  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  /// Int or Float as a double.
  double as_double() const {
    return is_int() ? static_cast<double>(std::get<std::int64_t>(v_)) : std::get<double>(v_);
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Array& as_array() const { return std::get<Array>(v_); }
  Array& as_array() { return std::get<Array>(v_); }
  const Object& as_object() const { return std::get<Object>(v_); }
  Object& as_object() { return std::get<Object>(v_); }

  /// Object lookup; nullptr when absent (or when this is not an object).
  const JsonValue* find(const std::string& key) const {
    if (!is_object()) return nullptr;
    for (const auto& kv : as_object())
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  /// Object insert-or-assign (keeps the position of an existing key).
  void set(const std::string& key, JsonValue value) {
    if (is_null()) v_ = Object{};
    for (auto& kv : as_object())
      if (kv.first == key) {
        kv.second = std::move(value);
        return;
      }
    as_object().emplace_back(key, std::move(value));
  }
  bool erase(const std::string& key) {
    if (!is_object()) return false;
    auto& o = as_object();
    for (auto it = o.begin(); it != o.end(); ++it)
      if (it->first == key) {
        o.erase(it);
        return true;
      }
    return false;
  }

  /// Structural equality; Int 2 and Float 2.0 compare equal (as Python's == does).
  friend bool operator==(const JsonValue& a, const JsonValue& b) {
    if (a.is_number() && b.is_number()) {
      if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
      return a.as_double() == b.as_double();
    }
    if (a.type() != b.type()) return false;
    switch (a.type()) {
      case Type::Null: return true;
      case Type::Bool: return a.as_bool() == b.as_bool();
      case Type::String: return a.as_string() == b.as_string();
      case Type::Array: return a.as_array() == b.as_array();
      case Type::Object: {
        // Key order is not part of a JSON object's meaning.
        if (a.as_object().size() != b.as_object().size()) return false;
        for (const auto& kv : a.as_object()) {
          const JsonValue* other = b.find(kv.first);
          if (!other || !(kv.second == *other)) return false;
        }
        return true;
      }
      default: return false;
    }
  }
  friend bool operator!=(const JsonValue& a, const JsonValue& b) { return !(a == b); }

  /// Parse JSON text (objects keep file order). Throws peft::SerializationError with the
  /// position on malformed input, invalid UTF-8 or nesting deeper than 512.
  static JsonValue parse(const std::string& text);

  /// Serialise like Python's `json.dumps(v, indent=indent, sort_keys=sort_keys)`: ensure_ascii,
  /// separators `", "`/`": "` (`","` + newline when indented), floats in Python repr
  /// (`0.0`, `1e-05`), NaN/Infinity as Python writes them. indent < 0 = one line.
  std::string dump(int indent = -1, bool sort_keys = false) const;

 private:
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> v_;
};

}  // namespace peft
