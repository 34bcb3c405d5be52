#pragma once
/// What a base-rewriting init (PiSSA, OLoRA, CorDA) produces for one layer, and the dtype rule
/// they share (docs/init.md#strategies-at-a-glance): the base weight must be fp32/fp16/bf16; the math
/// runs in fp32 and the
/// residual is written back in the original dtype.

#include <torch/types.h>

#include <algorithm>
#include <string>

#include "peft/error.hpp"

namespace peft {

/// lora_A [r, in] and lora_B [out, r] in fp32 (update_layer casts them to the base dtype, as
/// PEFT does), and the residual base weight W - (scaling * B) @ A in W's dtype and stored layout.
struct InitFactors {
  torch::Tensor lora_A;
  torch::Tensor lora_B;
  torch::Tensor base_weight;
};

namespace detail {
/// PEFT raises TypeError for other dtypes (int8 / fp64 / quantised storage); `problem` is PEFT's text.
inline void require_float_weight(const torch::Tensor& w, const std::string& init_name, const std::string& problem) {
  const auto dt = w.scalar_type();
  if (dt == torch::kFloat32 || dt == torch::kFloat16 || dt == torch::kBFloat16) return;
  throw ConfigError("init_lora_weights", "\"" + init_name + "\"",
                    problem + " Got " + std::string(c10::toString(dt)) + ".",
                    "cast the base model to float32, float16 or bfloat16 before creating the adapter",
                    ConfigError::Kind::WrongType);
}

/// r must fit the decomposition (PEFT would silently create factors of the wrong shape).
inline void require_rank_fits(const torch::Tensor& w, std::int64_t r, const std::string& init_name) {
  const std::int64_t k = std::min(w.size(0), w.size(1));
  if (r > k)
    throw ConfigError("r", std::to_string(r),
                      "init \"" + init_name + "\" needs r <= min(out_features, in_features) = " + std::to_string(k),
                      "lower r (or rank_pattern) for this layer");
}
}  // namespace detail

}  // namespace peft
