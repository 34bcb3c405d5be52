// Field readers and error helpers for the tokenizer.json parsers.

#include "json_fields.hpp"

#include "peft/format/atomic_file.hpp"

namespace peft::text::detail {
namespace {

// ConfigError about the tokenizer whose message leads with the file: the existing refusal format
// `dir/tokenizer.json: pre_tokenizer.type = Metaspace: ... (hint: ...)`.
class TokenizerConfigError : public ConfigError {
 public:
  TokenizerConfigError(const std::string& file, const std::string& field, const std::string& value,
                       const std::string& problem, const std::string& hint)
      : ConfigError(Message{file + ": " + field + " = " + value + ": " + problem + " (hint: " + hint + ")"},
                    "tokenizer", field, value, Kind::NotImplemented) {}
};

}  // namespace

std::string json_type_name(const JsonValue& v) {
  switch (v.type()) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "a boolean";
    case JsonValue::Type::Int: return "an integer";
    case JsonValue::Type::Float: return "a number";
    case JsonValue::Type::String: return "a string";
    case JsonValue::Type::Array: return "an array";
    default: return "an object";
  }
}

void bad_field(const JsonPlace& at, const std::string& expected, const JsonValue* got) {
  throw SerializationError(at.file + ": field '" + at.field + "' must be " + expected +
                           (got ? ", got " + json_type_name(*got) : std::string(", but it is missing")));
}

void unsupported(const JsonPlace& at, const std::string& value, const std::string& problem, const std::string& hint) {
  throw TokenizerConfigError(at.file, at.field, value, problem, hint);
}

std::string get_string(const JsonValue& obj, const std::string& key, const JsonPlace& at, const std::string& def) {
  const JsonValue* v = obj.find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_string()) bad_field(at.child(key), "a string", v);
  return v->as_string();
}

bool get_bool(const JsonValue& obj, const std::string& key, const JsonPlace& at, bool def) {
  const JsonValue* v = obj.find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_bool()) bad_field(at.child(key), "a boolean", v);
  return v->as_bool();
}

int64_t get_int(const JsonValue& obj, const std::string& key, const JsonPlace& at, int64_t def) {
  const JsonValue* v = obj.find(key);
  if (!v || v->is_null()) return def;
  if (!v->is_int()) bad_field(at.child(key), "an integer", v);
  return v->as_int();
}

std::string get_type(const JsonValue& obj, const JsonPlace& at) {
  if (!obj.is_object()) bad_field(at, "an object with a \"type\"", &obj);
  const JsonValue* t = obj.find("type");
  if (!t || !t->is_string()) bad_field(at.child("type"), "a string", t);
  return t->as_string();
}

PatternSpec get_pattern(const JsonValue& obj, const JsonPlace& at) {
  const JsonValue* p = obj.find("pattern");
  const JsonPlace pat = at.child("pattern");
  if (!p || !p->is_object()) bad_field(pat, "{\"String\": ...} or {\"Regex\": ...}", p);
  if (const JsonValue* s = p->find("String"); s && s->is_string()) return {false, s->as_string()};
  if (const JsonValue* r = p->find("Regex"); r && r->is_string()) return {true, r->as_string()};
  bad_field(pat, "{\"String\": ...} or {\"Regex\": ...}", p);
}

JsonValue parse_json_file(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  try {
    return JsonValue::parse(text);
  } catch (const Error& e) {
    throw SerializationError(file.string() + ": malformed JSON: " + e.what());
  }
}

}  // namespace peft::text::detail
