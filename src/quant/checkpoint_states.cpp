// Grouping a checkpoint's bitsandbytes 4-bit entries by weight (quant/detail/checkpoint_states.hpp).

#include "peft/quant/detail/checkpoint_states.hpp"

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"

namespace peft::detail {

std::string bnb_state_suffix(const std::string& key) {
  for (const char* s : {"absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4",
                        "quant_state.bitsandbytes__fp4"})
    if (ends_with(key, std::string(".weight.") + s)) return s;
  return "";
}

Bnb4bitWeights find_bnb_4bit_weights(const std::unordered_map<std::string, torch::Tensor>& tensors,
                                     const std::function<std::string(const std::string&)>& source_of) {
  std::map<std::string, std::map<std::string, torch::Tensor>> entries;  // weight key -> suffix -> tensor
  Bnb4bitWeights out;
  for (const auto& [key, t] : tensors) {
    const std::string suffix = bnb_state_suffix(key);
    if (suffix.empty()) continue;
    const std::string wkey = key.substr(0, key.size() - suffix.size() - 1);
    entries[wkey][suffix] = t;
    out.owner[key] = wkey;
  }
  for (const auto& [wkey, e] : entries) {
    auto it = tensors.find(wkey);
    if (it == tensors.end()) {
      const std::string first = wkey + "." + e.begin()->first;
      throw SerializationError(source_of(first) + ": " + ticked(first) + " is a 4-bit quant state but there are no " +
                               ticked(wkey) + " codes (hint: the checkpoint is incomplete)");
    }
    out.states.emplace(wkey, QuantState4bit::from_entries(e, it->second, wkey, source_of(wkey)));
  }
  return out;
}

}  // namespace peft::detail
