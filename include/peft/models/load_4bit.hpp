#pragma once
/// Loading a causal LM with a 4-bit base (QLoRA; docs/qlora.md).

#include <optional>
#include <string>

#include "peft/models/causal_lm.hpp"
#include "peft/quant/bnb_config.hpp"

namespace peft::models {

/// load_causal_lm with transformers' BitsAndBytesConfig (q.load_in_4bit must be true):
///   * a dense checkpoint directory is quantised while it streams in: each Linear weight is
///     quantised right after it is read, so peak memory is about the 4-bit model, its dense parts
///     (embeddings, norms, the head) and one dense Linear weight;
///   * a pre-quantised (`*-bnb-4bit`) directory loads as load_causal_lm does (its own
///     quantization_config wins);
///   * a builtin is quantised after construction.
/// Layers are chosen as quantize_model_4bit chooses them (not `lm_head` by default). ConfigError
/// for a bad q before anything is read.
CausalLM load_causal_lm_4bit(const std::string& dir_or_builtin, const BitsAndBytesConfig& q,
                             torch::Device device = torch::kCPU, std::optional<torch::Dtype> dtype = std::nullopt);

}  // namespace peft::models
