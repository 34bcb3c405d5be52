// YAML `lora:` section -> JsonValue (remembering where each key sits) -> the shared keyword
// reader, so YAML and JSON accept exactly the same fields and types.

#include "peft/train/lora_yaml.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_set>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"
#include "detail/bounded_yaml.hpp"

namespace peft {
namespace {

struct Located {
  std::string source;
  std::map<std::string, YAML::Mark> marks;  // dotted field path -> position of its value

  std::string where(const YAML::Mark& m) const { return detail::yaml_where(source, m); }
};

JsonValue plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return JsonValue();
  if (s == "true" || s == "True" || s == "TRUE") return JsonValue(true);
  if (s == "false" || s == "False" || s == "FALSE") return JsonValue(false);
  if (detail::is_yaml_int(s)) {
    try {
      return JsonValue(static_cast<std::int64_t>(std::stoll(s)));
    } catch (const std::out_of_range&) {
      return JsonValue(s);
    }
  }
  if (detail::is_yaml_float(s)) return JsonValue(detail::yaml_float_value(s));
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
      std::unordered_set<std::string> keys;  // JsonValue::find is linear: 100k keys would take minutes
      for (const auto& kv : node) {
        if (!kv.first.IsScalar())
          throw SerializationError(loc.where(kv.first.Mark()) + ": mapping keys must be plain strings");
        const std::string key = kv.first.Scalar();
        const std::string child = path.empty() ? key : path + "." + key;
        if (!keys.insert(key).second)
          throw SerializationError(loc.where(kv.first.Mark()) + ": duplicate key `" + key + "`");
        loc.marks[child + "#key"] = kv.first.Mark();
        o.as_object().emplace_back(key, convert(kv.second, child, loc));
      }
      return o;
    }
  }
  return JsonValue();
}

}  // namespace

LoraConfig lora_config_from_yaml(const std::string& text, const std::string& section,
                                 const std::string& source_name) {
  Located loc{source_name, {}};
  const YAML::Node root = detail::load_bounded_yaml(text, source_name);
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
