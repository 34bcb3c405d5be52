#pragma once
/// Gradient (activation) checkpointing, as torch.utils.checkpoint's reentrant variant does it:
///
///   y = peft::models::checkpoint([&](const torch::Tensor& h) { return block(h); }, x);
///
/// The forward runs without recording a graph, so none of fn's activations stay alive; only x is
/// kept. backward() runs fn again on a detached copy of x with the random state of the first run
/// (CPU and, for CUDA inputs, the input device's generator: dropout draws the same mask), then
/// backpropagates the incoming gradient through that graph, which accumulates the gradients of
/// every parameter fn used and yields x's gradient. Results and gradients equal a plain call.
/// Used per decoder block by the reference models (CausalLMImpl::set_gradient_checkpointing).

#include <torch/types.h>

#include <functional>
#include <memory>

namespace peft::models {

/// y = fn(x) without keeping fn's activations; fn must be deterministic given the RNG state and
/// must not change state between the two runs. When grad mode is off or no input/parameter
/// requires a gradient it is a plain call. x: any tensor; y: fn's result.
torch::Tensor checkpoint(std::function<torch::Tensor(const torch::Tensor&)> fn, const torch::Tensor& x);

}  // namespace peft::models
