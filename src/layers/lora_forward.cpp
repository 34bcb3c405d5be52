// LoraLayer's forward paths (docs/layer.md "Forward", docs/lifecycle.md "Mixed-batch
// inference"): the active adapters' variants add their contributions to the base output, and
// mixed batches route rows to adapters. The declarations and contracts are in lora_layer.hpp.

#include <algorithm>

#include "peft/error.hpp"
#include "peft/layers/lora_layer.hpp"

namespace peft {

torch::Tensor LoraLayer::lora_forward(const torch::Tensor& x) {
  if (observer_) observer_(x);
  if (!batch_adapters_.empty()) return forward_mixed_batch(x, batch_adapters_);
  if (!disabled_) {
    if (LoraLayer* copy = modules_to_save_.active_copy(active_)) return copy->base_forward(x);
    // Trainable tokens: the weight with the active adapter's rows (merged: they are in W already).
    if (const std::string* tokens = tokens_.first_of(active_); tokens && !merged())
      return token_forward(x, *tokens);
  }
  if (disabled_) {
    if (merged()) unmerge();
    return base_forward(x);
  }
  if (merged()) return base_forward(x);
  if (active_.size() == 1) {
    // One adapter: the base and its branch may run as one autograd node (plain LoRA on
    // Linear/Conv1D while training; see BaseLayer::fused_lora_forward).
    auto it = adapters_.find(active_.front());
    if (it != adapters_.end()) {
      const torch::Tensor y = it->second.variant->fused_forward(view(it->second), x);
      if (y.defined()) return y;
    }
  }
  torch::Tensor result = base_forward(x);
  const auto out_dtype = result.scalar_type();
  torch::Tensor h = x;
  for (const auto& name : active_) {
    auto it = adapters_.find(name);
    if (it == adapters_.end()) continue;  // an adapter other layers have
    const Adapter& a = it->second;
    h = lora_input(h, a.factors);  // cast once, reused by the following adapters
    a.variant->forward(view(a), result, h);
  }
  return result.scalar_type() == out_dtype ? result : result.to(out_dtype);
}

namespace {

/// PEFT's AuxiliaryTrainingWrapper mixes batches only for these base types.
bool wrapper_mixes_batches(const std::string& layer_type) {
  for (const char* t : {"Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d"})
    if (layer_type == t) return true;
  return false;
}

}  // namespace

torch::Tensor LoraLayer::forward_mixed_batch(const torch::Tensor& x, const std::vector<std::string>& adapter_names) {
  if (static_cast<std::int64_t>(adapter_names.size()) != x.size(0))
    throw Error("mixed-batch forward: " + std::to_string(adapter_names.size()) + " adapter names for a batch of " +
                std::to_string(x.size(0)) + " (hint: give one name per row, \"__base__\" for none)");
  if (merged())
    throw Error("mixed-batch forward: cannot pass adapter names while adapters are merged "
                "(hint: call unmerge_adapter() first)");
  for (const auto& n : adapter_names) {
    auto it = adapters_.find(n);
    if (it == adapters_.end() || it->second.variant->supports_mixed_batch()) continue;
    const std::string variant = it->second.variant->name();
    throw Error("Cannot pass `adapter_names` when " + variant + " is enabled (adapter `" + n + "` uses " + variant +
                "; hint: run one forward per adapter instead)");
  }
  // A layer with modules_to_save copies or trainable tokens is one of PEFT's wrappers: every
  // named adapter must have its copy / rows here (PEFT raises KeyError), "__base__" rows run the
  // original layer.
  const bool wrapper = !modules_to_save_.empty() || !tokens_.empty();
  if (wrapper && !disabled_) {
    if (!wrapper_mixes_batches(layer_type()))
      throw UnsupportedModuleError(std::string("Mixed batching is only supported for the following modules: Linear, "
                                               "Embedding, Conv1d, Conv2d, Conv3d (this ") +
                                   layer_type() + " holds modules_to_save copies)");
    for (const auto& n : adapter_names)
      if (n != "__base__" && !modules_to_save_.has(n) && !tokens_.has(n) && !has_adapter(n))
        throw Error("mixed-batch forward: adapter `" + n + "` has no " +
                    (tokens_.empty() ? "modules_to_save copy" : "trainable tokens") +
                    " in this layer (PEFT raises KeyError: '" + n +
                    "'; hint: name only adapters that have one, or \"__base__\")");
  }
  torch::Tensor result = base_forward(x);
  if (disabled_) return result;
  auto rows_of = [&](const std::string& name) {
    std::vector<std::int64_t> rows;
    for (std::size_t i = 0; i < adapter_names.size(); ++i)
      if (adapter_names[i] == name) rows.push_back(static_cast<std::int64_t>(i));
    return torch::tensor(rows, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
  };
  std::vector<std::string> distinct;
  for (const auto& n : adapter_names)
    if (std::find(distinct.begin(), distinct.end(), n) == distinct.end()) distinct.push_back(n);
  for (const auto& name : distinct) {
    if (LoraLayer* copy = modules_to_save_.find(name)) {  // modules_to_save rows run through that adapter's copy
      auto idx = rows_of(name);
      result = result.index_copy(0, idx, copy->base_forward(x.index_select(0, idx)));
      continue;
    }
    if (tokens_.has(name)) {  // trainable-token rows use the weight with that adapter's rows
      auto idx = rows_of(name);
      auto rows = token_forward(x.index_select(0, idx), name);
      result = result.index_copy(0, idx, rows.to(result.scalar_type()));
      continue;
    }
    auto it = adapters_.find(name);
    if (name == "__base__" || it == adapters_.end()) continue;
    const Adapter& a = it->second;
    auto idx = rows_of(name);
    // Mixed batches compute plain LoRA deltas (PEFT's _mixed_batch_forward); other variants refused above.
    const torch::Tensor sub = lora_input(x.index_select(0, idx), a.factors);
    auto delta = lora_branch(sub, a.factors, AdapterDropout{a.dropout.get()}) * a.settings.scaling;
    result = result.index_add(0, idx, delta.to(result.scalar_type()));
  }
  return result;
}

}  // namespace peft
