#pragma once
/// LoRA's tensor math as free functions (docs/layer.md#forward-linear-and-conv1d,
/// docs/lifecycle.md#delta-weight). Shapes: x [..., in], A [r, in],
/// B [out, r]; a base weight W is [out, in] ([in, out] when fan_in_fan_out, GPT-2 Conv1D).

#include <torch/types.h>

namespace peft {

/// `transpose(M, fan_in_fan_out)`: M.T when the base weight is stored [in, out].
inline torch::Tensor transpose_if(const torch::Tensor& m, bool fan_in_fan_out) {
  return fan_in_fan_out ? m.t() : m;
}

/// PEFT's get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling, in W's layout.
inline torch::Tensor lora_delta_weight(const torch::Tensor& lora_A, const torch::Tensor& lora_B,
                                       double scaling, bool fan_in_fan_out = false) {
  return transpose_if(torch::matmul(lora_B, lora_A), fan_in_fan_out) * scaling;
}

/// The adapter branch `scaling * B(A(x))` -> [..., out] (dropout, if any, is applied to x by the
/// caller). Computed as two skinny matmuls, never materialising B @ A.
inline torch::Tensor lora_branch(const torch::Tensor& x, const torch::Tensor& lora_A,
                                 const torch::Tensor& lora_B, double scaling) {
  return torch::matmul(torch::matmul(x, lora_A.t()), lora_B.t()) * scaling;
}

}  // namespace peft
