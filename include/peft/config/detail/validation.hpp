#pragma once
/// LoraConfig::validate(): PEFT 0.20.0's LoraConfig.__post_init__ (docs/config.md#validation), in PEFT's
/// order,
/// plus checks PEFT defers to injection although they depend on the config alone.
/// Included by config/lora_config.hpp; not meant to be included on its own.

#include <cmath>
#include <sstream>
#include <string>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace detail {

inline std::string repr_double(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

inline bool is_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

/// Python truthiness of a free-form JSON value (None, {}, [], "", 0, false are falsy).
inline bool json_truthy(const std::optional<JsonValue>& v) {
  if (!v || v->is_null()) return false;
  switch (v->type()) {
    case JsonValue::Type::Bool: return v->as_bool();
    case JsonValue::Type::Int: return v->as_int() != 0;
    case JsonValue::Type::Float: return v->as_double() != 0.0;
    case JsonValue::Type::String: return !v->as_string().empty();
    case JsonValue::Type::Array: return !v->as_array().empty();
    case JsonValue::Type::Object: return !v->as_object().empty();
    default: return false;
  }
}

/// Validates a variant sub-config given as a dict (PEFT converts it into its dataclass, whose
/// post-init checks these values). Checks only the keys PEFT validates; the rest is kept as is.
inline void check_dict_field(const std::optional<JsonValue>& v, const std::string& field,
                             const std::string& class_name) {
  if (!v || v->is_null()) return;
  if (!v->is_object())
    throw ConfigError(field, v->dump(), "must be a `" + class_name + "`, a dict, or None",
                      "give an object of " + class_name + " fields, or leave it null",
                      ConfigError::Kind::WrongType);
}

inline void check_positive(const JsonValue& obj, const std::string& field, const std::string& key,
                           bool allow_zero = false) {
  const JsonValue* v = obj.find(key);
  if (!v || v->is_null()) return;
  if (!v->is_number())
    throw ConfigError(field + "." + key, v->dump(), "must be a number", "",
                      ConfigError::Kind::WrongType);
  double d = v->as_double();
  if (allow_zero ? d < 0 : d <= 0)
    throw ConfigError(field + "." + key, v->dump(),
                      allow_zero ? "must not be negative" : "must be positive",
                      "use a value > 0");
}

}  // namespace detail

inline InitMethod LoraConfig::init_method() const {
  const InitLoraWeights& w = init_lora_weights;
  if (w.is_bool()) return w.as_bool() ? InitMethod::Default : InitMethod::Random;
  const std::string n = w.lower_name();
  const char* known = "True, False, \"gaussian\", \"eva\", \"olora\", \"pissa\", "
                      "\"pissa_niter_<N>\", \"corda\", \"loftq\", \"orthogonal\", \"mica\", \"lora_ga\"";
  if (n == "gaussian") return InitMethod::Gaussian;
  if (n == "eva") return InitMethod::Eva;
  if (n == "olora") return InitMethod::Olora;
  if (n == "pissa") return InitMethod::Pissa;
  if (n == "corda") return InitMethod::Corda;
  if (n == "loftq") return InitMethod::Loftq;
  if (n == "orthogonal") return InitMethod::Orthogonal;
  if (n == "mica") return InitMethod::Mica;
  if (n == "lora_ga") return InitMethod::LoraGa;
  if (n.rfind("pissa", 0) == 0) {
    const std::string prefix = "pissa_niter_";
    if (n.rfind(prefix, 0) == 0 && detail::is_digits(n.substr(prefix.size())))
      return InitMethod::PissaNiter;
    throw ConfigError("init_lora_weights", "\"" + w.name() + "\"",
                      "a PiSSA variant must be \"pissa\" or \"pissa_niter_<N>\" with N a "
                      "non-negative integer",
                      "e.g. \"pissa_niter_16\" for fast randomised SVD");
  }
  throw ConfigError("init_lora_weights", "\"" + w.name() + "\"", "unknown initialization",
                    std::string("one of ") + known);
}

inline std::int64_t LoraConfig::pissa_niter() const {
  if (init_method() != InitMethod::PissaNiter) return 0;
  return std::stoll(init_lora_weights.lower_name().substr(std::string("pissa_niter_").size()));
}

inline void LoraConfig::validate() {
  using detail::json_truthy;
  // Our additions first: closed sets and values that can never work (PEFT fails later, at
  // injection, for the same inputs; failing here leaves no half-built model behind).
  const InitMethod init = init_method();
  if (std::isnan(lora_dropout) || lora_dropout > 1.0)
    throw ConfigError("lora_dropout", detail::repr_double(lora_dropout),
                      "dropout probability has to be between 0 and 1",
                      "use 0.0 (no dropout) to 1.0; a negative value also means no dropout");
  if (std::isnan(lora_alpha.value) || std::isinf(lora_alpha.value))
    throw ConfigError("lora_alpha", detail::repr_double(lora_alpha.value),
                      "must be a finite number", "e.g. 8 or 16");

  // 3. lists become sets (ModuleSpec already de-duplicates).
  // 5. velora_config: dict or None.
  detail::check_dict_field(velora_config, "velora_config", "VeloraConfig");
  // 6. target_parameters is typed as a list here; the readers reject a string.
  // 7./8. layer filters only work with list targets.
  if (target_modules.is_regex() && layers_to_transform)
    throw ConfigError("layers_to_transform",
                      layers_to_transform->scalar ? std::to_string(layers_to_transform->values[0])
                                                  : "[...]",
                      "`layers_to_transform` cannot be used when `target_modules` is a str",
                      "give target_modules as a list of module names, or drop the layer filter");
  if (target_modules.is_regex() && layers_pattern)
    throw ConfigError("layers_pattern", "",
                      "`layers_pattern` cannot be used when `target_modules` is a str",
                      "give target_modules as a list of module names, or drop the layer filter");
  // 9. Quirk (PEFT 0.20.0, pinned by the fixtures): the check is
  // `if layers_pattern and not layers_to_transform`, so `0` and `[]` are rejected too.
  if (layers_pattern && layers_pattern->truthy() &&
      (!layers_to_transform || !layers_to_transform->truthy()))
    throw ConfigError("layers_to_transform",
                      layers_to_transform ? (layers_to_transform->scalar ? "0" : "[]") : "None",
                      "When `layers_pattern` is specified, `layers_to_transform` must also be "
                      "specified (PEFT 0.20.0 also rejects 0 and [] here)",
                      "give the layer indices to adapt, e.g. [0, 1]");
  // 10.
  if (use_dora && json_truthy(megatron_config))
    throw ConfigError("use_dora", "true", "DoRA does not support megatron_core",
                      "set use_dora=false or drop megatron_config");
  // 11. init-specific sub-configs (one if/elif chain, as in PEFT).
  if (init == InitMethod::Loftq) {
    if (!loftq_config)
      throw ConfigError("loftq_config", "{}",
                        "`loftq_config` must be specified when `init_lora_weights` is 'loftq'",
                        "set loftq_config = {loftq_bits: 4, loftq_iter: 1}");
  } else if (loftq_config) {
    loftq_config.reset();
    warn("`loftq_config` specified but will be ignored when `init_lora_weights` is not 'loftq'.");
  } else if (init == InitMethod::Eva && !eva_config) {
    warn("`init_lora_weights` is 'eva' but `eva_config` is not specified. Using default EVA config.");
    eva_config = EvaConfig{};
  } else if (init != InitMethod::Eva && eva_config) {
    warn("`eva_config` specified but will be ignored when `init_lora_weights` is not 'eva'.");
  } else if (init == InitMethod::Corda && !corda_config) {
    warn("`init_lora_weights` is 'corda' but `corda_config` is not specified. Using default "
         "CorDA config.");
    corda_config = CordaConfig{};
  } else if (init != InitMethod::Corda && corda_config) {
    warn("`corda_config` specified but will be ignored when `init_lora_weights` is not 'corda'.");
  }
  // 12.
  if (lora_bias) {
    if (init != InitMethod::Default && init != InitMethod::Random)
      throw ConfigError("lora_bias", "true",
                        "lora_bias=True is only supported with init_lora_weights=True or False, got "
                        "init_lora_weights=" + init_lora_weights.describe(),
                        "set lora_bias=false or init_lora_weights=true");
    if (use_dora)
      throw ConfigError("lora_bias", "true", "lora_bias=True is not supported for DoRA",
                        "set use_dora=false or lora_bias=false");
  }
  // 13.
  if (alora_invocation_tokens && task_type != TaskType::CAUSAL_LM)
    warn("aLoRA is currently only supported for CAUSAL_LM task.");
  // 14.
  if (use_rslora && (!rank_pattern.empty() || !alpha_pattern.empty()) &&
      (init == InitMethod::Pissa || init == InitMethod::PissaNiter || init == InitMethod::Olora ||
       init == InitMethod::Corda || init == InitMethod::LoraGa))
    warn("Using Rank-Stabilized LoRA with rank_pattern/alpha_pattern and post-training conversion "
         "of modified base weights PiSSA/CorDA/OLoRA/LoRA-GA means that you won't be able to pass "
         "`path_initial_model_for_weight_conversion` to `save_pretrained` to restore the initial "
         "values of the base weights; if you intend to do this, please ensure not to use rslora or "
         "rank_pattern/alpha_pattern.");
  // 15. sub-config validations.
  if (eva_config) {
    if (!(eva_config->rho >= 1.0))
      throw ConfigError("eva_config.rho", detail::repr_double(eva_config->rho), "`rho` must be >= 1.0",
                        "rho bounds how far EVA may redistribute ranks; 2.0 is the default");
    if (!(eva_config->tau >= 0.0 && eva_config->tau <= 1.0))
      throw ConfigError("eva_config.tau", detail::repr_double(eva_config->tau),
                        "`tau` must be between 0.0 and 1.0", "0.99 is the default");
  }
  if (corda_config && corda_config->corda_method != "ipm" && corda_config->corda_method != "kpm")
    throw ConfigError("corda_config.corda_method", "\"" + corda_config->corda_method + "\"",
                      "unknown CorDA method", "use \"ipm\" (instruction-previewed) or \"kpm\" "
                      "(knowledge-preserved)");
  if (velora_config && velora_config->is_object()) {
    detail::check_positive(*velora_config, "velora_config", "num_groups");
    detail::check_positive(*velora_config, "velora_config", "scale");
    if (const JsonValue* t = velora_config->find("init_type")) {
      if (!t->is_string() || (t->as_string() != "batch_average_once" &&
                              t->as_string() != "batch_average" && t->as_string() != "random"))
        throw ConfigError("velora_config.init_type", t->dump(), "unsupported `init_type`",
                          "supported values are 'batch_average_once', 'batch_average' and 'random'");
    }
  }
  detail::check_dict_field(monteclora_config, "monteclora_config", "MontecloraConfig");
  if (monteclora_config && monteclora_config->is_object()) {
    detail::check_positive(*monteclora_config, "monteclora_config", "num_samples");
    detail::check_positive(*monteclora_config, "monteclora_config", "dirichlet_prior");
    detail::check_positive(*monteclora_config, "monteclora_config", "buffer_size");
  }
  detail::check_dict_field(arrow_config, "arrow_config", "ArrowConfig");
  if (arrow_config && arrow_config->is_object()) {
    detail::check_positive(*arrow_config, "arrow_config", "top_k");
    detail::check_positive(*arrow_config, "arrow_config", "router_temperature");
  }
  detail::check_dict_field(use_bdlora, "use_bdlora", "BdLoraConfig");
  if (use_bdlora && use_bdlora->is_object()) {
    const JsonValue* a = use_bdlora->find("target_modules_bd_a");
    const JsonValue* b = use_bdlora->find("target_modules_bd_b");
    if (a && b && a->is_array() && b->is_array()) {
      for (const auto& x : a->as_array())
        for (const auto& y : b->as_array())
          if (x == y)
            throw ConfigError("use_bdlora", use_bdlora->dump(),
                              "found overlapping modules in target_modules_bd lists: " + x.dump() +
                                  " is in both target_modules_bd_a and target_modules_bd_b",
                              "a module is block-diagonal in A or in B, not both");
    }
  }
}

}  // namespace peft
