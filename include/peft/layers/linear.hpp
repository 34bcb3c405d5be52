#pragma once
/// peft::Linear: a drop-in torch::nn::Linear (same options, `weight` [out, in], `bias` [out],
/// same init and cost) that can carry LoRA adapters. Declare model layers with it and
/// get_peft_model attaches adapters in place, so every holder of the layer sees them.
/// As a BaseLayer (layers/base_layer.hpp) it uses the default, Linear adapter geometry.
///
///   y = x @ weight^T + bias + sum_active scaling * B(A(dropout(x)))

#include <torch/nn/init.h>
#include <torch/nn/options/linear.h>
#include <torch/nn/pimpl.h>

#include <cmath>

#include "peft/layers/detail/fused_lora_linear.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/layers/skip_init.hpp"

namespace peft {

class LinearImpl : public LoraLayer {
 public:
  LinearImpl(std::int64_t in_features, std::int64_t out_features)
      : LinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit LinearImpl(const torch::nn::LinearOptions& options_) : options(options_) { reset(); }

  /// Adopt existing tensors (weight [out, in], bias [out] or undefined) without copying or
  /// drawing random numbers.
  LinearImpl(const torch::nn::LinearOptions& options_, torch::Tensor weight_, torch::Tensor bias_)
      : options(options_) {
    weight = register_parameter("weight", weight_, weight_.requires_grad());
    bias = bias_.defined() ? register_parameter("bias", bias_, bias_.requires_grad())
                           : register_parameter("bias", {}, /*requires_grad=*/false);
  }

  /// A peft::Linear sharing the weight and bias tensors of a stock torch::nn::Linear.
  static std::shared_ptr<LinearImpl> sharing(const torch::nn::LinearImpl& stock) {
    return std::make_shared<LinearImpl>(stock.options, stock.weight, stock.bias);
  }

  /// (Re)creates weight and bias and initialises them like torch::nn::Linear (in a
  /// SkipInitScope: uninitialised, in the scope's dtype and device, no RNG draw).
  void reset() {
    weight = register_parameter("weight",
                                detail::new_base_parameter_tensor({options.out_features(), options.in_features()}));
    if (options.bias())
      bias = register_parameter("bias", detail::new_base_parameter_tensor({options.out_features()}));
    else
      bias = register_parameter("bias", {}, /*requires_grad=*/false);
    if (!skip_init_active()) reset_parameters();
  }
  void reset_parameters() {
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(options.in_features()));
      bias.uniform_(-bound, bound);
    }
  }

  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override {
    torch::NoGradGuard no_grad;
    return finish_clone(std::make_shared<LinearImpl>(options, cloned(weight, device), cloned(bias, device)), device);
  }

  std::shared_ptr<LoraLayer> plain_copy() const override {
    torch::NoGradGuard no_grad;
    return std::make_shared<LinearImpl>(options, weight.clone(), bias.defined() ? bias.clone() : bias);
  }

  torch::Tensor base_forward(const torch::Tensor& x) override { return torch::linear(x, weight, bias); }
  torch::Tensor forward(const torch::Tensor& x) { return lora_forward(x); }
  torch::Tensor fused_lora_forward(const torch::Tensor& x, const LoraFactors& f, double scaling) override {
    return detail::fused_lora_linear(x, weight, bias, false, f.A, f.B, scaling);
  }
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return bias; }
  bool fan_in_fan_out() const override { return false; }
  std::int64_t in_features() const override { return options.in_features(); }
  std::int64_t out_features() const override { return options.out_features(); }

  void pretty_print(std::ostream& stream) const override {
    stream << "peft::Linear(in_features=" << options.in_features()
           << ", out_features=" << options.out_features() << ", bias=" << std::boolalpha
           << options.bias() << ", adapters=" << adapter_names().size() << ")";
  }

  torch::nn::LinearOptions options;
  torch::Tensor weight;
  torch::Tensor bias;
};

/// Holder: `peft::Linear fc(in, out)`, `peft::Linear(torch::nn::LinearOptions(in, out).bias(false))`.
TORCH_MODULE(Linear);

}  // namespace peft
