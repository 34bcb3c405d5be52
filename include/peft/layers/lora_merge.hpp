#pragma once
/// LoraLayer's merging (spec §5.3, §7.1-7.3): delta weights, merge (plain and safe), DoRA's merge
/// factor with the cached norm, and unmerge. Included by layers/lora_layer.hpp; the declarations
/// and their contracts are there.

#include "peft/layers/lora_layer.hpp"

namespace peft {

inline torch::Tensor LoraLayer::delta_weight(const std::string& name) {
  auto A = lora_A(name)->weight;
  auto B = lora_B(name)->weight;
  const auto dt = A.scalar_type();
  const bool upcast = A.device().is_cpu() && (dt == torch::kHalf || dt == torch::kBFloat16);
  if (upcast) {
    A = A.to(torch::kFloat32);
    B = B.to(torch::kFloat32);
  }
  auto d = lora_delta_weight(A, B, settings_[name].scaling, fan_in_fan_out());
  return upcast ? d.to(dt) : d;
}

inline std::pair<torch::Tensor, torch::Tensor> LoraLayer::merged_weight(const std::string& name) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& W = base_weight();
  auto delta = delta_weight(name);
  if (!settings_[name].use_dora) {
    auto out = W.clone();
    out += delta;
    return {out, torch::Tensor()};
  }
  auto [f, norm] = dora_merge_factor(W, delta, lora_magnitude(name), fan_in_fan_out());
  return {(f * (W + delta)).to(W.scalar_type()), norm};
}

inline void LoraLayer::check_merge(bool safe_merge, const std::vector<std::string>& names) {
  torch::NoGradGuard no_grad;
  for (const auto& name : names) {
    if (!has_adapter(name) ||
        std::find(merged_.begin(), merged_.end(), name) != merged_.end())
      continue;
    const auto& s = settings_[name];
    if (s.lora_bias && !base_bias().defined())
      throw Error("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias");
    if (!safe_merge) continue;
    if (!torch::isfinite(merged_weight(name).first).all().item<bool>())
      throw Error("NaNs detected in the merged weights. The adapter " + name +
                  " seems to be broken (nothing was merged)");
    if (s.lora_bias &&
        !torch::isfinite(base_bias() + lora_B(name)->bias * s.scaling).all().item<bool>())
      throw Error("NaNs detected in the merged bias. The adapter " + name + " seems to be broken");
  }
}

inline void LoraLayer::merge(bool safe_merge, std::vector<std::string> names) {
  if (names.empty()) names = active_;
  std::vector<std::string> todo;
  for (const auto& n : names)
    if (std::find(merged_.begin(), merged_.end(), n) == merged_.end()) todo.push_back(n);
  if (todo.empty()) {
    if (!names.empty()) warn("All adapters are already merged, nothing to do.");
    return;
  }
  torch::NoGradGuard no_grad;
  for (const auto& name : todo) {
    if (!has_adapter(name)) continue;
    const auto& s = settings_[name];
    torch::Tensor& W = base_weight();
    torch::Tensor& b = base_bias();
    if (s.lora_bias && !b.defined())
      throw Error("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias");
    torch::Tensor bias_delta;
    if (s.lora_bias) bias_delta = lora_B(name)->bias * s.scaling;
    if (safe_merge || s.use_dora) {
      auto [merged_w, norm] = merged_weight(name);
      if (safe_merge && !torch::isfinite(merged_w).all().item<bool>())
        throw Error("NaNs detected in the merged weights. The adapter " + name +
                    " seems to be broken (nothing was merged)");
      torch::Tensor merged_b;
      if (s.lora_bias) {
        merged_b = (b + bias_delta).to(W.scalar_type());
        if (safe_merge && !torch::isfinite(merged_b).all().item<bool>())
          throw Error("NaNs detected in the merged bias. The adapter " + name + " seems to be broken");
      }
      W.copy_(merged_w);
      if (s.lora_bias) b.copy_(merged_b);
      if (norm.defined()) dora_merge_norms_[name] = norm;  // unmerge cannot recompute it
    } else {
      W.add_(delta_weight(name));
      if (s.lora_bias) b.add_(bias_delta);
    }
    merged_.push_back(name);
  }
}

inline void LoraLayer::unmerge() {
  if (merged_.empty()) {
    warn("Already unmerged. Nothing to do.");
    return;
  }
  torch::NoGradGuard no_grad;
  while (!merged_.empty()) {
    const std::string name = merged_.back();
    merged_.pop_back();
    if (!has_adapter(name)) continue;
    torch::Tensor& W = base_weight();
    if (settings_[name].use_dora) {
      // W = W_merged / f - Δ with the factor f of merge time (PEFT's cached weight norm).
      const auto norm = dora_merge_norms_.at(name);
      dora_merge_norms_.erase(name);
      const auto f = transpose_if((lora_magnitude(name) / norm).view({-1, 1}), fan_in_fan_out());
      W.copy_((W / f - delta_weight(name)).to(W.scalar_type()));
      continue;
    }
    W.sub_(delta_weight(name).to(W.scalar_type()));
    if (settings_[name].lora_bias) base_bias().sub_(lora_B(name)->bias * settings_[name].scaling);
  }
}

}  // namespace peft
