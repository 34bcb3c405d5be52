#pragma once
// EVA part of the model-case harness (docs/conformance.md): run initialize_lora_eva_weights with
// the case's calibration batches and compare with what PEFT initialised.

#include <filesystem>
#include <functional>

#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft_test {

/// Runs EVA on `pm` (adapter "default" just created with init "eva") feeding
/// `<case>/calibration.safetensors` (batch.0, batch.1, ...) through `forward`, then checks the
/// rewritten rank_pattern / alpha_pattern / target_modules against `saved` (adapter_config.json),
/// and init.<m>.delta, .base_weight, .lora_B, .lora_A (row space) against `expected`.
/// Throws std::runtime_error naming the first mismatch.
void run_eva_and_check(peft::LoraModel& pm, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                       const std::filesystem::path& case_dir, const peft::LoraConfig& saved,
                       const peft::SafetensorsFile& expected);

}  // namespace peft_test
