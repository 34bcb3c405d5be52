#pragma once
/// peft::Conv1d, peft::Conv2d, peft::Conv3d: drop-ins for torch::nn::Conv1d/2d/3d (same
/// ConvOptions, `weight` [out, in / groups, k…], `bias` [out], same init and forward, padding
/// modes included) that can carry LoRA adapters (docs/layer.md "Forward: torch convolutions").
///
///   y = conv(x, W, b) + Σ_active s · conv(conv(dropout(x), A), B, b_B)
///   A: Conv(in → r) with the base's kernel, stride, padding and dilation, no bias    [r, in, k…]
///   B: Conv(r → out), kernel 1, stride 1, the base's groups, bias with lora_bias    [out, r / groups, 1…]
///   Δ = (B.view(out, r) @ A.view(r, −1)).view(W.shape) · s         (merge: W += Δ, b += s·b_B)
///
/// As a BaseLayer (layers/base_layer.hpp): factors `lora_A.<a>.weight`, `lora_B.<a>.weight`
/// (torch convolutions, constructed — and drawing — like PEFT's), inits true (kaiming-uniform A
/// with fan_in = in·prod(kernel), B = 0), false and "gaussian"; every other init is refused with
/// PEFT's message. DoRA: variants/dora_conv.hpp. A rank must be divisible by groups; grouped
/// convolutions (groups > 1) cannot be merged (PEFT). Decisions (docs/quirks.md): A uses the
/// base's dilation (PEFT 0.20 drops it, which breaks the shapes of a dilated conv) and zero
/// padding whatever the base's padding_mode (PEFT); fan_in_fan_out is ignored as in PEFT.

#include <torch/nn/modules/conv.h>
#include <torch/nn/options/conv.h>
#include <torch/nn/pimpl.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "peft/layers/lora_layer.hpp"

namespace peft {

namespace detail {
template <std::size_t D> struct StockConv;
template <> struct StockConv<1> { using type = torch::nn::Conv1dImpl; static constexpr const char* name = "Conv1d"; };
template <> struct StockConv<2> { using type = torch::nn::Conv2dImpl; static constexpr const char* name = "Conv2d"; };
template <> struct StockConv<3> { using type = torch::nn::Conv3dImpl; static constexpr const char* name = "Conv3d"; };
}  // namespace detail

/// The LoRA-capable D-dimensional convolution; `Derived` is the concrete class (clone()).
template <std::size_t D, class Derived>
class ConvNdImpl : public LoraLayer {
 public:
  using Options = torch::nn::ConvOptions<D>;
  using Stock = typename detail::StockConv<D>::type;

  explicit ConvNdImpl(const Options& options_) : options(options_) { reset(); }
  /// Adopt existing tensors (weight [out, in / groups, k…], bias [out] or undefined) without
  /// copying or drawing random numbers.
  ConvNdImpl(const Options& options_, torch::Tensor weight_, torch::Tensor bias_);

  /// A layer of the Derived type sharing the weight and bias of a stock torch convolution.
  static std::shared_ptr<Derived> sharing(const Stock& stock) {
    const auto& o = stock.options;  // the stock module keeps the (transposed-capable) base options
    Options same(o.in_channels(), o.out_channels(), o.kernel_size());
    same.stride(o.stride()).padding(o.padding()).dilation(o.dilation()).groups(o.groups()).bias(o.bias());
    same.padding_mode(o.padding_mode());
    return std::make_shared<Derived>(same, stock.weight, stock.bias);
  }

  /// (Re)creates weight and bias and initialises them like torch's convolution (in a
  /// SkipInitScope: uninitialised, in the scope's dtype and device, no RNG draw).
  void reset();
  /// kaiming_uniform_(weight, a = sqrt(5)); bias ~ U(±1/sqrt(fan_in)).
  void reset_parameters();

  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override;
  std::shared_ptr<LoraLayer> plain_copy() const override;

  torch::Tensor forward(const torch::Tensor& x) { return lora_forward(x); }
  torch::Tensor base_forward(const torch::Tensor& x) override { return base_forward_with(x, weight, bias); }
  torch::Tensor base_forward_with(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) override;
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return bias; }
  bool fan_in_fan_out() const override { return false; }
  std::int64_t in_features() const override { return options.in_channels(); }
  std::int64_t out_features() const override { return options.out_channels(); }

  // ---- adapter geometry ----
  const char* layer_type() const override { return detail::StockConv<D>::name; }
  void check_adapter_settings(const AdapterSettings& s, const CordaEigens* eigens) override;
  void check_mergeable() const override;
  LoraFactorEntries create_lora_factors(std::int64_t r, bool lora_bias) const override;
  torch::Tensor lora_branch(const torch::Tensor& x, const LoraFactors& f, const AdapterDropout& dropout) const override;
  void add_lora_branch(torch::Tensor& result, const torch::Tensor& x, const LoraFactors& f,
                       const AdapterDropout& dropout, double scaling) const override;
  torch::Tensor lora_delta(const LoraFactors& f, double scaling) const override;
  std::unique_ptr<LoraVariant> resolve_lora_variant(const AdapterSettings& s) const override;

  void pretty_print(std::ostream& stream) const override;

  Options options;
  torch::Tensor weight;
  torch::Tensor bias;
};

class Conv1dImpl : public ConvNdImpl<1, Conv1dImpl> {
 public:
  using ConvNdImpl<1, Conv1dImpl>::ConvNdImpl;
  Conv1dImpl(std::int64_t in, std::int64_t out, torch::ExpandingArray<1> kernel_size)
      : ConvNdImpl(torch::nn::Conv1dOptions(in, out, kernel_size)) {}
};
class Conv2dImpl : public ConvNdImpl<2, Conv2dImpl> {
 public:
  using ConvNdImpl<2, Conv2dImpl>::ConvNdImpl;
  Conv2dImpl(std::int64_t in, std::int64_t out, torch::ExpandingArray<2> kernel_size)
      : ConvNdImpl(torch::nn::Conv2dOptions(in, out, kernel_size)) {}
};
class Conv3dImpl : public ConvNdImpl<3, Conv3dImpl> {
 public:
  using ConvNdImpl<3, Conv3dImpl>::ConvNdImpl;
  Conv3dImpl(std::int64_t in, std::int64_t out, torch::ExpandingArray<3> kernel_size)
      : ConvNdImpl(torch::nn::Conv3dOptions(in, out, kernel_size)) {}
};

extern template class ConvNdImpl<1, Conv1dImpl>;
extern template class ConvNdImpl<2, Conv2dImpl>;
extern template class ConvNdImpl<3, Conv3dImpl>;

/// Holders: `peft::Conv2d conv(torch::nn::Conv2dOptions(3, 16, 3).padding(1))`, `peft::Conv1d(4, 8, 5)`.
/// Not to be confused with peft::Conv1D (GPT-2's transposed Linear, layers/conv1d.hpp).
TORCH_MODULE(Conv1d);
TORCH_MODULE(Conv2d);
TORCH_MODULE(Conv3d);

}  // namespace peft
