#pragma once
/// The frozen Linear (or GPT-2 Conv1D) and one plain LoRA adapter as one autograd node
/// (issue 18; docs/layer.md "Fused training step"):
///   y  = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ                      x [..., in], W [out, in] ([in, out] when fan_in_fan_out)
///   saves x (shared with nothing else: the base needs it too) and low = x·Aᵀ [N, r]
///   dx = dy·W + (s·dy·B)·A       one [N, in] buffer: the second product is added by addmm's beta
///   dA = (s·dy·B)ᵀ·x,  dB = s·dyᵀ·low
/// Unfused, autograd holds the base's and the adapter's [N, in] input gradients side by side
/// and adds them (a LoRA step peaked at 2.0x the frozen layer's bytes; fused ~1.0x).

#include <torch/types.h>

namespace peft::detail {

/// y as above, or an undefined tensor when the node does not apply and the caller must run the
/// unfused path: autograd off (inference keeps its in-place addmm), x/W/A/B of different dtypes
/// or devices, x not contiguous. A base weight or bias that trains (bias="all", a full fine-tune)
/// gets dW = dyᵀ·x (x·dy for fan_in_fan_out) and db = Σ dy.
torch::Tensor fused_lora_linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias,
                                bool fan_in_fan_out, const torch::Tensor& A, const torch::Tensor& B,
                                double scaling);

}  // namespace peft::detail
