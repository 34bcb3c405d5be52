// The next-token loss without the [B, T, V] logits (models/causal_lm.hpp: chunked_causal_lm_loss;
// issue 18). Vocabularies are 32k-150k: the logits, their log-softmax and their gradient were
// three [B·T, V] fp32 tensors, the largest of a LoRA step. Here each chunk of rows is projected,
// reduced to its loss, and (when autograd records) turned into d loss / d hidden at once; only
// that [B·T, d] gradient is kept for backward.

#include <torch/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "peft/error.hpp"
#include "peft/models/causal_lm.hpp"

namespace peft::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// h [N, d], W [V, d], y [N] int64 (-100 ignored) -> mean cross entropy (fp32 scalar).
struct ChunkedNextTokenLoss : torch::autograd::Function<ChunkedNextTokenLoss> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& W,
                               const torch::Tensor& y, std::int64_t chunk, bool want_grad) {
    const std::int64_t N = h.size(0);
    const torch::Tensor valid = y.ne(-100);
    // A 0-dim tensor, not a host number: no device sync per step. 0 labels: 0/0 = NaN, as PyTorch.
    const torch::Tensor count = valid.sum().to(torch::kFloat32);
    const torch::Tensor safe_y = y.masked_fill(valid.logical_not(), 0).unsqueeze(1);  // [N, 1]
    torch::Tensor total = torch::zeros({}, h.options().dtype(torch::kFloat32));
    torch::Tensor grad_h = want_grad ? torch::empty_like(h) : torch::Tensor();
    for (std::int64_t start = 0; start < N; start += chunk) {
      const std::int64_t len = std::min(chunk, N - start);
      const torch::Tensor hc = h.narrow(0, start, len);
      const torch::Tensor yc = safe_y.narrow(0, start, len);
      const torch::Tensor vc = valid.narrow(0, start, len);
      // transformers: logits in the model dtype, then .float() for the loss.
      torch::Tensor logits = torch::mm(hc, W.t()).to(torch::kFloat32);  // [len, V]
      const torch::Tensor lse = logits.logsumexp(1, /*keepdim=*/true);  // [len, 1]
      const torch::Tensor nll = (lse - logits.gather(1, yc)).squeeze(1);
      total += nll.masked_fill(vc.logical_not(), 0).sum();
      if (!want_grad) continue;
      // d/dlogits of the mean: (softmax - onehot) / count on labelled rows, 0 on ignored ones;
      // scaled before the cast to h's dtype, as F::cross_entropy's backward does.
      logits.sub_(lse).exp_();
      logits.scatter_add_(1, yc, torch::full({len, 1}, -1.0, logits.options()));
      logits.mul_(vc.unsqueeze(1).to(torch::kFloat32).div(count));
      torch::Tensor rows = grad_h.narrow(0, start, len);  // contiguous: rows of a contiguous [N, d]
      torch::mm_out(rows, logits.to(h.scalar_type()), W);
    }
    if (want_grad) ctx->save_for_backward({grad_h});
    return total / count;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor grad_h = ctx->get_saved_variables()[0];
    // The saved gradient is for d loss = 1 (what backward() of the loss passes); scale otherwise.
    return {grad_h * grads[0].to(grad_h.scalar_type()), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_causal_lm_loss(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                     const torch::Tensor& labels, std::int64_t chunk_rows) {
  if (hidden.dim() != 3 || labels.dim() != 2 || head_weight.dim() != 2 || hidden.size(0) != labels.size(0) ||
      hidden.size(1) != labels.size(1) || hidden.size(2) != head_weight.size(1))
    throw Error("chunked_causal_lm_loss: hidden must be [B, T, d], labels [B, T] and the head weight [V, d] "
                "with the same B, T and d");
  if (head_weight.requires_grad() && torch::GradMode::is_enabled())
    throw Error("chunked_causal_lm_loss: the head weight trains; this loss gives it no gradient "
                "(hint: use causal_lm_loss on the logits)");
  const std::int64_t V = head_weight.size(0), d = hidden.size(2);
  if (chunk_rows <= 0) chunk_rows = std::max<std::int64_t>(1, (std::int64_t{8} << 20) / std::max<std::int64_t>(V, 1));
  // Position t predicts label t + 1, as causal_lm_loss's shift. The last position of each row
  // gets label -100 instead of being sliced off: h stays a view of `hidden` (no [B·(T-1), d] copy,
  // and backward returns d hidden whole instead of scattering into a zeroed one), for one extra
  // head row per sequence.
  const torch::Tensor h = hidden.reshape({-1, d});
  const torch::Tensor y =
      torch::cat({labels.slice(1, 1), torch::full({labels.size(0), 1}, -100, labels.options())}, 1)
          .reshape({-1})
          .to(hidden.device(), torch::kInt64);
  const bool want_grad = torch::GradMode::is_enabled() && hidden.requires_grad();
  return ChunkedNextTokenLoss::apply(h, head_weight.detach(), y, chunk_rows, want_grad);
}

torch::Tensor causal_lm_loss(CausalLMImpl& model, const torch::Tensor& input_ids, const torch::Tensor& labels,
                             const ForwardArgs& args) {
  if (auto hh = model.forward_hidden(input_ids, args)) return chunked_causal_lm_loss(hh->hidden, hh->head_weight, labels);
  return causal_lm_loss(model.forward(input_ids, args), labels);
}

}  // namespace peft::models
