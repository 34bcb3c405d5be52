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
  if (!disabled_)
    if (LoraLayer* copy = modules_to_save_.active_copy(active_)) return copy->base_forward(x);
  if (disabled_) {
    if (merged()) unmerge();
    return base_forward(x);
  }
  if (merged()) return base_forward(x);
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
    auto it = adapters_.find(name);
    if (name == "__base__" || it == adapters_.end()) continue;
    const Adapter& a = it->second;
    auto idx = rows_of(name);
    // Mixed batches compute plain LoRA deltas (PEFT's _mixed_batch_forward); other variants refused above.
    const torch::Tensor sub = x.index_select(0, idx).to(a.factors.A.scalar_type());
    auto delta = lora_branch(sub, a.factors, AdapterDropout{a.dropout.get()}) * a.settings.scaling;
    result = result.index_add(0, idx, delta.to(result.scalar_type()));
  }
  return result;
}

}  // namespace peft
