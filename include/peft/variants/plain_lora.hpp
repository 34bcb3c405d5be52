#pragma once
/// Plain LoRA as a LoraVariant (PEFT's `lora_variant[a] = None`; docs/layer.md "Forward"):
///   forward:  result += s · B(A(dropout(x)))     through the base layer's add_lora_branch, or
///             base + s · B(A(x)) as one autograd node (fused_lora_forward) when it is alone
///   merge:    W += Δ;  unmerge: W -= Δ;  merged_weight: W + Δ (no state)
/// No extra parameters; mixed batches may use it.

#include "peft/variants/lora_variant.hpp"

namespace peft {

class PlainLoraVariant final : public LoraVariant {
 public:
  const char* name() const override { return "LoRA"; }
  bool supports_mixed_batch() const override { return true; }
  /// The base layer's fused node (BaseLayer::fused_lora_forward, the dropout inside it) when B
  /// has no bias.
  torch::Tensor fused_forward(const AdapterView& a, const torch::Tensor& x) override;
  void forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> merged_weight(const AdapterView& a, const torch::Tensor& W,
                                                        const torch::Tensor& delta) const override;
  void merge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) override;
  void unmerge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) override;
  std::unique_ptr<LoraVariant> clone(const torch::optional<torch::Device>& device) const override;
};

}  // namespace peft
