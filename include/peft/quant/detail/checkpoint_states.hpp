#pragma once
/// The bitsandbytes 4-bit weights of a checkpoint's tensors (quant_state.hpp lists the keys):
/// grouping each `<w>.absmax` / `.quant_map` / `.nested_*` / `.quant_state.bitsandbytes__*`
/// with the U8 codes `<w>`, every state validated before anyone uses one. Shared by the model
/// loader (load_causal_lm) and the checkpoint merge (peft-merge).

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <unordered_map>

#include "peft/quant/quant_state.hpp"

namespace peft::detail {

/// The part of a bnb state key after `<w>.` ("absmax", "quant_map", "nested_absmax",
/// "nested_quant_map", "quant_state.bitsandbytes__nf4|fp4") when `<w>` ends in ".weight"; else "".
std::string bnb_state_suffix(const std::string& key);

/// Every 4-bit weight of a checkpoint.
struct Bnb4bitWeights {
  std::map<std::string, QuantState4bit> states;   ///< weight key ("fc1.weight") -> its state
  std::map<std::string, std::string> owner;       ///< state entry key -> its weight key
  bool empty() const { return states.empty(); }
};

/// Finds and validates the 4-bit weights among `tensors` (key -> tensor; codes are only read for
/// their size). `source_of(key)` names the file a key came from in errors. SerializationError for
/// a state without codes or a malformed state (QuantState4bit::from_entries).
Bnb4bitWeights find_bnb_4bit_weights(const std::unordered_map<std::string, torch::Tensor>& tensors,
                                     const std::function<std::string(const std::string&)>& source_of);

}  // namespace peft::detail
