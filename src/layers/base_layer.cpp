// BaseLayer's defaults: dense access for a dense floating weight and Linear's adapter geometry
// (which peft::Linear and peft::Conv1D share), and the adapter dropout.

#include "peft/layers/base_layer.hpp"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "peft/init/lora_init.hpp"
#include "peft/layers/adapter_settings.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "peft/layers/lora_math.hpp"
#include "peft/variants/dora_variant.hpp"
#include "peft/variants/plain_lora.hpp"

namespace peft {

torch::Tensor AdapterDropout::operator()(const torch::Tensor& x) const {
  // The fused inverted dropout (layers/lora_dropout.hpp), with the module's p and mode.
  return module ? lora_dropout(x, module->options.p(), module->is_training()) : x;
}

void BaseLayer::write_dense_weight(const torch::Tensor& w) {
  torch::Tensor& stored = base_weight();
  if (w.is_same(stored)) return;
  torch::NoGradGuard no_grad;
  stored.copy_(w);
}

LoraFactorEntries BaseLayer::create_lora_factors(std::int64_t r, bool lora_bias) const {
  torch::nn::Linear A(torch::nn::LinearOptions(in_features(), r).bias(false));
  torch::nn::Linear B(torch::nn::LinearOptions(r, out_features()).bias(lora_bias));
  return {{A.ptr(), torch::Tensor()}, {B.ptr(), torch::Tensor()}};
}

void BaseLayer::reset_lora_parameters(const AdapterSettings& settings, const LoraFactors& f,
                                      std::optional<CordaEigens>& eigens) {
  init_lora_factors(settings, f, *this, eigens);
}

torch::Tensor BaseLayer::lora_input(const torch::Tensor& x, const LoraFactors& f) const {
  return x.scalar_type() == f.A.scalar_type() ? x : x.to(f.A.scalar_type());
}

torch::Tensor BaseLayer::lora_branch(const torch::Tensor& x, const LoraFactors& f,
                                     const AdapterDropout& dropout) const {
  return torch::linear(torch::linear(dropout(x), f.A), f.B, f.B_bias);
}

void BaseLayer::add_lora_branch(torch::Tensor& result, const torch::Tensor& x, const LoraFactors& f,
                                const AdapterDropout& dropout, double scaling) const {
  const auto low = torch::linear(dropout(x), f.A);  // [..., r]
  if (!f.B_bias.defined() && result.scalar_type() == low.scalar_type() && result.dim() >= 2) {
    // result + s·(low @ Bᵀ) as one addmm: no [tokens, out] temporaries besides the output.
    if (result.dim() == 2) {
      // In place on the base output (no op's backward needs it): saves a [tokens, out] copy.
      // Not for >2-D outputs: in place on a reshaped view costs a gradient copy in backward.
      result.addmm_(low, f.B.t(), 1, scaling);
      return;
    }
    const auto out = result.size(-1);
    result = torch::addmm(result.reshape({-1, out}), low.reshape({-1, low.size(-1)}), f.B.t(), 1, scaling)
                 .view(result.sizes());
    return;
  }
  // B's bias (lora_bias) is added before scaling, so it is scaled too.
  result = result + torch::linear(low, f.B, f.B_bias) * scaling;
}

torch::Tensor BaseLayer::lora_delta(const LoraFactors& f, double scaling) const {
  return lora_delta_weight(f.A, f.B, scaling, fan_in_fan_out());
}

void BaseLayer::check_adapter_settings(const AdapterSettings& settings, const CordaEigens* eigens) {
  check_lora_settings(settings);
  check_lora_init_target(settings, *this, eigens);
}

torch::Tensor BaseLayer::base_forward_with(const torch::Tensor& x, const torch::Tensor& weight,
                                           const torch::Tensor& bias) {
  return torch::linear(x, transpose_if(weight, fan_in_fan_out()), bias);
}

std::unique_ptr<LoraVariant> BaseLayer::resolve_lora_variant(const AdapterSettings& settings) const {
  if (settings.use_dora) return std::make_unique<DoraVariant>();
  return std::make_unique<PlainLoraVariant>();
}

}  // namespace peft
