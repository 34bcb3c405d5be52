#include "peft/variants/dora_variant.hpp"

#include "peft/error.hpp"
#include "peft/layers/adapter_settings.hpp"
#include "peft/layers/lora_math.hpp"

namespace peft {

void DoraVariant::init(const AdapterView& a) { magnitude_ = std::make_shared<DoraMagnitudeImpl>(initial_magnitude(a)); }

torch::Tensor DoraVariant::initial_magnitude(const AdapterView& a) const {
  return dora_init_magnitude(a.base.dense_weight(), a.factors.A, a.factors.B, a.settings.scaling,
                             a.base.fan_in_fan_out());
}

torch::Tensor DoraVariant::merge_norm(const AdapterView& a, const torch::Tensor& W, const torch::Tensor& delta) const {
  const bool fifo = a.base.fan_in_fan_out();
  return dora_weight_norm(W, transpose_if(delta, fifo), 1.0, fifo).detach();
}

torch::Tensor DoraVariant::weight_factor(const AdapterView& a, const torch::Tensor& norm) const {
  return transpose_if((magnitude_->weight / norm).view({-1, 1}), a.base.fan_in_fan_out());
}

std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> DoraVariant::modules() const {
  return {{"lora_magnitude_vector", magnitude_}};
}

std::vector<std::pair<std::string, torch::Tensor>> DoraVariant::extra_parameters() const {
  return {{"lora_magnitude_vector", magnitude_->weight}};
}

void DoraVariant::upcast() {
  const auto dt = magnitude_->weight.scalar_type();
  if (dt == torch::kHalf || dt == torch::kBFloat16) magnitude_->to(torch::kFloat32);
  norm_cache_.clear();
}

void DoraVariant::forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& h) {
  const auto& s = a.settings;
  const auto& A = a.factors.A;
  const auto& B = a.factors.B;
  const bool fifo = a.base.fan_in_fan_out();
  const auto dt = A.scalar_type();
  const torch::Tensor r = result.scalar_type() == dt ? result : result.to(dt);
  // Without active dropout the base output inside `result` is reused; with dropout (training)
  // the base is recomputed on the dropped input, as PEFT does.
  const bool drop = s.lora_dropout > 0.0 && a.base.is_training();
  const torch::Tensor xd = drop ? a.dropout(h) : h;
  // W only when needed: a 4-bit base dequantises per use and keeps no dense copy.
  torch::Tensor W;
  auto dense = [&] {
    if (!W.defined()) W = a.base.dense_weight();
    return W;
  };
  torch::Tensor base;
  if (drop) base = torch::linear(xd, transpose_if(dense(), fifo).to(dt));
  const auto norm = norm_cache_.norm(a.base.base_weight(), dense, A, B, s.scaling, fifo);
  result = dora_apply(r, xd, base, drop ? torch::Tensor() : a.base.base_bias(), A, B, magnitude_->weight, norm,
                      s.scaling);
}

std::pair<torch::Tensor, torch::Tensor> DoraVariant::merged_weight(const AdapterView& a, const torch::Tensor& W,
                                                                   const torch::Tensor& delta) const {
  // PEFT's merge: f = m / ‖W + Δ‖ (detached), W' = f ⊙ (W + Δ) in W's dtype.
  auto norm = merge_norm(a, W, delta);
  return {(weight_factor(a, norm) * (W + delta)).to(W.scalar_type()), norm};
}

void DoraVariant::merge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) {
  auto [merged_w, norm] = merged_weight(a, W, delta);
  W.copy_(merged_w);
  merge_norm_ = norm;  // unmerge cannot recompute it from the merged weight
}

void DoraVariant::unmerge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) {
  if (!merge_norm_.defined()) throw Error("DoRA unmerge: this adapter holds no weight norm of merge time");
  // W = W_merged / f - Δ with the factor f of merge time (PEFT's cached weight norm).
  const auto f = weight_factor(a, merge_norm_);
  merge_norm_ = torch::Tensor();
  W.copy_((W / f - delta).to(W.scalar_type()));
}

std::unique_ptr<LoraVariant> DoraVariant::clone(const torch::optional<torch::Device>& device) const {
  auto copy = make_empty();
  copy->magnitude_ = std::dynamic_pointer_cast<DoraMagnitudeImpl>(magnitude_->clone(device));
  if (merge_norm_.defined()) copy->merge_norm_ = device ? merge_norm_.to(*device) : merge_norm_.clone();
  return copy;  // a fresh norm cache, as before
}

}  // namespace peft
