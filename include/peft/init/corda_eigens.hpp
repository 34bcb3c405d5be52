#pragma once
/// The CorDA eigens a layer carries between preprocess_corda and a "corda" update_layer (the
/// math is in init/corda.hpp; docs/init.md).

#include <torch/types.h>

namespace peft {

/// PEFT's CordaEigens (attached to a layer by preprocess_corda, consumed by the init):
/// S_WC [r], U_WC [out, r], V_WC [in, r], already cropped to the layer's rank.
struct CordaEigens {
  torch::Tensor S_WC;
  torch::Tensor U_WC;
  torch::Tensor V_WC;
};

}  // namespace peft
