#pragma once
// Field readers and error helpers shared by the tokenizer.json parsers (normalizers,
// pre-tokenizers, model, post-processor, decoders): every error names the file and the field.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"

namespace peft::text::detail {

/// Where a JSON object sits: the file and its dotted field path (e.g. "pre_tokenizer.pretokenizers[0]").
struct JsonPlace {
  std::string file;
  std::string field;
  JsonPlace child(const std::string& key) const { return {file, field.empty() ? key : field + "." + key}; }
  JsonPlace item(std::size_t i) const { return {file, field + "[" + std::to_string(i) + "]"}; }
};

/// "a string", "an object", ... for messages.
std::string json_type_name(const JsonValue& v);

/// SerializationError: `file: field 'f' must be EXPECTED, got TYPE`.
[[noreturn]] void bad_field(const JsonPlace& at, const std::string& expected, const JsonValue* got);

/// ConfigError (subject "tokenizer"): `file: field = value: problem (hint: ...)`.
[[noreturn]] void unsupported(const JsonPlace& at, const std::string& value, const std::string& problem,
                              const std::string& hint);

/// obj[key] as a string/bool/int; a missing or null key gives the default, a wrong type throws.
std::string get_string(const JsonValue& obj, const std::string& key, const JsonPlace& at, const std::string& def);
bool get_bool(const JsonValue& obj, const std::string& key, const JsonPlace& at, bool def);
int64_t get_int(const JsonValue& obj, const std::string& key, const JsonPlace& at, int64_t def);
/// obj["type"]; throws when the object or its type is missing.
std::string get_type(const JsonValue& obj, const JsonPlace& at);

/// A Split/Replace `pattern`: {"String": s} or {"Regex": r}.
struct PatternSpec {
  bool is_regex = false;
  std::string text;
};
PatternSpec get_pattern(const JsonValue& obj, const JsonPlace& at);

/// obj[key] as an array of components parsed by `parse` (null entries skipped): the Sequence types.
template <class T, class Parse>
std::vector<std::unique_ptr<T>> parse_list(const JsonValue& obj, const std::string& key, const JsonPlace& at,
                                           Parse parse) {
  const JsonValue* list = obj.find(key);
  if (!list || !list->is_array()) bad_field(at.child(key), "an array", list);
  std::vector<std::unique_ptr<T>> items;
  for (std::size_t i = 0; i < list->as_array().size(); ++i)
    if (auto item = parse(list->as_array()[i], at.child(key).item(i))) items.push_back(std::move(item));
  return items;
}

/// A JSON file; SerializationError `file: malformed JSON: ...` when it does not parse.
JsonValue parse_json_file(const std::filesystem::path& file);

}  // namespace peft::text::detail
