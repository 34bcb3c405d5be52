#pragma once
/// BitsAndBytesConfig: transformers' 4-bit loading options under transformers' names (the
/// `quantization_config` of a `*-bnb-4bit` model's config.json, the trainer's `quantization:`).
/// Defaults are transformers': fp4, no double quantisation, compute dtype float32, uint8 storage.
/// 8-bit loading (LLM.int8) is not implemented and is refused. Torch-free (part of peft::format,
/// so the YAML readers can hold it); quant/quantize_model.hpp maps it to LibTorch types.

#include <optional>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"

namespace peft {

struct BitsAndBytesConfig {
  bool load_in_4bit = false;
  bool load_in_8bit = false;                  ///< refused (LLM.int8 is not implemented)
  std::string bnb_4bit_quant_type = "fp4";    ///< "nf4" | "fp4"
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_compute_dtype = "float32";  ///< "float32" | "bfloat16" | "float16"
  std::string bnb_4bit_quant_storage = "uint8";    ///< only uint8
  /// Modules kept dense: a Linear stays unquantised when any entry is a substring of its dotted
  /// name (transformers' rule). Unset: transformers' default, the output head ("lm_head").
  std::optional<std::vector<std::string>> llm_int8_skip_modules;
  std::int64_t blocksize = 64;  ///< bitsandbytes' block size (transformers always uses 64)

  /// ConfigError on `BitsAndBytesConfig`.<field> for a value peft-cpp does not implement.
  void validate() const;
  /// The skip list in effect (llm_int8_skip_modules, or {"lm_head"}).
  std::vector<std::string> skip_modules() const;

  /// From a config.json `quantization_config` object (quant_method must be "bitsandbytes";
  /// transformers' `_load_in_4bit` spelling accepted; unknown keys of transformers' are kept out).
  static BitsAndBytesConfig from_json(const JsonValue& j, const std::string& source);
  /// transformers' BitsAndBytesConfig.to_dict() for config.json (sorted keys as it writes them).
  JsonValue to_json() const;
};

}  // namespace peft
