#pragma once
/// PEFT's PiSSA / OLoRA / CorDA -> LoRA conversion at save time
/// (docs/file-format.md#converting-pissa-olora-and-corda-adapters,
/// save_pretrained(path_initial_model_for_weight_conversion=P)): an adapter trained on a residual
/// base becomes a plain LoRA adapter for the *original* base.
///
///   W = W_res + s B0 A0,  W + dW = W_res + s B A   =>   dW = s [B, -B0] [A; A0]
///   lora_A := concat_rows(A, A0) [2r, in];  lora_B := concat_cols(B, -B0) [out, 2r]
///   config: r * 2, lora_alpha * 2 (rslora: * sqrt(2)), rank/alpha_pattern values * 2, init true
///
/// P is a directory holding the *initial* adapter (adapter_model.safetensors saved right after
/// creation, before training). Decisions: peft-cpp only reads P's tensors, so P's config may say
/// "pissa" (PEFT insists on true there because it re-loads P into the model); keys other than
/// lora_A/lora_B (modules_to_save copies, bias="all" biases) are kept as they are (PEFT drops
/// them from the converted file).

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// The config PEFT writes for the converted adapter. ConfigError for rslora with rank/alpha
/// patterns (PEFT's ValueError: the doubled patterns cannot keep rslora's scaling).
inline LoraConfig converted_lora_config(LoraConfig cfg) {
  if (cfg.use_rslora && (!cfg.rank_pattern.empty() || !cfg.alpha_pattern.empty()))
    throw ConfigError("use_rslora", "true",
                      "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported "
                      "when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`",
                      "save without the conversion and load the adapter onto the residual base instead");
  std::string init = cfg.init_lora_weights.is_bool() ? (cfg.init_lora_weights.as_bool() ? "true" : "false")
                                                      : cfg.init_lora_weights.lower_name();
  if (init.rfind("pissa", 0) != 0 && init.rfind("corda", 0) != 0 && init.rfind("olora", 0) != 0 &&
      init.rfind("true", 0) != 0)
    warn("`path_initial_model_for_weight_conversion` only works for converting a PiSSA/CorDA/OLoRA adapter to "
         "a LoRA adapter");
  cfg.init_lora_weights = true;
  cfg.r *= 2;
  if (!cfg.use_rslora)
    cfg.lora_alpha.value *= 2;  // an int stays an int, as in Python
  else
    cfg.lora_alpha = Number(cfg.lora_alpha.value * std::sqrt(2.0));  // alpha / sqrt(r) unchanged
  PatternMap<std::int64_t> ranks;
  for (const auto& [k, v] : cfg.rank_pattern) ranks.set(k, 2 * v);
  cfg.rank_pattern = ranks;
  PatternMap<Number> alphas;
  for (const auto& [k, v] : cfg.alpha_pattern) {
    Number n = v;
    n.value *= 2;
    alphas.set(k, n);
  }
  cfg.alpha_pattern = alphas;
  return cfg;
}

/// PEFT's subtract_mutated_init on one adapter's saved tensors (on-disk keys): every lora_A /
/// lora_B key is paired with the same key of `initial`. SerializationError when the initial
/// adapter lacks a key or its shape differs (`where` names its file).
inline std::vector<std::pair<std::string, torch::Tensor>> convert_mutated_to_lora(
    const std::vector<std::pair<std::string, torch::Tensor>>& trained, const SafetensorsFile& initial,
    const std::string& where) {
  using detail::ends_with;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  torch::NoGradGuard no_grad;
  for (const auto& [key, t] : trained) {
    const bool is_a = ends_with(key, "lora_A.weight");
    const bool is_b = ends_with(key, "lora_B.weight");
    if (ends_with(key, "lora_B.bias"))
      throw ConfigError("lora_bias", "true", "an adapter with lora_bias cannot be converted (`" + key + "`)",
                        "lora_bias is only allowed with init_lora_weights true/false anyway");
    if (!is_a && !is_b) {
      out.emplace_back(key, t);
      continue;
    }
    const torch::Tensor* init = initial.find(key);
    if (!init)
      throw SerializationError(where + ": the initial adapter has no `" + key +
                               "` (hint: save the adapter right after creating it, before training, and pass that directory)");
    if (init->sizes() != t.sizes())
      throw SerializationError(where + ": `" + key + "` of the initial adapter has another shape than the trained one");
    const torch::Tensor i0 = init->to(t.device(), t.scalar_type());
    out.emplace_back(key, is_a ? torch::cat({t, i0}, 0) : torch::cat({t, -i0}, 1));
  }
  return out;
}

}  // namespace peft
