#pragma once
/// Building a model without initialising its weights, directly in the dtype and device they will
/// be loaded in (what transformers does with `init_empty_weights` + `torch_dtype`):
///
///   {
///     peft::SkipInitScope scope(torch::kBFloat16, torch::kCUDA);
///     model = std::make_shared<LlamaForCausalLMImpl>(config);   // no RNG draw, nothing touched
///   }
///   peft::load_checkpoint(*model, dir);                           // fills every weight
///
/// While a scope is active on the current thread, the base layers (peft::Linear, peft::Embedding,
/// peft::Conv1D, peft::Conv1d/2d/3d) create weight and bias with torch::empty in the scope's
/// dtype and device and draw no random numbers; the reference models' init_weights() does
/// nothing. torch::empty commits no memory until the values are written, so a CPU model costs
/// nothing until it is loaded. The values are undefined: load every parameter (a strict
/// load_checkpoint) before use. Outside any scope everything initialises exactly as before,
/// draw for draw. Scopes are thread-local and nest; each restores the previous state on exit.

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <torch/types.h>

#include <cstdint>

namespace peft {

/// RAII: base layers built on this thread while it lives skip their init and are created
/// uninitialised in `dtype` on `device` (defaults: float32, CPU). Not copyable or movable.
class SkipInitScope {
 public:
  explicit SkipInitScope(torch::Dtype dtype = torch::kFloat32, torch::Device device = torch::kCPU);
  ~SkipInitScope();
  SkipInitScope(const SkipInitScope&) = delete;
  SkipInitScope& operator=(const SkipInitScope&) = delete;

 private:
  bool previous_active_;
  torch::Dtype previous_dtype_;
  torch::Device previous_device_;
};

/// Whether a SkipInitScope is active on the current thread.
bool skip_init_active();

/// A parameter tensor that starts at `value` (a norm's weight 1, a bias 0): torch::full(sizes,
/// value) in the default dtype on the CPU outside a SkipInitScope (as torch::ones / torch::zeros),
/// an uninitialised torch::empty in the scope's dtype and device inside one.
torch::Tensor new_filled_parameter_tensor(c10::IntArrayRef sizes, double value);

namespace detail {

/// The options of the innermost active scope (dtype, device); default options when none is.
torch::TensorOptions skip_init_options();

/// The storage of a base layer's weight or bias: torch::empty(sizes) (default dtype, CPU; the
/// caller initialises it) outside a scope, torch::empty in the scope's dtype and device inside
/// one (the caller must skip its init: check skip_init_active()).
torch::Tensor new_base_parameter_tensor(c10::IntArrayRef sizes);

}  // namespace detail
}  // namespace peft
