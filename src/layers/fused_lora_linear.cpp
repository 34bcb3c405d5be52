// The fused Linear + LoRA autograd node (layers/detail/fused_lora_linear.hpp).

#include "peft/layers/detail/fused_lora_linear.hpp"

#include <torch/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace peft::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// Inputs: x [N, in], A [r, in], B [out, r], W, bias (absent: nullopt; an undefined tensor
/// cannot be an autograd input). Gradients for W and bias only where they train.
struct FusedLoraLinear : torch::autograd::Function<FusedLoraLinear> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& W,
                               const c10::optional<torch::Tensor>& bias, double scaling, bool fan_in_fan_out) {
    const torch::Tensor Wt = fan_in_fan_out ? W : W.t();  // [in, out]
    // The same ops as the unfused forward (linear = addmm, then addmm_ with alpha = s): same bits.
    torch::Tensor y = bias ? torch::addmm(*bias, x, Wt) : torch::mm(x, Wt);
    const torch::Tensor low = torch::mm(x, A.t());  // [N, r]
    y.addmm_(low, B.t(), 1, scaling);
    ctx->save_for_backward({x, A, B, W, low});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["fan_in_fan_out"] = fan_in_fan_out;
    ctx->saved_data["has_bias"] = bias.has_value();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &A = saved[1], &B = saved[2], &W = saved[3], &low = saved[4];
    const double s = ctx->saved_data["scaling"].toDouble();
    const bool fan_in_fan_out = ctx->saved_data["fan_in_fan_out"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const torch::Tensor& dy = grads[0];  // [N, out]
    // s·dy·B, as addmm's backward computes it for the unfused graph (mm, then the scale).
    const torch::Tensor d_low = torch::mm(dy, B).mul_(s);  // [N, r]
    torch::Tensor dx, dA, dB, dW, db;
    if (ctx->needs_input_grad(0)) {
      dx = torch::mm(dy, fan_in_fan_out ? W.t() : W);  // [N, in]
      dx.addmm_(d_low, A);                              // + (s·dy·B)·A into the same buffer
    }
    if (ctx->needs_input_grad(1)) dA = torch::mm(d_low.t(), x);
    if (ctx->needs_input_grad(2)) dB = torch::mm(dy.t(), low).mul_(s);
    // Edges count only tensor inputs: W is edge 3, the bias (when given) edge 4.
    if (ctx->needs_input_grad(3)) dW = fan_in_fan_out ? torch::mm(x.t(), dy) : torch::mm(dy.t(), x);
    if (has_bias && ctx->needs_input_grad(4)) db = dy.sum(0);
    return {dx, dA, dB, dW, db, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor fused_lora_linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias,
                                bool fan_in_fan_out, const torch::Tensor& A, const torch::Tensor& B,
                                double scaling) {
  if (!torch::GradMode::is_enabled() || x.dim() < 1 || !x.is_contiguous()) return {};
  const auto dtype = x.scalar_type();
  const auto device = x.device();
  for (const torch::Tensor* t : {&W, &A, &B})
    if (t->scalar_type() != dtype || t->device() != device || t->dim() != 2) return {};
  if (bias.defined() && (bias.scalar_type() != dtype || bias.device() != device)) return {};
  const std::int64_t in = x.size(-1);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = B.size(0);
  const c10::optional<torch::Tensor> b = bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
  const torch::Tensor y = FusedLoraLinear::apply(x.view({-1, in}), A, B, W, b, scaling, fan_in_fan_out);
  return x.dim() == 2 ? y : y.view(out_sizes);
}

}  // namespace peft::detail
