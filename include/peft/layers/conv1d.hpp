#pragma once
/// peft::Conv1D: Hugging Face's GPT-2 `Conv1D(nf, nx)` — a linear layer whose weight is stored
/// transposed, [in=nx, out=nf] — that can carry LoRA adapters (fan_in_fan_out: deltas are
/// transposed to [in, out] before they touch the weight). As a BaseLayer (layers/base_layer.hpp)
/// it shares Linear's adapter geometry; only the base forward and the weight layout differ.
///
///   y = x @ weight + bias + sum_active scaling * B(A(dropout(x)))

#include <torch/nn/pimpl.h>

#include "peft/layers/detail/fused_lora_linear.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/layers/skip_init.hpp"

namespace peft {

class Conv1DImpl : public LoraLayer {
 public:
  /// nf = output features, nx = input features (transformers' argument order).
  Conv1DImpl(std::int64_t nf_, std::int64_t nx_) : nf(nf_), nx(nx_) { reset(); }
  /// Adopt existing tensors (weight [nx, nf], bias [nf]) without copying.
  Conv1DImpl(torch::Tensor weight_, torch::Tensor bias_) : nf(weight_.size(1)), nx(weight_.size(0)) {
    weight = register_parameter("weight", weight_, weight_.requires_grad());
    bias = register_parameter("bias", bias_, bias_.requires_grad());
  }

  /// weight ~ N(0, 0.02), bias = 0, as transformers initialises it (in a SkipInitScope:
  /// uninitialised, in the scope's dtype and device, no RNG draw).
  void reset() {
    weight = register_parameter("weight", detail::new_base_parameter_tensor({nx, nf}));
    bias = register_parameter("bias", new_filled_parameter_tensor({nf}, 0.0));
    if (skip_init_active()) return;
    torch::NoGradGuard no_grad;
    weight.normal_(0.0, 0.02);
  }

  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override {
    torch::NoGradGuard no_grad;
    return finish_clone(std::make_shared<Conv1DImpl>(cloned(weight, device), cloned(bias, device)), device);
  }

  std::shared_ptr<LoraLayer> plain_copy() const override {
    torch::NoGradGuard no_grad;
    return std::make_shared<Conv1DImpl>(weight.clone(), bias.clone());
  }

  torch::Tensor base_forward(const torch::Tensor& x) override {
    auto sizes = x.sizes().vec();
    sizes.back() = nf;
    return torch::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(sizes);
  }
  torch::Tensor forward(const torch::Tensor& x) { return lora_forward(x); }
  torch::Tensor fused_lora_forward(const torch::Tensor& x, const LoraFactors& f, double scaling,
                                   double dropout_p) override {
    return detail::fused_lora_linear(x, weight, bias, true, f.A, f.B, scaling, dropout_p);
  }
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return bias; }
  bool fan_in_fan_out() const override { return true; }
  const char* layer_type() const override { return "Conv1D"; }
  std::int64_t in_features() const override { return nx; }
  std::int64_t out_features() const override { return nf; }

  void pretty_print(std::ostream& stream) const override {
    stream << "peft::Conv1D(nf=" << nf << ", nx=" << nx << ", adapters=" << adapter_names().size() << ")";
  }

  std::int64_t nf;
  std::int64_t nx;
  torch::Tensor weight;
  torch::Tensor bias;
};

/// Holder: `peft::Conv1D c_attn(3 * d, d)`.
TORCH_MODULE(Conv1D);

}  // namespace peft
