#pragma once
/// peft::Linear: a drop-in torch::nn::Linear (same options, `weight` [out, in], `bias` [out],
/// same init and cost) that can carry LoRA adapters. Declare model layers with it and
/// get_peft_model attaches adapters in place, so every holder of the layer sees them.
/// As a BaseLayer (layers/base_layer.hpp) it uses the default, Linear adapter geometry.
///
///   y = x @ weight^T + bias + sum_active scaling * B(A(dropout(x)))
///
/// QLoRA: quantize_4bit_() (or a bitsandbytes checkpoint) turns the weight into bnb's packed
/// 4-bit codes; the forward then dequantises per call (quant/linear_4bit.hpp, docs/qlora.md).

#include <torch/nn/init.h>
#include <torch/nn/options/linear.h>
#include <torch/nn/pimpl.h>

#include <cmath>

#include "peft/layers/detail/fused_lora_linear.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/quant/linear_4bit.hpp"

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
    quant_.reset();
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
    auto copy = std::make_shared<LinearImpl>(options, cloned(weight, device), cloned(bias, device));
    copy->copy_quant_state_from(*this, device);
    return finish_clone(copy, device);
  }

  std::shared_ptr<LoraLayer> plain_copy() const override {
    torch::NoGradGuard no_grad;
    auto copy = std::make_shared<LinearImpl>(options, weight.clone(), bias.defined() ? bias.clone() : bias);
    copy->copy_quant_state_from(*this, torch::nullopt);
    return copy;
  }

  torch::Tensor base_forward(const torch::Tensor& x) override {
    return quant_ ? detail::linear_4bit_forward(x, weight, *quant_, bias) : torch::linear(x, weight, bias);
  }
  torch::Tensor forward(const torch::Tensor& x) { return lora_forward(x); }
  torch::Tensor fused_lora_forward(const torch::Tensor& x, const LoraFactors& f, double scaling,
                                   double dropout_p) override {
    if (quant_) return {};  // the 4-bit node already keeps only the packed codes
    return detail::fused_lora_linear(x, weight, bias, false, f.A, f.B, scaling, dropout_p);
  }

  // ---- 4-bit base (QLoRA; src/quant/linear_4bit.cpp) ----
  /// Quantise `weight` in place to bitsandbytes' 4-bit storage (bnb's Linear4bit): `weight`
  /// becomes the packed codes uint8 [(out·in + 1) / 2, 1], frozen; the bias stays as it is.
  /// compute_dtype: bnb_4bit_compute_dtype (unset: the input's dtype). ConfigError, with nothing
  /// changed, for a bad argument, a non-floating weight or merged adapters.
  void quantize_4bit_(QuantType4bit quant_type = QuantType4bit::nf4, std::int64_t blocksize = 64,
                      bool compress_statistics = false, std::optional<torch::ScalarType> compute_dtype = std::nullopt);
  /// Adopt pre-quantised storage (a bitsandbytes checkpoint): `packed` and its state, which must
  /// describe an [out, in] weight of this layer (ConfigError otherwise, nothing changed).
  void set_quantized_weight(const torch::Tensor& packed, QuantState4bit state,
                            std::optional<torch::ScalarType> compute_dtype = std::nullopt);
  /// Back to a dense `weight` (the quantised dtype, or `dtype`): merges into it are then exact.
  void dequantize_(std::optional<torch::ScalarType> dtype = std::nullopt);
  bool quantized() const { return quant_ != nullptr; }
  /// The 4-bit state, or null for a dense layer.
  const Linear4bitState* quant_state() const { return quant_.get(); }
  /// W dequantised for a 4-bit layer (a new tensor), else `weight` itself.
  torch::Tensor dense_weight() override;
  /// A 4-bit layer requantises W (lossy; warns as PEFT does on merge).
  void write_dense_weight(const torch::Tensor& w) override;
  /// A 4-bit layer keeps its codes uint8 and its state float32 under a dtype change; the bias
  /// and adapters follow it as usual. Devices move everything.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return bias; }
  bool fan_in_fan_out() const override { return false; }
  std::int64_t in_features() const override { return options.in_features(); }
  std::int64_t out_features() const override { return options.out_features(); }

  void pretty_print(std::ostream& stream) const override {
    stream << "peft::Linear(in_features=" << options.in_features()
           << ", out_features=" << options.out_features() << ", bias=" << std::boolalpha
           << options.bias();
    if (quant_) stream << ", 4bit=" << to_string(quant_->state.quant_type);
    stream << ", adapters=" << adapter_names().size() << ")";
  }

  torch::nn::LinearOptions options;
  torch::Tensor weight;
  torch::Tensor bias;

 private:
  void copy_quant_state_from(const LinearImpl& other, const torch::optional<torch::Device>& device);
  void to_impl_4bit(const c10::optional<torch::Device>& device, const c10::optional<torch::Dtype>& dtype,
                    bool non_blocking);
  std::shared_ptr<Linear4bitState> quant_;
};

/// Holder: `peft::Linear fc(in, out)`, `peft::Linear(torch::nn::LinearOptions(in, out).bias(false))`.
TORCH_MODULE(Linear);

}  // namespace peft
