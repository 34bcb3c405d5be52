#pragma once
/// The 4-bit base of peft::Linear (QLoRA; bitsandbytes' Linear4bit semantics, docs/qlora.md).
/// A quantised peft::Linear keeps `weight` as bnb's packed codes (uint8 [(out·in + 1) / 2, 1],
/// frozen) and this state beside it:
///   y = (x.to(c) @ dequantize(weight, state).to(c)ᵀ + bias.to(c)).to(x.dtype)   c = compute dtype
/// The matmul is one autograd node that keeps only the packed codes: backward dequantises again
/// for dx = dy @ W, so no dequantised weight lives between forward and backward.

#include <torch/types.h>

#include <optional>

#include "peft/quant/quant_state.hpp"

namespace peft {

struct Linear4bitState {
  QuantState4bit state;
  /// bnb_4bit_compute_dtype: the dtype of the matmul; unset: the input's dtype (bnb's default).
  std::optional<torch::ScalarType> compute_dtype;
};

namespace detail {
/// y = x @ dequantize(packed, state, x.dtype)ᵀ + bias, as one autograd node saving nothing but
/// the packed codes and state: dx = dy @ W (dequantised again), d bias = Σ dy when the bias trains.
torch::Tensor matmul_4bit(const torch::Tensor& x, const torch::Tensor& packed, const QuantState4bit& state,
                          const torch::Tensor& bias);
/// bnb's Linear4bit.forward: casts to the compute dtype, matmul_4bit, cast back to x's dtype.
torch::Tensor linear_4bit_forward(const torch::Tensor& x, const torch::Tensor& packed, const Linear4bitState& q,
                                  const torch::Tensor& bias);
}  // namespace detail

}  // namespace peft
