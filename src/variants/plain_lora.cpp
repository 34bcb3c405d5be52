#include "peft/variants/plain_lora.hpp"

#include <torch/nn/modules/dropout.h>

#include "peft/layers/adapter_settings.hpp"

namespace peft {

torch::Tensor PlainLoraVariant::fused_forward(const AdapterView& a, const torch::Tensor& x) {
  if (a.factors.B_bias.defined()) return {};
  const torch::nn::DropoutImpl* d = a.dropout.module;
  const double p = d && d->is_training() ? d->options.p() : 0.0;
  return a.base.fused_lora_forward(x, a.factors, a.settings.scaling, p);
}

void PlainLoraVariant::forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) {
  a.base.add_lora_branch(result, x, a.factors, a.dropout, a.settings.scaling);
}

std::pair<torch::Tensor, torch::Tensor> PlainLoraVariant::merged_weight(const AdapterView&, const torch::Tensor& W,
                                                                        const torch::Tensor& delta) const {
  auto out = W.clone();
  out += delta;
  return {out, torch::Tensor()};
}

void PlainLoraVariant::merge(const AdapterView&, torch::Tensor& W, const torch::Tensor& delta) { W.add_(delta); }

void PlainLoraVariant::unmerge(const AdapterView&, torch::Tensor& W, const torch::Tensor& delta) {
  W.sub_(delta.to(W.scalar_type()));
}

std::unique_ptr<LoraVariant> PlainLoraVariant::clone(const torch::optional<torch::Device>&) const {
  return std::make_unique<PlainLoraVariant>();
}

}  // namespace peft
