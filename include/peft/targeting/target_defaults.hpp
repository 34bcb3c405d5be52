#pragma once
/// PEFT's architecture defaults for `target_modules=None`
/// (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, docs/matching.md#architecture-defaults), keyed
/// by HF `model_type`.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/config_types.hpp"

namespace peft {

/// The default targets of an HF architecture, or std::nullopt for an unknown model_type
/// (custom models have model_type "custom" and must name their targets).
inline std::optional<ModuleSpec> default_target_modules(const std::string& model_type) {
  using L = std::vector<std::string>;
  static const std::vector<std::pair<std::string, L>> table = {
      {"t5", {"q", "v"}}, {"mt5", {"q", "v"}}, {"bart", {"q_proj", "v_proj"}},
      {"gpt2", {"c_attn"}}, {"bloom", {"query_key_value"}},
      {"blip-2", {"q", "v", "q_proj", "v_proj"}}, {"opt", {"q_proj", "v_proj"}},
      {"gptj", {"q_proj", "v_proj"}}, {"gpt_neox", {"query_key_value"}},
      {"gpt_neo", {"q_proj", "v_proj"}}, {"bert", {"query", "value"}},
      {"roberta", {"query", "value"}}, {"xlm-roberta", {"query", "value"}},
      {"electra", {"query", "value"}}, {"deberta-v2", {"query_proj", "value_proj"}},
      {"deberta", {"in_proj"}}, {"layoutlm", {"query", "value"}}, {"llama", {"q_proj", "v_proj"}},
      {"llama4", {"q_proj", "v_proj"}}, {"chatglm", {"query_key_value"}},
      {"gpt_bigcode", {"c_attn"}}, {"mpt", {"Wqkv"}}, {"RefinedWebModel", {"query_key_value"}},
      {"RefinedWeb", {"query_key_value"}}, {"falcon", {"query_key_value"}},
      {"btlm", {"c_proj", "c_attn"}}, {"codegen", {"qkv_proj"}}, {"mistral", {"q_proj", "v_proj"}},
      {"mixtral", {"q_proj", "v_proj"}}, {"stablelm", {"q_proj", "v_proj"}},
      {"phi", {"q_proj", "v_proj", "fc1", "fc2"}}, {"gemma", {"q_proj", "v_proj"}},
      {"gemma2", {"q_proj", "v_proj"}}, {"gemma3_text", {"q_proj", "v_proj"}},
      {"qwen2", {"q_proj", "v_proj"}}, {"qwen3", {"q_proj", "v_proj"}},
      {"nemotron_h", {"q_proj", "k_proj", "v_proj", "o_proj"}},
      {"rwkv", {"key", "value", "receptance", "output"}},
      {"rwkv7", {"r_proj", "k_proj", "v_proj", "o_proj", "key", "value"}},
  };
  if (model_type == "gemma4") return ModuleSpec::regex(R"(.*language_model\..*\.(q_proj|v_proj))");
  for (const auto& e : table)
    if (e.first == model_type) return ModuleSpec::list(e.second);
  return std::nullopt;
}

}  // namespace peft
