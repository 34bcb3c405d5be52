#pragma once
/// What one adapter of one layer is created with (LoraLayer::update_layer; docs/layer.md
/// "Layer state"): rank, alpha and the scaling derived from them, dropout, flags and the init.

#include <cstdint>
#include <string>

#include "peft/config/config_types.hpp"

namespace peft {

struct AdapterSettings {
  std::int64_t r = 8;
  Number lora_alpha = 8;
  double scaling = 1.0;  ///< alpha / r, or alpha / sqrt(r) with use_rslora
  double lora_dropout = 0.0;
  bool use_rslora = false;
  bool lora_bias = false;
  bool use_dora = false;  ///< picks the DoRA variant (BaseLayer::resolve_lora_variant)
  InitMethod init = InitMethod::Default;
  std::string init_name = "True";  ///< init_lora_weights as written (messages: 'pissa', 'True')
  std::int64_t pissa_niter = 0;  ///< N of init "pissa_niter_N" (0: exact SVD)
  std::int64_t loftq_bits = 4;   ///< loftq_config.loftq_bits (init "loftq")
  std::int64_t loftq_iter = 1;   ///< loftq_config.loftq_iter
};

}  // namespace peft
