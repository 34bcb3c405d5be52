// YAML `lora:` section -> JsonValue (remembering where each key sits) -> the shared keyword
// reader, so YAML and JSON accept exactly the same fields and types.

#include "peft/train/lora_yaml.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"

namespace peft {
namespace {

struct Located {
  std::string source;
  std::map<std::string, YAML::Mark> marks;  // dotted field path -> position of its value

  std::string where(const YAML::Mark& m) const {
    if (m.line < 0) return source;
    return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }
};

JsonValue plain_scalar(const std::string& s) {
  static const std::regex int_re(R"([-+]?[0-9]+)");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return JsonValue();
  if (s == "true" || s == "True" || s == "TRUE") return JsonValue(true);
  if (s == "false" || s == "False" || s == "FALSE") return JsonValue(false);
  if (std::regex_match(s, int_re)) {
    try {
      return JsonValue(static_cast<std::int64_t>(std::stoll(s)));
    } catch (const std::out_of_range&) {
      return JsonValue(s);
    }
  }
  if (std::regex_match(s, float_re)) return JsonValue(std::stod(s));
  if (s == ".inf" || s == ".Inf" || s == "+.inf") return JsonValue(HUGE_VAL);
  if (s == "-.inf" || s == "-.Inf") return JsonValue(-HUGE_VAL);
  if (s == ".nan" || s == ".NaN") return JsonValue(std::nan(""));
  return JsonValue(s);
}

JsonValue convert(const YAML::Node& node, const std::string& path, Located& loc) {
  loc.marks[path] = node.Mark();
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return JsonValue();
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!" and plain ones "?".
      return node.Tag() == "!" ? JsonValue(node.Scalar()) : plain_scalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      JsonValue::Array a;
      std::size_t i = 0;
      for (const auto& e : node) a.push_back(convert(e, path + "[" + std::to_string(i++) + "]", loc));
      return JsonValue(std::move(a));
    }
    case YAML::NodeType::Map: {
      JsonValue o = JsonValue::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar())
          throw SerializationError(loc.where(kv.first.Mark()) + ": mapping keys must be plain strings");
        const std::string key = kv.first.Scalar();
        const std::string child = path.empty() ? key : path + "." + key;
        if (o.find(key))
          throw SerializationError(loc.where(kv.first.Mark()) + ": duplicate key `" + key + "`");
        loc.marks[child + "#key"] = kv.first.Mark();
        o.set(key, convert(kv.second, child, loc));
      }
      return o;
    }
  }
  return JsonValue();
}

/// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs,
/// surrogates or code points past U+10FFFF), or npos. yaml-cpp passes such bytes through, and
/// they would end up in module names and adapter_config.json.
std::size_t invalid_utf8_at(const std::string& s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return i;
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return i;
    }
    i += len;
  }
  return std::string::npos;
}

}  // namespace

LoraConfig lora_config_from_yaml(const std::string& text, const std::string& section,
                                 const std::string& source_name) {
  Located loc{source_name, {}};
  const std::size_t bad = invalid_utf8_at(text);
  if (bad != std::string::npos) {
    YAML::Mark m;
    m.line = static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
    const auto nl = text.rfind('\n', bad == 0 ? 0 : bad - 1);
    m.column = static_cast<int>(bad == 0 || nl == std::string::npos ? bad : bad - nl - 1);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw SerializationError(loc.where(m) + ": invalid UTF-8 (byte " + hex + "); YAML text must be UTF-8");
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw SerializationError(loc.where(e.mark) + ": invalid YAML: " + e.msg);
  }
  // Convert the whole document so duplicate keys are caught at every depth, in any section.
  JsonValue doc;
  try {
    doc = convert(root, "", loc);
  } catch (const YAML::Exception& e) {
    throw SerializationError(loc.where(e.mark) + ": invalid YAML: " + e.msg);
  }
  const std::string prefix = section.empty() ? "" : section + ".";
  const JsonValue* obj = &doc;
  if (!section.empty()) {
    obj = doc.find(section);
    if (!obj)
      throw SerializationError(source_name + ": no `" + section + ":` section (expected a top-level "
                               "mapping with a `" + section + ":` key holding the LoRA settings)");
  }
  const YAML::Mark section_mark = loc.marks[section];
  if (!obj->is_object())
    throw SerializationError(loc.where(section_mark) + ": `" + (section.empty() ? "<root>" : section) +
                             "` must be a mapping of LoraConfig fields");
  try {
    return lora_config_from_json_value(*obj, ConfigSource::Kwargs);
  } catch (const ConfigError& e) {
    // Point at the value of the field (or of its top-level key when nested names differ).
    for (std::string f = e.field(); !f.empty();) {
      auto it = loc.marks.find(prefix + f);
      if (it != loc.marks.end()) throw e.located(loc.where(it->second));
      auto cut = f.find_last_of(".[");
      f = cut == std::string::npos ? std::string() : f.substr(0, cut);
    }
    throw e.located(loc.where(section_mark));
  }
}

LoraConfig load_lora_yaml(const std::filesystem::path& path, const std::string& section) {
  return lora_config_from_yaml(read_text_file(path), section, path.string());
}

}  // namespace peft
