#pragma once
/// The frozen Linear (or GPT-2 Conv1D) and one plain LoRA adapter as one autograd node
/// (issue 18; docs/layer.md "Fused training step"):
///   y  = x·Wᵀ + b + s·(d(x)·Aᵀ)·Bᵀ                   x [..., in], W [out, in] ([in, out] when fan_in_fan_out)
///   d(x) = x ⊙ m / (1 - p): the LoRA dropout (layers/lora_dropout.hpp, the same draws), or x
///   saves x (the base needs it too), low = d(x)·Aᵀ [N, r] and the 1-byte mask m, not d(x)
///   dx = dy·W + (s·dy·B)·A ⊙ m/(1-p)   one [N, in] buffer (without dropout the second product
///                                        is added by addmm's beta; with it in blocks of rows
///                                        through a temporary of 1/8 of x, at least 16 Ki elements)
///   dA = (s·dy·B)ᵀ·d(x) (d(x) rebuilt block by block in that temporary),  dB = s·dyᵀ·low
/// Unfused, autograd holds the base's and the adapter's [N, in] input gradients side by side
/// and adds them, and dropout saves d(x): a LoRA step peaked at 2.0x the frozen layer's bytes.

#include <torch/types.h>

namespace peft::detail {

/// y as above, or an undefined tensor when the node does not apply and the caller must run the
/// unfused path: autograd off (inference keeps its in-place addmm), x/W/A/B of different dtypes
/// or devices, x not contiguous, dropout_p >= 1, or dropout_p > 0 where the fused CPU dropout
/// does not apply (CUDA, half types). A base weight or bias that trains (bias="all", a full
/// fine-tune) gets dW = dyᵀ·x (x·dy for fan_in_fan_out) and db = Σ dy.
torch::Tensor fused_lora_linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias,
                                bool fan_in_fan_out, const torch::Tensor& A, const torch::Tensor& B,
                                double scaling, double dropout_p = 0.0);

}  // namespace peft::detail
