// LoraConfig <-> JSON (adapter_config.json and keyword-argument objects).

#include "peft/detail/edit_distance.hpp"
#include "peft/detail/strings.hpp"
#include "peft/config/config_json.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "peft/detail/shortened.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace {

using Kind = ConfigError::Kind;

const char* type_name(const JsonValue& v) {
  switch (v.type()) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "bool";
    case JsonValue::Type::Int: return "int";
    case JsonValue::Type::Float: return "float";
    case JsonValue::Type::String: return "string";
    case JsonValue::Type::Array: return "list";
    case JsonValue::Type::Object: return "object";
  }
  return "?";
}

/// A value as messages show it.
std::string shown(const JsonValue& v) { return detail::shortened(v.dump()); }

[[noreturn]] void wrong_type(const std::string& field, const JsonValue& v, const std::string& expected) {
  throw ConfigError(field, shown(v), std::string("has type ") + type_name(v) + ", expected " + expected,
                    "see PEFT's LoraConfig for the field's type", Kind::WrongType);
}

std::int64_t get_int(const std::string& field, const JsonValue& v) {
  if (!v.is_int()) wrong_type(field, v, "an integer");
  return v.as_int();
}
bool get_bool(const std::string& field, const JsonValue& v) {
  if (!v.is_bool()) wrong_type(field, v, "true or false");
  return v.as_bool();
}
double get_double(const std::string& field, const JsonValue& v) {
  if (!v.is_number()) wrong_type(field, v, "a number");
  return v.as_double();
}
Number get_number(const std::string& field, const JsonValue& v) {
  if (v.is_int()) return Number(static_cast<long long>(v.as_int()));
  if (v.is_float()) return Number(v.as_double());
  wrong_type(field, v, "a number");
}
std::string get_string(const std::string& field, const JsonValue& v) {
  if (!v.is_string()) wrong_type(field, v, "a string");
  return v.as_string();
}
std::optional<std::string> get_opt_string(const std::string& field, const JsonValue& v) {
  if (v.is_null()) return std::nullopt;
  return get_string(field, v);
}
std::vector<std::string> get_string_list(const std::string& field, const JsonValue& v) {
  if (!v.is_array()) wrong_type(field, v, "a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v.as_array()) out.push_back(get_string(field + "[]", e));
  return out;
}
std::vector<std::int64_t> get_int_list(const std::string& field, const JsonValue& v) {
  if (!v.is_array()) wrong_type(field, v, "a list of integers");
  std::vector<std::int64_t> out;
  for (const auto& e : v.as_array()) out.push_back(get_int(field + "[]", e));
  return out;
}
ModuleSpec get_module_spec(const std::string& field, const JsonValue& v) {
  if (v.is_null()) return ModuleSpec();
  if (v.is_string()) return ModuleSpec::regex(v.as_string());
  if (v.is_array()) return ModuleSpec::list(get_string_list(field, v));
  wrong_type(field, v, "null, a regex string or a list of module names");
}

/// Expect an object; a sub-config dict with an unknown key is a TypeError in PEFT. (Callers then
/// use v.as_object(): returning the reference from here made GCC 13 warn about a dangling
/// reference to the temporary field name.)
const JsonValue& require_object(const char* field, const JsonValue& v) {
  if (!v.is_object()) wrong_type(field, v, "an object");
  return v;
}
[[noreturn]] void unknown_sub_key(const std::string& field, const std::string& key,
                                  const std::string& known) {
  throw ConfigError(field + "." + key, "", "is not a field of " + field,
                    "known fields: " + known, Kind::WrongType);
}

EvaConfig get_eva(const JsonValue& v) {
  EvaConfig e;
  for (const auto& [k, x] : require_object("eva_config", v).as_object()) {
    const std::string f = "eva_config." + k;
    if (k == "rho") e.rho = get_double(f, x);
    else if (k == "tau") e.tau = get_double(f, x);
    else if (k == "use_label_mask") e.use_label_mask = get_bool(f, x);
    else if (k == "label_mask_value") e.label_mask_value = get_int(f, x);
    else if (k == "whiten") e.whiten = get_bool(f, x);
    else if (k == "adjust_scaling_factors") e.adjust_scaling_factors = get_bool(f, x);
    else unknown_sub_key("eva_config", k, "rho, tau, use_label_mask, label_mask_value, whiten, "
                                          "adjust_scaling_factors");
  }
  return e;
}

CordaConfig get_corda(const JsonValue& v) {
  CordaConfig c;
  for (const auto& [k, x] : require_object("corda_config", v).as_object()) {
    const std::string f = "corda_config." + k;
    if (k == "cache_file") c.cache_file = get_opt_string(f, x);
    else if (k == "covariance_file") c.covariance_file = get_opt_string(f, x);
    else if (k == "corda_method") c.corda_method = get_string(f, x);
    else if (k == "verbose") c.verbose = get_bool(f, x);
    else if (k == "use_float16_for_covariance") c.use_float16_for_covariance = get_bool(f, x);
    else if (k == "prune_temporary_fields") c.prune_temporary_fields = get_bool(f, x);
    else unknown_sub_key("corda_config", k, "cache_file, covariance_file, corda_method, verbose, "
                                            "use_float16_for_covariance, prune_temporary_fields");
  }
  return c;
}

std::optional<LoftQConfig> get_loftq(const JsonValue& v) {
  if (v.is_null()) return std::nullopt;
  const auto& obj = require_object("loftq_config", v).as_object();
  if (obj.empty()) return std::nullopt;  // PEFT's falsy `{}`
  LoftQConfig l;
  for (const auto& [k, x] : obj) {
    if (k == "loftq_bits") l.loftq_bits = get_int("loftq_config.loftq_bits", x);
    else if (k == "loftq_iter") l.loftq_iter = get_int("loftq_config.loftq_iter", x);
    else unknown_sub_key("loftq_config", k, "loftq_bits, loftq_iter");
  }
  return l;
}

std::optional<JsonValue> opt_json(const JsonValue& v) {
  if (v.is_null()) return std::nullopt;
  return v;
}

const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = {
      "alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping",
      "base_model_name_or_path", "bias", "corda_config", "ensure_weight_tying", "eva_config",
      "exclude_modules", "fan_in_fan_out", "inference_mode", "init_lora_weights",
      "layer_replication", "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha",
      "lora_bias", "lora_dropout", "lora_ga_config", "megatron_config", "megatron_core",
      "modules_to_save", "monteclora_config", "peft_type", "peft_version", "qalora_group_size", "r",
      "rank_pattern", "revision", "target_modules", "target_parameters", "task_type",
      "trainable_token_indices", "use_bdlora", "use_dora", "use_qalora", "use_rslora",
      "velora_config"};
  return keys;
}

using peft::detail::edit_distance;

std::string closest_key(const std::string& key) {
  std::string best;
  std::size_t best_d = SIZE_MAX;
  for (const auto& k : known_keys()) {
    auto d = edit_distance(key, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best_d <= std::max<std::size_t>(2, key.size() / 3) ? best : "";
}

/// Set one known field. Returns false for an unknown key.
bool set_field(LoraConfig& c, const std::string& k, const JsonValue& v) {
  if (k == "r") c.r = get_int(k, v);
  else if (k == "target_modules") c.target_modules = get_module_spec(k, v);
  else if (k == "exclude_modules") c.exclude_modules = get_module_spec(k, v);
  else if (k == "lora_alpha") c.lora_alpha = get_number(k, v);
  else if (k == "lora_dropout") c.lora_dropout = get_double(k, v);
  else if (k == "fan_in_fan_out") c.fan_in_fan_out = get_bool(k, v);
  else if (k == "bias") {
    auto b = parse_bias(get_string(k, v));
    if (!b)
      throw ConfigError(k, shown(v), "is not implemented", "one of \"none\", \"all\", \"lora_only\"",
                        Kind::NotImplemented);
    c.bias = *b;
  } else if (k == "use_rslora") c.use_rslora = get_bool(k, v);
  else if (k == "modules_to_save") {
    if (v.is_null()) c.modules_to_save.reset();
    else c.modules_to_save = get_string_list(k, v);
  } else if (k == "init_lora_weights") {
    if (v.is_bool()) c.init_lora_weights = v.as_bool();
    else if (v.is_string()) c.init_lora_weights = v.as_string();
    else wrong_type(k, v, "true, false or an init name such as \"gaussian\"");
  } else if (k == "layers_to_transform") {
    if (v.is_null()) c.layers_to_transform.reset();
    else if (v.is_int()) c.layers_to_transform = LayerIndices(v.as_int());
    else if (v.is_array()) c.layers_to_transform = LayerIndices(get_int_list(k, v));
    else wrong_type(k, v, "null, an integer or a list of integers");
  } else if (k == "layers_pattern") {
    if (v.is_null()) c.layers_pattern.reset();
    else if (v.is_string()) c.layers_pattern = LayerPatterns(v.as_string());
    else if (v.is_array()) c.layers_pattern = LayerPatterns(get_string_list(k, v));
    else wrong_type(k, v, "null, a string or a list of strings");
  } else if (k == "rank_pattern") {
    c.rank_pattern = {};
    if (!v.is_null())
      for (const auto& [p, x] : require_object(k.c_str(), v).as_object()) c.rank_pattern.set(p, get_int(k + "[\"" + p + "\"]", x));
  } else if (k == "alpha_pattern") {
    c.alpha_pattern = {};
    if (!v.is_null())
      for (const auto& [p, x] : require_object(k.c_str(), v).as_object()) c.alpha_pattern.set(p, get_number(k + "[\"" + p + "\"]", x));
  } else if (k == "megatron_config") c.megatron_config = opt_json(v);
  else if (k == "megatron_core") c.megatron_core = v.is_null() ? "megatron.core" : get_string(k, v);
  else if (k == "trainable_token_indices") {
    if (!v.is_null() && !v.is_array() && !v.is_object())
      wrong_type(k, v, "null, a list of token ids or an object {module: [ids]}");
    if (v.is_array()) get_int_list(k, v);  // type-checks the ids
    if (v.is_object())
      for (const auto& [m, ids] : v.as_object()) get_int_list(k + "[\"" + m + "\"]", ids);
    c.trainable_token_indices = opt_json(v);
  } else if (k == "loftq_config") c.loftq_config = get_loftq(v);
  else if (k == "eva_config") c.eva_config = v.is_null() ? std::nullopt : std::optional<EvaConfig>(get_eva(v));
  else if (k == "corda_config")
    c.corda_config = v.is_null() ? std::nullopt : std::optional<CordaConfig>(get_corda(v));
  else if (k == "lora_ga_config") {
    if (!v.is_null() && !v.is_object()) wrong_type(k, v, "null or an object");
    c.lora_ga_config = opt_json(v);
  }
  else if (k == "use_dora") c.use_dora = get_bool(k, v);
  else if (k == "velora_config") c.velora_config = opt_json(v);
  else if (k == "alora_invocation_tokens") {
    if (v.is_null()) c.alora_invocation_tokens.reset();
    else c.alora_invocation_tokens = get_int_list(k, v);
  } else if (k == "use_qalora") c.use_qalora = get_bool(k, v);
  else if (k == "qalora_group_size") c.qalora_group_size = get_int(k, v);
  else if (k == "monteclora_config") c.monteclora_config = opt_json(v);
  else if (k == "layer_replication") {
    if (v.is_null()) {
      c.layer_replication.reset();
    } else {
      if (!v.is_array()) wrong_type(k, v, "a list of [start, end] pairs");
      std::vector<std::array<std::int64_t, 2>> pairs;
      for (const auto& p : v.as_array()) {
        auto ints = get_int_list(k + "[]", p);
        if (ints.size() != 2) wrong_type(k + "[]", p, "a [start, end] pair");
        pairs.push_back({ints[0], ints[1]});
      }
      c.layer_replication = pairs;
    }
  } else if (k == "lora_bias") c.lora_bias = get_bool(k, v);
  else if (k == "target_parameters") {
    if (v.is_null()) c.target_parameters.reset();
    else if (v.is_array()) c.target_parameters = get_string_list(k, v);
    else throw ConfigError(k, shown(v), "`target_parameters` must be a list of strings or None",
                           "e.g. [\"experts.gate_up_proj\"]", Kind::WrongType);
  } else if (k == "use_bdlora") c.use_bdlora = opt_json(v);
  else if (k == "arrow_config") c.arrow_config = opt_json(v);
  else if (k == "ensure_weight_tying") c.ensure_weight_tying = get_bool(k, v);
  // PeftConfig fields
  else if (k == "task_type") {
    if (v.is_null()) {
      c.task_type.reset();
    } else {
      auto t = parse_task_type(get_string(k, v));
      if (!t)
        throw ConfigError(k, shown(v), "Invalid task type",
                          "one of SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, "
                          "FEATURE_EXTRACTION, or null");
      c.task_type = *t;
    }
  } else if (k == "peft_type") {
    if (get_string(k, v) != "LORA")
      throw ConfigError(k, shown(v), "is not a LoRA adapter", "peft-cpp reads peft_type \"LORA\" only");
  } else if (k == "auto_mapping") {
    if (!v.is_null() && !v.is_object()) wrong_type(k, v, "null or an object");
    c.auto_mapping = opt_json(v);
  } else if (k == "peft_version") c.peft_version = get_opt_string(k, v);
  else if (k == "base_model_name_or_path") c.base_model_name_or_path = get_opt_string(k, v);
  else if (k == "revision") c.revision = get_opt_string(k, v);
  else if (k == "inference_mode") c.inference_mode = get_bool(k, v);
  else return false;
  return true;
}

template <class T>
JsonValue opt(const std::optional<T>& v) {
  return v ? JsonValue(*v) : JsonValue();
}

JsonValue module_spec_json(const ModuleSpec& s) {
  if (s.is_none()) return JsonValue();
  if (s.is_regex()) return JsonValue(s.pattern());
  JsonValue::Array a;
  for (const auto& n : s.names()) a.emplace_back(n);
  return JsonValue(std::move(a));
}

JsonValue number_json(const Number& n) {
  if (n.integral) return JsonValue(static_cast<std::int64_t>(n.value));
  return JsonValue(n.value);
}

JsonValue strings_json(const std::vector<std::string>& v) {
  JsonValue::Array a(v.begin(), v.end());
  return JsonValue(std::move(a));
}
JsonValue ints_json(const std::vector<std::int64_t>& v) {
  JsonValue::Array a;
  for (auto x : v) a.emplace_back(x);
  return JsonValue(std::move(a));
}

}  // namespace

LoraConfig lora_config_from_json_value(const JsonValue& object, ConfigSource source) {
  if (!object.is_object())
    throw ConfigError("<root>", object.dump().substr(0, 80), "a LoRA config must be a JSON object",
                      "", Kind::WrongType);
  LoraConfig c;
  // A file without peft_type is not a PEFT config (PEFT: TypeError "missing required keys").
  if (source == ConfigSource::AdapterConfigFile && !object.find("peft_type"))
    throw ConfigError("peft_type", "", "The config is missing the required key 'peft_type'",
                      "an adapter_config.json written by PEFT has \"peft_type\": \"LORA\"",
                      Kind::WrongType);
  std::vector<std::string> unknown;
  for (const auto& [k, v] : object.as_object()) {
    if (k == "runtime_config") {
      if (source == ConfigSource::AdapterConfigFile)
        warn("The configuration file contains a `runtime_config` key. This is ignored. Runtime "
             "configurations are only valid at runtime.");
      else if (!v.is_null() && !v.is_object())
        wrong_type(k, v, "an object");
      continue;  // runtime-only, never serialised
    }
    if (set_field(c, k, v)) continue;
    if (source == ConfigSource::Kwargs) {
      std::string near = closest_key(k);
      throw ConfigError(k, shown(v), "unexpected keyword argument: LoraConfig has no such field",
                        near.empty() ? "check the spelling against PEFT's LoraConfig"
                                     : "did you mean `" + near + "`?",
                        Kind::WrongType);
    }
    unknown.push_back(k);
    c.extra_fields.emplace_back(k, v);
  }
  if (!unknown.empty()) {
    std::sort(unknown.begin(), unknown.end());
    const std::string list = detail::abbreviated_list(unknown, 20, ", ", "'");
    warn("Unexpected keyword arguments [" + list + "] for class LoraConfig: they are ignored but "
         "kept when the config is saved again. The file was probably written by a newer PEFT.");
  }
  c.validate();
  return c;
}

JsonValue to_json_value(const LoraConfig& c) {
  JsonValue o = JsonValue::object();
  o.set("alora_invocation_tokens", c.alora_invocation_tokens ? ints_json(*c.alora_invocation_tokens) : JsonValue());
  JsonValue alpha = JsonValue::object();
  // PatternMap keys are unique: append (set() would search linearly, quadratic in the patterns).
  for (const auto& [p, a] : c.alpha_pattern) alpha.as_object().emplace_back(p, number_json(a));
  o.set("alpha_pattern", alpha);
  o.set("arrow_config", opt(c.arrow_config));
  o.set("auto_mapping", opt(c.auto_mapping));
  o.set("base_model_name_or_path", opt(c.base_model_name_or_path));
  o.set("bias", to_string(c.bias));
  if (c.corda_config) {
    const auto& k = *c.corda_config;
    JsonValue cj = JsonValue::object();
    cj.set("cache_file", opt(k.cache_file));
    cj.set("corda_method", k.corda_method);
    cj.set("covariance_file", opt(k.covariance_file));
    cj.set("prune_temporary_fields", k.prune_temporary_fields);
    cj.set("use_float16_for_covariance", k.use_float16_for_covariance);
    cj.set("verbose", k.verbose);
    o.set("corda_config", cj);
  } else {
    o.set("corda_config", JsonValue());
  }
  o.set("ensure_weight_tying", c.ensure_weight_tying);
  if (c.eva_config) {
    const auto& e = *c.eva_config;
    JsonValue ej = JsonValue::object();
    ej.set("adjust_scaling_factors", e.adjust_scaling_factors);
    ej.set("label_mask_value", e.label_mask_value);
    ej.set("rho", e.rho);
    ej.set("tau", e.tau);
    ej.set("use_label_mask", e.use_label_mask);
    ej.set("whiten", e.whiten);
    o.set("eva_config", ej);
  } else {
    o.set("eva_config", JsonValue());
  }
  o.set("exclude_modules", module_spec_json(c.exclude_modules));
  o.set("fan_in_fan_out", c.fan_in_fan_out);
  o.set("inference_mode", c.inference_mode);
  o.set("init_lora_weights", c.init_lora_weights.is_bool() ? JsonValue(c.init_lora_weights.as_bool())
                                                           : JsonValue(c.init_lora_weights.name()));
  if (c.layer_replication) {
    JsonValue::Array a;
    for (const auto& p : *c.layer_replication) a.push_back(ints_json({p[0], p[1]}));
    o.set("layer_replication", JsonValue(std::move(a)));
  } else {
    o.set("layer_replication", JsonValue());
  }
  if (c.layers_pattern)
    o.set("layers_pattern", c.layers_pattern->scalar ? JsonValue(c.layers_pattern->values.front())
                                                     : strings_json(c.layers_pattern->values));
  else
    o.set("layers_pattern", JsonValue());
  if (c.layers_to_transform)
    o.set("layers_to_transform", c.layers_to_transform->scalar
                                     ? JsonValue(c.layers_to_transform->values.front())
                                     : ints_json(c.layers_to_transform->values));
  else
    o.set("layers_to_transform", JsonValue());
  JsonValue loftq = JsonValue::object();
  if (c.loftq_config) {
    loftq.set("loftq_bits", c.loftq_config->loftq_bits);
    loftq.set("loftq_iter", c.loftq_config->loftq_iter);
  }
  o.set("loftq_config", loftq);
  o.set("lora_alpha", number_json(c.lora_alpha));
  o.set("lora_bias", c.lora_bias);
  o.set("lora_dropout", c.lora_dropout);
  o.set("lora_ga_config", opt(c.lora_ga_config));
  o.set("megatron_config", opt(c.megatron_config));
  o.set("megatron_core", c.megatron_core);
  o.set("modules_to_save", c.modules_to_save ? strings_json(*c.modules_to_save) : JsonValue());
  o.set("monteclora_config", opt(c.monteclora_config));
  o.set("peft_type", LoraConfig::peft_type);
  o.set("peft_version", opt(c.peft_version));
  o.set("qalora_group_size", c.qalora_group_size);
  o.set("r", c.r);
  JsonValue rank = JsonValue::object();
  for (const auto& [p, r] : c.rank_pattern) rank.as_object().emplace_back(p, r);
  o.set("rank_pattern", rank);
  o.set("revision", opt(c.revision));
  o.set("target_modules", module_spec_json(c.target_modules));
  o.set("target_parameters", c.target_parameters ? strings_json(*c.target_parameters) : JsonValue());
  o.set("task_type", c.task_type ? JsonValue(to_string(*c.task_type)) : JsonValue());
  o.set("trainable_token_indices", opt(c.trainable_token_indices));
  o.set("use_bdlora", opt(c.use_bdlora));
  o.set("use_dora", c.use_dora);
  o.set("use_qalora", c.use_qalora);
  o.set("use_rslora", c.use_rslora);
  o.set("velora_config", opt(c.velora_config));
  // Extra keys are appended through a hash set: a config with a million unknown keys must not
  // cost a million² comparisons (set() searches linearly).
  std::unordered_set<std::string> present;
  for (const auto& kv : o.as_object()) present.insert(kv.first);
  for (const auto& [k, v] : c.extra_fields) {
    if (present.insert(k).second) o.as_object().emplace_back(k, v);
    else o.set(k, v);
  }
  return o;
}

std::string to_json(const LoraConfig& config) { return to_json_value(config).dump(2, true); }

LoraConfig lora_config_from_json(const std::string& text) {
  return lora_config_from_json_value(JsonValue::parse(text), ConfigSource::AdapterConfigFile);
}

LoraConfig load_adapter_config(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = path / "adapter_config.json";
  std::string text = read_text_file(file);
  try {
    return lora_config_from_json(text);
  } catch (const SerializationError& e) {
    throw SerializationError(file.string() + ": " + e.what());
  } catch (const ConfigError& e) {
    throw e.located(file.string());
  }
}

void save_adapter_config(const LoraConfig& config, const std::filesystem::path& dir) {
  write_file_atomically(dir / "adapter_config.json", to_json(config));
}

}  // namespace peft
