#pragma once
/// peft::LoraConfig: every field of PEFT 0.20's LoraConfig and the PeftConfig fields it inherits,
/// named like the adapter_config.json keys, with PEFT's defaults (docs/config.md#loraconfig).
///
///   peft::LoraConfig cfg;
///   cfg.r = 16; cfg.lora_alpha = 32; cfg.target_modules = {"q_proj", "v_proj"};
///   cfg.validate();   // PEFT's post-init checks + normalisation; throws peft::ConfigError
///
/// A config built field by field is validated when it is used (injection, saving) or when
/// validate() is called; configs read from JSON/YAML are validated by the reader.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/config_types.hpp"
#include "peft/format/json_value.hpp"

namespace peft {

/// The PEFT release whose adapter_config.json format and behaviour this library follows; written
/// as `peft_version` by configs we create.
inline constexpr const char* kPeftFormatVersion = "0.20.0";

/// `task_type` (PEFT's TaskType enum).
enum class TaskType { SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION };

/// `bias`: which base biases are trained and saved (docs/layer.md#bias-modes-and-trainability).
enum class Bias { none, all, lora_only };

inline const char* to_string(TaskType t) {
  switch (t) {
    case TaskType::SEQ_CLS: return "SEQ_CLS";
    case TaskType::SEQ_2_SEQ_LM: return "SEQ_2_SEQ_LM";
    case TaskType::CAUSAL_LM: return "CAUSAL_LM";
    case TaskType::TOKEN_CLS: return "TOKEN_CLS";
    case TaskType::QUESTION_ANS: return "QUESTION_ANS";
    case TaskType::FEATURE_EXTRACTION: return "FEATURE_EXTRACTION";
  }
  return "?";
}
inline const char* to_string(Bias b) {
  switch (b) {
    case Bias::none: return "none";
    case Bias::all: return "all";
    case Bias::lora_only: return "lora_only";
  }
  return "?";
}
/// Parse a closed-set name; std::nullopt when unknown (callers raise a ConfigError).
inline std::optional<TaskType> parse_task_type(const std::string& s) {
  for (TaskType t : {TaskType::SEQ_CLS, TaskType::SEQ_2_SEQ_LM, TaskType::CAUSAL_LM,
                     TaskType::TOKEN_CLS, TaskType::QUESTION_ANS, TaskType::FEATURE_EXTRACTION})
    if (s == to_string(t)) return t;
  return std::nullopt;
}
inline std::optional<Bias> parse_bias(const std::string& s) {
  for (Bias b : {Bias::none, Bias::all, Bias::lora_only})
    if (s == to_string(b)) return b;
  return std::nullopt;
}

/// `loftq_config` when LoftQ is used.
struct LoftQConfig {
  std::int64_t loftq_bits = 4;
  std::int64_t loftq_iter = 1;
  friend bool operator==(const LoftQConfig& a, const LoftQConfig& b) {
    return a.loftq_bits == b.loftq_bits && a.loftq_iter == b.loftq_iter;
  }
};

/// `eva_config` (EVA init). rho >= 1, 0 <= tau <= 1.
struct EvaConfig {
  double rho = 2.0;
  double tau = 0.99;
  bool use_label_mask = true;
  std::int64_t label_mask_value = -100;
  bool whiten = false;
  bool adjust_scaling_factors = true;
  friend bool operator==(const EvaConfig& a, const EvaConfig& b) {
    return a.rho == b.rho && a.tau == b.tau && a.use_label_mask == b.use_label_mask &&
           a.label_mask_value == b.label_mask_value && a.whiten == b.whiten &&
           a.adjust_scaling_factors == b.adjust_scaling_factors;
  }
};

/// `corda_config` (CorDA init). corda_method is "ipm" or "kpm".
struct CordaConfig {
  std::optional<std::string> cache_file;
  std::optional<std::string> covariance_file;
  std::string corda_method = "ipm";
  bool verbose = false;
  bool use_float16_for_covariance = false;
  bool prune_temporary_fields = true;
  friend bool operator==(const CordaConfig& a, const CordaConfig& b) {
    return a.cache_file == b.cache_file && a.covariance_file == b.covariance_file &&
           a.corda_method == b.corda_method && a.verbose == b.verbose &&
           a.use_float16_for_covariance == b.use_float16_for_covariance &&
           a.prune_temporary_fields == b.prune_temporary_fields;
  }
};

/// The LoRA configuration. Field order, names and defaults follow PEFT 0.20.0.
struct LoraConfig {
  // ---- PeftConfig (inherited) ----
  std::optional<TaskType> task_type;               ///< None by default
  std::optional<JsonValue> auto_mapping;           ///< written at save time for custom models
  std::optional<std::string> peft_version = std::string(kPeftFormatVersion);
  std::optional<std::string> base_model_name_or_path;
  std::optional<std::string> revision;
  bool inference_mode = false;
  static constexpr const char* peft_type = "LORA";  ///< always "LORA"

  // ---- LoRA fields ----
  std::int64_t r = 8;                    ///< rank; must be > 0 for every targeted layer
  ModuleSpec target_modules;             ///< list, regex or "all-linear"; None = arch default
  ModuleSpec exclude_modules;            ///< list or regex; excluding wins over targeting
  Number lora_alpha = 8;                 ///< scaling = alpha / r (or / sqrt(r) with rslora)
  double lora_dropout = 0.0;             ///< on the adapter input only; <= 0 means none
  bool fan_in_fan_out = false;           ///< weight stored [in, out] (GPT-2 Conv1D)
  Bias bias = Bias::none;
  bool use_rslora = false;
  std::optional<std::vector<std::string>> modules_to_save;
  InitLoraWeights init_lora_weights = true;
  std::optional<LayerIndices> layers_to_transform;
  std::optional<LayerPatterns> layers_pattern;
  PatternMap<std::int64_t> rank_pattern;  ///< regex -> r, first match wins
  PatternMap<Number> alpha_pattern;       ///< regex -> alpha, first match wins
  std::optional<JsonValue> megatron_config;
  std::string megatron_core = "megatron.core";
  std::optional<JsonValue> trainable_token_indices;  ///< list[int] or {module: list[int]}
  std::optional<LoftQConfig> loftq_config;           ///< nullopt is PEFT's `{}`
  std::optional<EvaConfig> eva_config;
  std::optional<CordaConfig> corda_config;
  std::optional<JsonValue> lora_ga_config;
  bool use_dora = false;
  std::optional<JsonValue> velora_config;
  std::optional<std::vector<std::int64_t>> alora_invocation_tokens;
  bool use_qalora = false;
  std::int64_t qalora_group_size = 16;
  std::optional<JsonValue> monteclora_config;
  std::optional<std::vector<std::array<std::int64_t, 2>>> layer_replication;
  bool lora_bias = false;                ///< adds a (scaled) bias to lora_B
  std::optional<std::vector<std::string>> target_parameters;
  std::optional<JsonValue> use_bdlora;
  std::optional<JsonValue> arrow_config;
  bool ensure_weight_tying = false;

  /// Keys of a newer PEFT that this version does not know, kept in file order so a round trip
  /// preserves them (they were reported as a warning when read).
  JsonValue::Object extra_fields;

  /// PEFT's post-init: validates (throws ConfigError naming the field, value and a hint) and
  /// normalises like PEFT (fills eva/corda defaults, drops an ignored loftq_config), emitting
  /// PEFT's warnings through peft::warn. Also rejects values PEFT only rejects later (unknown
  /// `init_lora_weights`, `lora_dropout` > 1), since they can never work.
  void validate();

  /// The init strategy, parsed (throws ConfigError for an unknown name or a bad pissa_niter_N).
  InitMethod init_method() const;
  /// N of "pissa_niter_N" (only meaningful for InitMethod::PissaNiter).
  std::int64_t pissa_niter() const;
};

}  // namespace peft

#include "peft/config/detail/validation.hpp"
