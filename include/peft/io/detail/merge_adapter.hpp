#pragma once
/// peft-merge internals: one adapter directory read and checked on its own (nothing about the
/// base checkpoint yet). Used by src/io/merge_into_checkpoint.cpp.

#include <torch/types.h>

#include <filesystem>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/io/merge_into_checkpoint.hpp"

namespace peft::detail {

/// One adapted module's factors as read from the adapter file. Layout: Matrix (Linear / GPT-2
/// Conv1D, decided against the base weight's shape), Embedding (`lora_embedding_A/B`: the delta
/// (B A)ᵀ is laid out like a fan_in_fan_out weight), Conv (A [r, in, k…], B [out, r, 1…]).
struct MergeFactors {
  enum class Layout { Matrix, Embedding, Conv };
  torch::Tensor A, B, b_bias, magnitude;
  Layout layout = Layout::Matrix;
};

struct MergeAdapterData {
  std::filesystem::path dir;
  std::filesystem::path file;  ///< adapter_model.safetensors (for messages)
  double weight = 1.0;
  LoraConfig cfg;
  std::map<std::string, MergeFactors> modules;  ///< module key (no root prefix) -> factors
  /// Trainable tokens: module key -> (row indices from trainable_token_indices, rows [n, dim]).
  std::map<std::string, std::pair<std::vector<std::int64_t>, torch::Tensor>> tokens;
  /// base key -> tensor (bias="all" biases, modules_to_save copies)
  std::vector<std::pair<std::string, torch::Tensor>> replacements;
};

/// Read, check and sort one adapter's tensors: refuses inits that rewrote the base, target_parameters,
/// layer_replication, DoRA with a weight other than 1, non-floating or non-finite tensors, keys
/// that are not PEFT LoRA keys, and factors that do not fit each other or the config.
MergeAdapterData read_merge_adapter(const MergeAdapter& spec);

}  // namespace peft::detail
