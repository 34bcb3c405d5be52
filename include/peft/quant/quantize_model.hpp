#pragma once
/// Model-level QLoRA (docs/qlora.md): quantise a model's Linear layers to 4 bits as transformers'
/// bitsandbytes loading does, and PEFT's prepare_model_for_kbit_training.

#include <torch/nn/module.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "peft/quant/bnb_config.hpp"
#include "peft/quant/quant_state.hpp"

namespace peft {

/// cfg.bnb_4bit_quant_type and cfg.bnb_4bit_compute_dtype as LibTorch values (cfg validated).
QuantType4bit bnb_quant_type(const BitsAndBytesConfig& cfg);
torch::ScalarType bnb_compute_dtype(const BitsAndBytesConfig& cfg);

/// transformers' rule: a module stays dense when an entry of cfg.skip_modules() is a substring
/// of its dotted name.
bool keeps_dense(const std::string& module_name, const BitsAndBytesConfig& cfg);

/// Quantises every peft::Linear of `model` (in place, bnb's Linear4bit storage) except those kept
/// dense by cfg.skip_modules(): a layer stays dense when an entry is a substring of its dotted
/// name, transformers' rule (default: "lm_head"). Layers already quantised are left alone;
/// adapters on a layer stay as they are (fp32). GPT-2's Conv1D layers stay dense (a warning says
/// how many; transformers would quantise them). Returns the names quantised. cfg is validated
/// (ConfigError) before anything changes; cfg.load_in_4bit must be true.
std::vector<std::string> quantize_model_4bit(torch::nn::Module& model, const BitsAndBytesConfig& cfg);

/// Every quantised Linear of `model` back to a dense weight in `dtype` (default: the dtype each
/// was quantised from): merging adapters into it is then exact (no requantisation). Returns how
/// many layers changed.
std::int64_t dequantize_model(torch::nn::Module& model, std::optional<torch::ScalarType> dtype = std::nullopt);

/// PEFT's prepare_model_for_kbit_training: every parameter frozen, fp16/bf16 parameters cast to
/// fp32 (the 4-bit codes are uint8 and stay). Gradient checkpointing is the model's own switch.
void prepare_model_for_kbit_training(torch::nn::Module& model);

/// What the quantised weights of a model occupy.
struct QuantizedFootprint {
  std::int64_t layers = 0;       ///< quantised Linear layers
  std::int64_t parameters = 0;   ///< weights they hold (out · in summed)
  std::int64_t code_bytes = 0;   ///< packed codes
  std::int64_t state_bytes = 0;  ///< absmax and maps
  /// Bytes per quantised parameter, codes and state together (0.5 + state).
  double bytes_per_parameter() const {
    return parameters ? static_cast<double>(code_bytes + state_bytes) / static_cast<double>(parameters) : 0.0;
  }
};
QuantizedFootprint quantized_footprint(torch::nn::Module& model);

}  // namespace peft
