#pragma once
/// DoRA on Conv1d/2d/3d (PEFT's DoraConv{1,2,3}dVariant; docs/dora.md). With the low-rank weight
/// L = (B.view(−1, r) @ A.view(r, −1)).view(W.shape) and norms over every dim but the output
/// channel, kept as [1, out, 1, …] (the shape of m, `lora_magnitude_vector.<a>.weight`):
///   init:     m = ‖W + s·L‖
///   forward:  k = m / ‖W + s·L‖ (detached); base = result − b.view(1, −1, 1, …) (or, with active
///             dropout, conv(dropout(x), W) without bias);
///             result = result + (k − 1) ⊙ base + k ⊙ B(A(dropout(x))) · s
///   merge:    f = m / ‖W + Δ‖ viewed [out, 1, …], W' = f ⊙ (W + Δ); unmerge W = W' / f − Δ.

#include <memory>

#include "peft/variants/dora_variant.hpp"

namespace peft {

class DoraConvVariant final : public DoraVariant {
 public:
  void forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) override;

 protected:
  torch::Tensor initial_magnitude(const AdapterView& a) const override;
  torch::Tensor merge_norm(const AdapterView& a, const torch::Tensor& W, const torch::Tensor& delta) const override;
  torch::Tensor weight_factor(const AdapterView& a, const torch::Tensor& norm) const override;
  std::unique_ptr<DoraVariant> make_empty() const override { return std::make_unique<DoraConvVariant>(); }
};

}  // namespace peft
