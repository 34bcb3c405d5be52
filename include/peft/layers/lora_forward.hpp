#pragma once
/// LoraLayer's forward paths (spec §4.4, §5.2, §7.8): the active adapters summed onto the base
/// output, DoRA's re-normalised branch, and mixed batches (one adapter per row). Included by
/// layers/lora_layer.hpp; the declarations and their contracts are there.

#include "peft/layers/lora_layer.hpp"

namespace peft {

inline torch::Tensor LoraLayer::lora_forward(const torch::Tensor& x) {
  if (observer_) observer_(x);
  if (!batch_adapters_.empty()) return forward_mixed_batch(x, batch_adapters_);
  if (!disabled_ && !copies_.empty())
    for (const auto& name : active_) {
      auto it = copies_.find(name);
      if (it != copies_.end()) return it->second->base_forward(x);
    }
  if (disabled_) {
    if (merged()) unmerge();
    return base_forward(x);
  }
  if (merged()) return base_forward(x);
  torch::Tensor result = base_forward(x);
  const auto out_dtype = result.scalar_type();
  torch::Tensor h = x;
  for (const auto& name : active_) {
    if (!has_adapter(name)) continue;
    auto& A = lora_A(name);
    auto& B = lora_B(name);
    if (h.scalar_type() != A->weight.scalar_type()) h = h.to(A->weight.scalar_type());
    const auto& s = settings_.at(name);
    if (s.use_dora) {
      result = dora_forward(name, result, h);
      continue;
    }
    torch::Tensor in = s.lora_dropout > 0.0 ? dropout(name).forward(h) : h;
    const auto low = torch::linear(in, A->weight);  // [..., r]
    if (!B->bias.defined() && result.scalar_type() == low.scalar_type() && result.dim() >= 2) {
      // result + s·(low @ Bᵀ) as one addmm: no [tokens, out] temporaries besides the output.
      if (result.dim() == 2) {
        // In place on the base output (no op's backward needs it): saves a [tokens, out] copy.
        // Not for >2-D outputs: in place on a reshaped view costs a gradient copy in backward.
        result.addmm_(low, B->weight.t(), 1, s.scaling);
        continue;
      }
      const auto out = result.size(-1);
      result = torch::addmm(result.reshape({-1, out}), low.reshape({-1, s.r}), B->weight.t(), 1, s.scaling)
                   .view(result.sizes());
      continue;
    }
    // B's bias (lora_bias) is added before scaling, so it is scaled too.
    result = result + torch::linear(low, B->weight, B->bias) * s.scaling;
  }
  return result.scalar_type() == out_dtype ? result : result.to(out_dtype);
}

inline torch::Tensor LoraLayer::forward_mixed_batch(const torch::Tensor& x, const std::vector<std::string>& adapter_names) {
  if (static_cast<std::int64_t>(adapter_names.size()) != x.size(0))
    throw Error("mixed-batch forward: " + std::to_string(adapter_names.size()) +
                " adapter names for a batch of " + std::to_string(x.size(0)) +
                " (hint: give one name per row, \"__base__\" for none)");
  if (merged())
    throw Error("mixed-batch forward: cannot pass adapter names while adapters are merged "
                "(hint: call unmerge_adapter() first)");
  for (const auto& n : adapter_names)
    if (has_adapter(n) && settings_.at(n).use_dora)
      throw Error("Cannot pass `adapter_names` when DoRA is enabled (adapter `" + n +
                  "` uses DoRA; hint: run one forward per adapter instead)");
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
    auto copy = copies_.find(name);
    if (copy != copies_.end()) {  // modules_to_save rows run through that adapter's copy
      auto idx = rows_of(name);
      result = result.index_copy(0, idx, copy->second->base_forward(x.index_select(0, idx)));
      continue;
    }
    if (name == "__base__" || !has_adapter(name)) continue;
    auto idx = rows_of(name);
    auto& A = lora_A(name);
    auto& B = lora_B(name);
    const auto& s = settings_.at(name);
    torch::Tensor sub = x.index_select(0, idx).to(A->weight.scalar_type());
    if (s.lora_dropout > 0.0) sub = dropout(name).forward(sub);
    auto delta = torch::linear(torch::linear(sub, A->weight), B->weight, B->bias) * s.scaling;
    result = result.index_add(0, idx, delta.to(result.scalar_type()));
  }
  return result;
}

inline torch::Tensor LoraLayer::dora_forward(const std::string& name, const torch::Tensor& result, const torch::Tensor& h) {
  const auto& s = settings_.at(name);
  const auto& A = lora_A(name)->weight;
  const auto& B = lora_B(name)->weight;
  const auto& m = lora_magnitude(name);
  const auto dt = A.scalar_type();
  const torch::Tensor r = result.scalar_type() == dt ? result : result.to(dt);
  const bool drop = s.lora_dropout > 0.0 && is_training();
  const torch::Tensor xd = drop ? dropout(name).forward(h) : h;
  torch::Tensor base;
  if (drop) base = torch::linear(xd, transpose_if(base_weight(), fan_in_fan_out()).to(dt));
  const auto norm = dora_norm_cache(name).norm(base_weight(), A, B, s.scaling, fan_in_fan_out());
  return dora_apply(r, xd, base, drop ? torch::Tensor() : base_bias(), A, B, m, norm, s.scaling);
}

}  // namespace peft
