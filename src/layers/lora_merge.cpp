// LoraLayer's merging (docs/lifecycle.md "Merge", docs/dora.md "Merge and unmerge"): delta
// weights, merge (plain and safe) and unmerge through the base layer's dense weight and the
// adapters' variants. The declarations and contracts are in lora_layer.hpp.

#include <algorithm>

#include "peft/error.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/warnings.hpp"

namespace peft {

torch::Tensor LoraLayer::delta_weight(const std::string& name) {
  LoraFactors f = adapter(name).factors;
  const auto dt = f.A.scalar_type();
  const bool upcast = f.A.device().is_cpu() && (dt == torch::kHalf || dt == torch::kBFloat16);
  if (upcast) {
    f.A = f.A.to(torch::kFloat32);
    f.B = f.B.to(torch::kFloat32);
  }
  auto d = lora_delta(f, adapter(name).settings.scaling);
  return upcast ? d.to(dt) : d;
}

std::pair<torch::Tensor, torch::Tensor> LoraLayer::merged_weight(const std::string& name) {
  torch::NoGradGuard no_grad;
  const Adapter& a = adapter(name);
  return a.variant->merged_weight(view(a), dense_weight(), delta_weight(name));
}

void LoraLayer::check_merge(bool safe_merge, const std::vector<std::string>& names) {
  torch::NoGradGuard no_grad;
  // PEFT's TrainableTokensLayer._check_overlapping_tokens: rows of two merged adapters must not overlap.
  std::vector<std::int64_t> rows;
  for (const auto& name : merged_)
    if (tokens_.has(name)) rows.insert(rows.end(), tokens_.indices(name).begin(), tokens_.indices(name).end());
  for (const auto& name : names) {
    if (!tokens_.has(name) || std::find(merged_.begin(), merged_.end(), name) != merged_.end()) continue;
    for (const auto i : tokens_.indices(name)) {
      if (std::find(rows.begin(), rows.end(), i) != rows.end())
        throw Error("Token indices of adapter " + name +
                    " are already defined and would result in undefined merging behavior. Only disjunct token "
                    "indices are currently supported (token " + std::to_string(i) + ")");
      rows.push_back(i);
    }
    if (safe_merge && !torch::isfinite(tokens_.rows(name)).all().item<bool>())
      throw Error("NaNs detected in the merged weights. The adapter " + name + " seems to be broken");
  }
  for (const auto& name : names) {
    if (!has_adapter(name) || std::find(merged_.begin(), merged_.end(), name) != merged_.end()) continue;
    check_mergeable();
    const Adapter& a = adapter(name);
    const auto& s = a.settings;
    if (s.lora_bias && !base_bias().defined())
      throw Error("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias");
    if (!safe_merge) continue;
    if (!torch::isfinite(merged_weight(name).first).all().item<bool>())
      throw Error("NaNs detected in the merged weights. The adapter " + name +
                  " seems to be broken (nothing was merged)");
    if (s.lora_bias && !torch::isfinite(base_bias() + a.factors.B_bias * s.scaling).all().item<bool>())
      throw Error("NaNs detected in the merged bias. The adapter " + name + " seems to be broken");
  }
}

void LoraLayer::merge(bool safe_merge, std::vector<std::string> names) {
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
    if (tokens_.has(name)) {  // the adapter's rows become the weight's rows
      torch::Tensor W = dense_weight();
      tokens_.write_rows(name, W);
      write_dense_weight(W);
      merged_.push_back(name);
      continue;
    }
    if (!has_adapter(name)) continue;
    check_mergeable();
    Adapter& a = adapter(name);
    const auto& s = a.settings;
    torch::Tensor& b = base_bias();
    if (s.lora_bias && !b.defined())
      throw Error("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias");
    torch::Tensor bias_delta;
    if (s.lora_bias) bias_delta = a.factors.B_bias * s.scaling;
    if (safe_merge) {
      auto [merged_w, state] = merged_weight(name);
      if (!torch::isfinite(merged_w).all().item<bool>())
        throw Error("NaNs detected in the merged weights. The adapter " + name +
                    " seems to be broken (nothing was merged)");
      torch::Tensor merged_b;
      if (s.lora_bias) {
        merged_b = (b + bias_delta).to(merged_w.scalar_type());
        if (!torch::isfinite(merged_b).all().item<bool>())
          throw Error("NaNs detected in the merged bias. The adapter " + name + " seems to be broken");
      }
      write_dense_weight(merged_w);
      if (s.lora_bias) b.copy_(merged_b);
      a.variant->merged(state);  // DoRA: the norm of merge time, which unmerge cannot recompute
    } else {
      torch::Tensor W = dense_weight();
      a.variant->merge(view(a), W, delta_weight(name));
      write_dense_weight(W);
      if (s.lora_bias) b.add_(bias_delta);
    }
    merged_.push_back(name);
  }
}

void LoraLayer::unmerge() {
  if (merged_.empty()) {
    warn("Already unmerged. Nothing to do.");
    return;
  }
  torch::NoGradGuard no_grad;
  while (!merged_.empty()) {
    const std::string name = merged_.back();
    merged_.pop_back();
    if (tokens_.has(name)) {  // the rows the weight had when the adapter was created
      torch::Tensor W = dense_weight();
      tokens_.restore_rows(name, W);
      write_dense_weight(W);
      continue;
    }
    if (!has_adapter(name)) continue;
    Adapter& a = adapter(name);
    torch::Tensor W = dense_weight();
    a.variant->unmerge(view(a), W, delta_weight(name));
    write_dense_weight(W);
    if (a.settings.lora_bias) base_bias().sub_(a.factors.B_bias * a.settings.scaling);
  }
}

}  // namespace peft
