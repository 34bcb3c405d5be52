#pragma once
/// Which LoraConfig fields peft-cpp acts on (docs/config.md "Fields peft-cpp refuses"). A field
/// whose non-default value would make PEFT compute something else than plain LoRA/DoRA, and that
/// peft-cpp does not implement, makes add_adapter (so get_peft_model and load_adapter) throw a
/// ConfigError naming it, before anything changes: an adapter never loads and silently computes
/// something else.
///
///   refused when set      alora_invocation_tokens (aLoRA), use_qalora (QALoRA pooling),
///                         arrow_config, velora_config, monteclora_config, use_bdlora (PEFT's
///                         variants), megatron_config (truthy, as PEFT tests it)
///   ensure_weight_tying   accepted when the model has no tied tensors (PEFT then only warns);
///                         refused when it has some (PEFT would tie the adapters of tied modules)
///   unknown keys          (from a newer PEFT, kept in LoraConfig::extra_fields) ignored with a
///                         warning when null, false, "", [] or {} (a newer field at its default);
///                         any other value is refused, since it may change the computation
///   implemented           layer_replication (tuner/layer_replication.hpp); qalora_group_size and
///                         megatron_core only matter with the refused fields above

#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace detail {

inline ConfigError unsupported_field(const std::string& field, const std::string& value, const std::string& what) {
  return ConfigError(field, value, "is not supported by peft-cpp (" + what + ")",
                     "remove the field (set it to null) or use Python PEFT for this adapter; peft-cpp refuses it "
                     "rather than compute something else");
}

/// Unset in the sense of a newer PEFT field at its default: null, false, "", [] or {}.
inline bool json_unset(const JsonValue& v) {
  if (v.is_null()) return true;
  switch (v.type()) {
    case JsonValue::Type::Bool: return !v.as_bool();
    case JsonValue::Type::String: return v.as_string().empty();
    case JsonValue::Type::Array: return v.as_array().empty();
    case JsonValue::Type::Object: return v.as_object().empty();
    default: return false;
  }
}

/// Keys of tensors that two modules of `model` hold (tied weights): "<key> = <other key>".
inline std::vector<std::string> tied_tensors(const torch::nn::Module& model) {
  std::map<const void*, std::string> seen;
  std::vector<std::string> tied;
  for (const auto& p : model.named_parameters(true)) {
    const void* id = p.value().unsafeGetTensorImpl();
    auto [it, fresh] = seen.emplace(id, p.key());
    if (!fresh) tied.push_back(p.key() + " = " + it->second);
  }
  return tied;
}

}  // namespace detail

/// Throws ConfigError for the first field of `config` that peft-cpp does not act on (list above).
inline void check_config_supported(const LoraConfig& config, const torch::nn::Module& model) {
  using detail::unsupported_field;
  if (config.alora_invocation_tokens)
    throw unsupported_field("alora_invocation_tokens", "[...]",
                            "aLoRA applies the adapter only after the invocation tokens");
  if (config.use_qalora) throw unsupported_field("use_qalora", "true", "QALoRA pools the input for quantized layers");
  if (config.arrow_config) throw unsupported_field("arrow_config", config.arrow_config->dump(), "Arrow routing");
  if (config.velora_config) throw unsupported_field("velora_config", config.velora_config->dump(), "VeLoRA");
  if (config.monteclora_config)
    throw unsupported_field("monteclora_config", config.monteclora_config->dump(), "MonteCLoRA");
  if (config.use_bdlora) throw unsupported_field("use_bdlora", config.use_bdlora->dump(), "block-diagonal LoRA");
  if (detail::json_truthy(config.megatron_config))
    throw unsupported_field("megatron_config", config.megatron_config->dump(), "Megatron parallel layers");
  if (config.ensure_weight_tying) {
    const auto tied = detail::tied_tensors(model);
    if (!tied.empty())
      throw unsupported_field("ensure_weight_tying", "true",
                              "tying the adapters of tied modules; this model ties " +
                                  detail::abbreviated_list(tied, 4, ", "));
    warn("You have requested `ensure_weight_tying`, but no tied modules were found in the model");
  }
  for (const auto& [key, value] : config.extra_fields)
    if (!detail::json_unset(value))
      throw ConfigError(key, value.dump(),
                        "is not a LoraConfig field of PEFT " + std::string(kPeftFormatVersion) +
                            " (written by a newer PEFT?) and is set; it is not supported by peft-cpp, since it may "
                            "change what the adapter computes",
                        "use a peft-cpp that knows this field, or remove it if you know it is harmless");
}

}  // namespace peft
