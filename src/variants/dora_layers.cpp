// DoRA on Embedding and convolution layers (variants/dora_embedding.hpp, variants/dora_conv.hpp):
// the parts that differ from the Linear DoraVariant.

#include <vector>

#include "peft/layers/adapter_settings.hpp"
#include "peft/variants/dora_conv.hpp"
#include "peft/variants/dora_embedding.hpp"

namespace peft {

void DoraEmbeddingVariant::forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& ids) {
  const auto& s = a.settings;
  // ‖Wᵀ + s·B A‖ per embedding column: the Linear norm of W stored [in, out] (cached like Linear's).
  const auto norm = norm_cache_.norm(a.base.dense_weight(), a.factors.A, a.factors.B, s.scaling, a.base.fan_in_fan_out());
  const auto k = magnitude_->weight / norm;
  // PEFT: mag_norm_scale * result + mag_norm_scale * (embed(x, Aᵀ) @ Bᵀ) * scaling — no dropout.
  const auto branch = a.base.lora_branch(ids, a.factors, AdapterDropout{});
  result = k * result + k * branch * s.scaling;
}

namespace {

/// PEFT's _DoraConvNdLayer.get_lora_weight: (B.view(−1, r) @ A.view(r, −1)).view(W.shape).
torch::Tensor conv_lora_weight(const torch::Tensor& W, const torch::Tensor& A, const torch::Tensor& B) {
  const auto r = A.size(0);
  return torch::mm(B.reshape({-1, r}), A.reshape({r, -1})).reshape(W.sizes());
}

/// ‖W + s·L‖₂ over every dim but 0, as [1, out, 1, …] (PEFT's conv get_weight_norm).
torch::Tensor conv_weight_norm(const torch::Tensor& W, const torch::Tensor& L, double scaling) {
  const auto w = W + scaling * L;
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d < w.dim(); ++d) dims.push_back(d);
  return w.norm(2, dims, /*keepdim=*/true).transpose(1, 0);
}

}  // namespace

torch::Tensor DoraConvVariant::initial_magnitude(const AdapterView& a) const {
  torch::NoGradGuard no_grad;
  const auto& A = a.factors.A;
  const auto& B = a.factors.B;
  const auto W = a.base.dense_weight().to(A.device());
  // fp16 factors are multiplied in fp32 and rounded back, as PEFT's DoraLinearLayer.update_layer.
  const bool half = A.scalar_type() == torch::kHalf;
  auto L = half ? conv_lora_weight(W, A.to(torch::kFloat32), B.to(torch::kFloat32)).to(torch::kHalf)
                : conv_lora_weight(W, A, B);
  return conv_weight_norm(W, L, a.settings.scaling);
}

torch::Tensor DoraConvVariant::merge_norm(const AdapterView&, const torch::Tensor& W, const torch::Tensor& delta) const {
  return conv_weight_norm(W, delta, 1.0).detach();
}

torch::Tensor DoraConvVariant::weight_factor(const AdapterView& a, const torch::Tensor& norm) const {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(a.base.base_weight().dim()), 1);
  shape[0] = -1;
  return (magnitude_->weight / norm).view(shape);
}

void DoraConvVariant::forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) {
  const auto& s = a.settings;
  const bool drop = s.lora_dropout > 0.0 && a.base.is_training();
  const torch::Tensor xd = drop ? a.dropout(x) : x;
  const torch::Tensor W = a.base.dense_weight();
  torch::Tensor norm;  // detached, as PEFT: computed without recording a graph at all
  {
    torch::NoGradGuard no_grad;
    norm = conv_weight_norm(W, conv_lora_weight(W, a.factors.A, a.factors.B), s.scaling);
  }
  const auto k = magnitude_->weight / norm;
  torch::Tensor base;
  if (drop) {
    // PEFT recomputes the base on the dropped input, without bias.
    base = a.base.base_forward_with(xd, W.to(xd.scalar_type()), torch::Tensor());
  } else {
    base = result;
    if (const auto& b = a.base.base_bias(); b.defined()) {
      std::vector<std::int64_t> shape(static_cast<std::size_t>(result.dim()), 1);
      shape[1] = -1;
      base = result - b.view(shape);
    }
  }
  const auto branch = a.base.lora_branch(xd, a.factors, AdapterDropout{});
  result = result + ((k - 1) * base + k * branch * s.scaling);
}

}  // namespace peft
