// The thread-local state behind SkipInitScope (layers/skip_init.hpp). Kept out of the header so
// one copy exists per process even when peft is a shared library and callers inline the header.

#include "peft/layers/skip_init.hpp"

#include <torch/types.h>

namespace peft {
namespace {

struct SkipInitState {
  bool active = false;
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

SkipInitState& state() {
  thread_local SkipInitState s;
  return s;
}

}  // namespace

SkipInitScope::SkipInitScope(torch::Dtype dtype, torch::Device device)
    : previous_active_(state().active), previous_dtype_(state().dtype), previous_device_(state().device) {
  state().active = true;
  state().dtype = dtype;
  state().device = device;
}

SkipInitScope::~SkipInitScope() {
  state().active = previous_active_;
  state().dtype = previous_dtype_;
  state().device = previous_device_;
}

bool skip_init_active() { return state().active; }

torch::Tensor new_filled_parameter_tensor(c10::IntArrayRef sizes, double value) {
  if (skip_init_active()) return torch::empty(sizes, detail::skip_init_options());
  return torch::full(sizes, value);  // the default dtype, as torch::ones / torch::zeros
}

namespace detail {

torch::TensorOptions skip_init_options() {
  const SkipInitState& s = state();
  if (!s.active) return torch::TensorOptions();
  return torch::TensorOptions().dtype(s.dtype).device(s.device);
}

torch::Tensor new_base_parameter_tensor(c10::IntArrayRef sizes) {
  if (skip_init_active()) return torch::empty(sizes, skip_init_options());
  return torch::empty(sizes);
}

}  // namespace detail
}  // namespace peft
