// Gradient checkpointing (models/checkpointing.hpp): a custom autograd function that keeps the
// closure in a capsule in the context's saved data and re-runs it in backward.

#include "peft/models/checkpointing.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/ivalue.h>
#include <ATen/Context.h>
#include <torch/autograd.h>

#include <mutex>
#include <utility>

namespace peft::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// The generators whose state the recomputation must replay.
struct RngSnapshot {
  torch::Tensor cpu;
  torch::Tensor device;  ///< the input device's generator (CUDA), when not the CPU
  c10::optional<at::Generator> device_gen;

  static at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }
  static RngSnapshot take(const torch::Device& device) {
    RngSnapshot s;
    auto gen = cpu_generator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      s.cpu = gen.get_state();
    }
    if (device.is_cuda()) {
      s.device_gen = at::globalContext().defaultGenerator(device);
      std::lock_guard<std::mutex> lock(s.device_gen->mutex());
      s.device = s.device_gen->get_state();
    }
    return s;
  }
  void restore() const {
    auto gen = cpu_generator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(cpu);
    }
    if (device_gen) {
      auto dev = *device_gen;
      std::lock_guard<std::mutex> lock(dev.mutex());
      dev.set_state(device);
    }
  }
};

struct Closure : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> fn;
  RngSnapshot rng;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, c10::intrusive_ptr<Closure> closure) {
    closure->rng = RngSnapshot::take(x.device());
    torch::Tensor y;
    {
      torch::NoGradGuard no_grad;
      y = closure->fn(x);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["closure"] = c10::IValue::make_capsule(closure);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto x = ctx->get_saved_variables()[0];
    auto closure = c10::static_intrusive_pointer_cast<Closure>(ctx->saved_data["closure"].toCapsule());
    // Replay the forward's random draws, and leave the caller's generators as they were.
    const RngSnapshot now = RngSnapshot::take(x.device());
    closure->rng.restore();
    auto input = x.detach().requires_grad_(x.requires_grad());
    torch::Tensor y;
    try {
      c10::AutoGradMode enable(true);
      y = closure->fn(input);
    } catch (...) {
      now.restore();
      throw;
    }
    now.restore();
    if (y.requires_grad()) torch::autograd::backward({y}, {grad_out[0]});
    return {input.requires_grad() ? input.grad() : torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor checkpoint(std::function<torch::Tensor(const torch::Tensor&)> fn, const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  auto closure = c10::make_intrusive<Closure>();
  closure->fn = std::move(fn);
  // With an input that needs no gradient (the embeddings of a frozen base) autograd would not
  // call backward at all and the block's parameters would get no gradient: make the input a
  // leaf that requires one (what PEFT's enable_input_require_grads does for this reason).
  return CheckpointFunction::apply(x.requires_grad() ? x : x.detach().requires_grad_(true), closure);
}

}  // namespace peft::models
