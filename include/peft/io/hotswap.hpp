#pragma once
/// Hot-swapping (PEFT's utils/hotswap.py; docs/lifecycle.md "Hot-swapping adapters"): load
/// another adapter's weights into an existing adapter's tensors in place, without re-injecting.
/// The same tensors keep their identity and storage (nothing is re-allocated), so a serving
/// process can swap adapters between requests while other references (optimizers, captured
/// pointers) stay valid.
///
///   auto pm = peft::from_pretrained(model, "adapter_0");
///   peft::prepare_for_hotswap(pm, /*target_rank=*/64);   // once, when ranks differ
///   peft::hotswap_adapter(pm, "adapter_1", "default");    // between requests
///
/// PEFT's rules, and where peft-cpp decides:
///   * the configs must agree on use_rslora, lora_dropout, alpha_pattern and use_dora (PEFT
///     compares with the *active* adapter's config; peft-cpp with the swapped adapter's);
///   * every key of the new file must name a LoRA tensor of the swapped adapter (unexpected keys:
///     Error listing them; modules_to_save and bias keys too, as in PEFT);
///   * layers the new adapter lacks get A = B = 0 (no contribution; PEFT) and are no longer
///     saved; for DoRA that is refused (PEFT zeroes the magnitude, which zeroes the layer);
///   * scaling per layer comes from the new config (rank_pattern / alpha_pattern resolved for the
///     module key as at injection; PEFT resolves them against the state-dict key);
///   * a new rank r2 below the tensors' rank is zero-padded in place; above it is an Error: PEFT
///     swaps in larger tensors (a re-allocation), peft-cpp asks for prepare_for_hotswap with a
///     target_rank >= every rank to be served;
///   * a merged adapter cannot be swapped (Error; unmerge first).
/// Everything is checked before the first value changes.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft {

/// PEFT's prepare_model_for_compiled_hotswap(target_rank): zero-pad every adapter's factors to
/// rank `target_rank` (A [r, ...] -> [target_rank, ...], B [out, r, ...] -> [out, target_rank, ...]),
/// keeping each tensor's identity. Outputs are unchanged; save_pretrained still writes the
/// adapter's own rank (the config is not changed, unlike PEFT's optional `config` argument).
/// Error when a rank is above target_rank or the model has no LoRA layer.
void prepare_for_hotswap(LoraModel& pm, std::int64_t target_rank);

/// PEFT's hotswap_adapter_from_state_dict: `tensors` keyed as on disk
/// (`base_model.model.<m>.lora_A.weight`, ...), `config` the new adapter's config.
void hotswap_adapter_from_state_dict(LoraModel& pm, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                     const std::string& adapter_name, const LoraConfig& config);

/// PEFT's hotswap_adapter: the adapter directory `dir` (adapter_config.json +
/// adapter_model.safetensors) replaces the weights of `adapter_name`, which keeps its name.
void hotswap_adapter(LoraModel& pm, const std::filesystem::path& dir, const std::string& adapter_name = "default");

}  // namespace peft
