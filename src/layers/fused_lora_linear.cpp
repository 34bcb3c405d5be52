// The fused Linear + LoRA autograd node (layers/detail/fused_lora_linear.hpp).

#include "peft/layers/detail/fused_lora_linear.hpp"

#include <torch/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "peft/layers/lora_dropout.hpp"

namespace peft::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// Inputs: x [N, in], A [r, in], B [out, r], W, bias (absent: nullopt; an undefined tensor
/// cannot be an autograd input). Gradients for W and bias only where they train.
struct FusedLoraLinear : torch::autograd::Function<FusedLoraLinear> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& W,
                               const c10::optional<torch::Tensor>& bias, double scaling, bool fan_in_fan_out,
                               double dropout_p) {
    const torch::Tensor Wt = fan_in_fan_out ? W : W.t();  // [in, out]
    // The same ops as the unfused forward (linear = addmm, then addmm_ with alpha = s): same bits.
    torch::Tensor y = bias ? torch::addmm(*bias, x, Wt) : torch::mm(x, Wt);
    // The dropout draws what lora_dropout would draw at this point (one seed from the default
    // generator); its output lives only until low is computed.
    torch::Tensor mask;
    const torch::Tensor low =
        torch::mm(dropout_p > 0 ? fused_dropout_forward(x, dropout_p, &mask) : x, A.t());  // [N, r]
    y.addmm_(low, B.t(), 1, scaling);
    ctx->save_for_backward({x, A, B, W, low, mask});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["fan_in_fan_out"] = fan_in_fan_out;
    ctx->saved_data["has_bias"] = bias.has_value();
    ctx->saved_data["dropout_p"] = dropout_p;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &A = saved[1], &B = saved[2], &W = saved[3], &low = saved[4],
                        &mask = saved[5];
    const double s = ctx->saved_data["scaling"].toDouble();
    const double p = ctx->saved_data["dropout_p"].toDouble();
    const bool fan_in_fan_out = ctx->saved_data["fan_in_fan_out"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const torch::Tensor& dy = grads[0];  // [N, out]
    // s·dy·B, as addmm's backward computes it for the unfused graph (mm, then the scale).
    const torch::Tensor d_low = torch::mm(dy, B).mul_(s);  // [N, r]
    torch::Tensor dx, dA, dB, dW, db;
    if (ctx->needs_input_grad(0)) dx = torch::mm(dy, fan_in_fan_out ? W.t() : W);  // [N, in]
    if (p > 0) {
      // In blocks of rows, through one small temporary: the adapter's input gradient masked (as
      // dropout's backward) and added to dx, then d(x) rebuilt (the values the forward fed to
      // A) and accumulated into dA. No [N, in] buffer beyond dx.
      const std::int64_t N = x.size(0), in = x.size(1);
      // Blocks of an eighth of x (at least 16 Ki elements): a temporary of 1/8 of dx.
      const std::int64_t block = std::max<std::int64_t>(N * in / 8, std::int64_t{1} << 14);
      const std::int64_t rows = std::max<std::int64_t>(1, std::min<std::int64_t>(N, block / std::max<std::int64_t>(in, 1)));
      const bool want_dA = ctx->needs_input_grad(1);
      if (want_dA) dA = torch::zeros_like(A);
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peft_fused_lora_dropout_backward", [&] {
        const auto sc = static_cast<scalar_t>(1.0 / (1.0 - p));
        torch::Tensor tmp = torch::empty({rows, in}, x.options());
        for (std::int64_t r0 = 0; r0 < N; r0 += rows) {
          const std::int64_t len = std::min(rows, N - r0);
          torch::Tensor t = tmp.narrow(0, 0, len);
          const std::uint8_t* m = mask.data_ptr<std::uint8_t>() + r0 * in;
          const torch::Tensor dl = d_low.narrow(0, r0, len);
          if (dx.defined()) {
            torch::mm_out(t, dl, A);
            masked_scale_kernel<scalar_t>(t.data_ptr<scalar_t>(), m, t.data_ptr<scalar_t>(), len * in, sc);
            dx.narrow(0, r0, len).add_(t);
          }
          if (want_dA) {
            masked_scale_kernel<scalar_t>(x.data_ptr<scalar_t>() + r0 * in, m, t.data_ptr<scalar_t>(), len * in, sc);
            dA.addmm_(dl.t(), t);
          }
        }
      });
    } else {
      if (dx.defined()) dx.addmm_(d_low, A);  // + (s·dy·B)·A into the same buffer
      if (ctx->needs_input_grad(1)) dA = torch::mm(d_low.t(), x);
    }
    if (ctx->needs_input_grad(2)) dB = torch::mm(dy.t(), low).mul_(s);
    // Edges count only tensor inputs: W is edge 3, the bias (when given) edge 4.
    if (ctx->needs_input_grad(3)) dW = fan_in_fan_out ? torch::mm(x.t(), dy) : torch::mm(dy.t(), x);
    if (has_bias && ctx->needs_input_grad(4)) db = dy.sum(0);
    return {dx, dA, dB, dW, db, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor fused_lora_linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& bias,
                                bool fan_in_fan_out, const torch::Tensor& A, const torch::Tensor& B,
                                double scaling, double dropout_p) {
  if (!torch::GradMode::is_enabled() || x.dim() < 1 || !x.is_contiguous()) return {};
  if (dropout_p >= 1.0 || (dropout_p > 0 && !fused_dropout_applies(x))) return {};
  const auto dtype = x.scalar_type();
  const auto device = x.device();
  for (const torch::Tensor* t : {&W, &A, &B})
    if (t->scalar_type() != dtype || t->device() != device || t->dim() != 2) return {};
  if (bias.defined() && (bias.scalar_type() != dtype || bias.device() != device)) return {};
  const std::int64_t in = x.size(-1);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = B.size(0);
  const c10::optional<torch::Tensor> b = bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
  const torch::Tensor y = FusedLoraLinear::apply(x.view({-1, in}), A, B, W, b, scaling, fan_in_fan_out,
                                                       dropout_p > 0 ? dropout_p : 0.0);
  return x.dim() == 2 ? y : y.view(out_sizes);
}

}  // namespace peft::detail
