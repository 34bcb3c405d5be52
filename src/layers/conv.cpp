// peft::Conv1d/2d/3d (layers/conv.hpp): the base convolution and its LoRA geometry, instantiated
// for D = 1, 2, 3.

#include "peft/layers/conv.hpp"

#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/padding.h>
#include <torch/nn/init.h>

#include <cmath>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "peft/detail/strings.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/error.hpp"
#include "peft/variants/dora_conv.hpp"
#include "peft/variants/plain_lora.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace {

namespace F = torch::nn::functional;

template <std::size_t D>
torch::Tensor conv_nd(const torch::Tensor& x, const torch::Tensor& w, const F::ConvFuncOptions<D>& o);
template <>
torch::Tensor conv_nd<1>(const torch::Tensor& x, const torch::Tensor& w, const F::ConvFuncOptions<1>& o) {
  return F::conv1d(x, w, o);
}
template <>
torch::Tensor conv_nd<2>(const torch::Tensor& x, const torch::Tensor& w, const F::ConvFuncOptions<2>& o) {
  return F::conv2d(x, w, o);
}
template <>
torch::Tensor conv_nd<3>(const torch::Tensor& x, const torch::Tensor& w, const F::ConvFuncOptions<3>& o) {
  return F::conv3d(x, w, o);
}

/// The explicit padding torch's convolution applies for a non-zero padding_mode (its
/// `_reversed_padding_repeated_twice`: last dim first, left and right). The padding variant is
/// read through index() and an unqualified get<> so that c10::variant (LibTorch 1.x) and
/// std::variant (2.x) both work.
template <std::size_t D>
std::vector<std::int64_t> reversed_padding(const torch::nn::ConvOptions<D>& o) {
  using std::get;
  std::vector<std::int64_t> pad(2 * D, 0);
  const auto& padding = o.padding();
  for (std::size_t i = 0; i < D; ++i) {
    std::int64_t left = 0, right = 0;
    if (padding.index() == 0) {  // explicit sizes
      left = right = (*get<0>(padding))[i];
    } else if (padding.index() == 2) {  // 'same'
      const auto total = (*o.dilation())[i] * ((*o.kernel_size())[i] - 1);
      left = total / 2;
      right = total - left;
    }
    pad[2 * (D - 1 - i)] = left;
    pad[2 * (D - 1 - i) + 1] = right;
  }
  return pad;
}

}  // namespace

template <std::size_t D, class Derived>
ConvNdImpl<D, Derived>::ConvNdImpl(const Options& options_, torch::Tensor weight_, torch::Tensor bias_)
    : options(options_) {
  std::vector<std::int64_t> want{options.out_channels(), options.in_channels() / options.groups()};
  for (const auto k : *options.kernel_size()) want.push_back(k);
  if (weight_.sizes() != torch::IntArrayRef(want))
    throw ConfigError::about(std::string("peft::") + layer_type(), "weight", detail::shape_string(weight_.sizes()),
                             "does not match the options (" + detail::shape_string(want) + ")",
                             "pass a weight of shape [out_channels, in_channels / groups, kernel...]");
  weight = register_parameter("weight", weight_, weight_.requires_grad());
  bias = bias_.defined() ? register_parameter("bias", bias_, bias_.requires_grad())
                         : register_parameter("bias", {}, /*requires_grad=*/false);
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::reset() {
  const std::string subject = std::string("torch::nn::") + layer_type() + "Options";
  if (options.groups() <= 0 || options.in_channels() % options.groups() != 0 ||
      options.out_channels() % options.groups() != 0)
    throw ConfigError::about(subject, "groups", std::to_string(options.groups()),
                             "in_channels and out_channels must be divisible by groups", "");
  if (options.padding().index() == 2)  // 'same'
    for (const auto s : *options.stride())
      if (s != 1)
        throw ConfigError::about(subject, "padding", "'same'", "padding='same' is not supported for strided convolutions",
                                 "use explicit padding or stride 1");
  std::vector<std::int64_t> sizes{options.out_channels(), options.in_channels() / options.groups()};
  for (const auto k : *options.kernel_size()) sizes.push_back(k);
  weight = register_parameter("weight", detail::new_base_parameter_tensor(sizes));
  if (options.bias())
    bias = register_parameter("bias", detail::new_base_parameter_tensor({options.out_channels()}));
  else
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  if (!skip_init_active()) reset_parameters();
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::reset_parameters() {
  // torch's ConvNdImpl::reset_parameters, draw for draw.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const auto fan_in = std::get<0>(torch::nn::init::_calculate_fan_in_and_fan_out(weight));
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

template <std::size_t D, class Derived>
std::shared_ptr<torch::nn::Module> ConvNdImpl<D, Derived>::clone(const torch::optional<torch::Device>& device) const {
  torch::NoGradGuard no_grad;
  return this->finish_clone(std::make_shared<Derived>(options, cloned(weight, device), cloned(bias, device)), device);
}

template <std::size_t D, class Derived>
std::shared_ptr<LoraLayer> ConvNdImpl<D, Derived>::plain_copy() const {
  torch::NoGradGuard no_grad;
  return std::make_shared<Derived>(options, weight.clone(), bias.defined() ? bias.clone() : bias);
}

template <std::size_t D, class Derived>
torch::Tensor ConvNdImpl<D, Derived>::base_forward_with(const torch::Tensor& x, const torch::Tensor& w,
                                                        const torch::Tensor& b) {
  auto o = F::ConvFuncOptions<D>().bias(b).stride(options.stride()).dilation(options.dilation()).groups(options.groups());
  const auto mode = options.padding_mode().index();  // kZeros, kReflect, kReplicate, kCircular
  if (mode == 0) return conv_nd<D>(x, w, o.padding(options.padding()));
  // torch's _conv_forward: pad explicitly in that mode, then convolve without padding.
  auto pad = F::PadFuncOptions(reversed_padding(options));
  if (mode == 1) pad.mode(torch::kReflect);
  else if (mode == 2) pad.mode(torch::kReplicate);
  else pad.mode(torch::kCircular);
  return conv_nd<D>(F::pad(x, pad), w, o.padding(torch::ExpandingArray<D>(0)));
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::check_adapter_settings(const AdapterSettings& s, const CordaEigens*) {
  if (s.r <= 0)
    throw ConfigError("r", std::to_string(s.r), "`r` should be a positive integer value", "use a rank >= 1");
  if (s.r % options.groups() != 0)
    throw ConfigError("r", std::to_string(s.r),
                      std::string("Targeting a ") + layer_type() + " with groups=" + std::to_string(options.groups()) +
                          " and rank " + std::to_string(s.r) +
                          ". Currently, support is limited to conv layers where the rank is divisible by groups",
                      "choose a rank divisible by groups (rank_pattern) or do not target this layer");
  switch (s.init) {
    case InitMethod::Default:
    case InitMethod::Random:
    case InitMethod::Gaussian: return;
    case InitMethod::Mica:
      throw ConfigError("init_lora_weights", "'mica'", "Invalid or unsupported variant combination: ('mica',)",
                        "conv layers support init_lora_weights true, false and \"gaussian\"");
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Orthogonal:
    case InitMethod::Eva:
    case InitMethod::Corda:
      // PEFT's conv reset_lora_parameters knows only true/false/"gaussian".
      throw ConfigError("init_lora_weights", "'" + s.init_name + "'",
                        "Unknown initialization init_lora_weights='" + s.init_name + "' for a " + layer_type() +
                            " layer",
                        "conv layers support init_lora_weights true, false and \"gaussian\"; leave them out of "
                        "target_modules for other inits");
    default:
      throw ConfigError("init_lora_weights", "'" + s.init_name + "'",
                        std::string("this initialisation is not implemented for ") + layer_type() + " layers",
                        "conv layers support init_lora_weights true, false and \"gaussian\"");
  }
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::check_mergeable() const {
  if (options.groups() > 1)
    throw Error(std::string("Merging is not supported for ") + layer_type() + " layers with groups > 1 (groups=" +
                std::to_string(options.groups()) + "; PEFT raises the same; hint: keep the adapter unmerged)");
}

template <std::size_t D, class Derived>
LoraFactorEntries ConvNdImpl<D, Derived>::create_lora_factors(std::int64_t r, bool lora_bias) const {
  if (options.groups() > 1) warn("LoRA adapter added to ConvNd layer with groups > 1. Merging is not supported.");
  // PEFT: conv_layer(in, r, kernel_size, stride, padding, bias=False), then
  // conv_layer(r, out, 1, 1, groups=groups, bias=lora_bias); constructed (and drawn) in this order.
  auto A = std::make_shared<Stock>(Options(options.in_channels(), r, options.kernel_size())
                                       .stride(options.stride())
                                       .padding(options.padding())
                                       .dilation(options.dilation())
                                       .bias(false));
  auto B = std::make_shared<Stock>(
      Options(r, options.out_channels(), torch::ExpandingArray<D>(1)).groups(options.groups()).bias(lora_bias));
  return {{A, torch::Tensor()}, {B, torch::Tensor()}};
}

template <std::size_t D, class Derived>
torch::Tensor ConvNdImpl<D, Derived>::lora_branch(const torch::Tensor& x, const LoraFactors& f,
                                                  const AdapterDropout& dropout) const {
  auto a = F::ConvFuncOptions<D>().stride(options.stride()).padding(options.padding()).dilation(options.dilation());
  const auto h = conv_nd<D>(dropout(x), f.A, a);
  return conv_nd<D>(h, f.B, F::ConvFuncOptions<D>().bias(f.B_bias).groups(options.groups()));
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::add_lora_branch(torch::Tensor& result, const torch::Tensor& x, const LoraFactors& f,
                                             const AdapterDropout& dropout, double scaling) const {
  result = result + lora_branch(x, f, dropout) * scaling;  // PEFT's op order: bit-identical outputs
}

template <std::size_t D, class Derived>
torch::Tensor ConvNdImpl<D, Derived>::lora_delta(const LoraFactors& f, double scaling) const {
  check_mergeable();
  const auto r = f.A.size(0);
  return torch::mm(f.B.reshape({options.out_channels(), r}), f.A.reshape({r, -1})).reshape(weight.sizes()) * scaling;
}

template <std::size_t D, class Derived>
std::unique_ptr<LoraVariant> ConvNdImpl<D, Derived>::resolve_lora_variant(const AdapterSettings& s) const {
  if (s.use_dora) return std::make_unique<DoraConvVariant>();
  return std::make_unique<PlainLoraVariant>();
}

template <std::size_t D, class Derived>
void ConvNdImpl<D, Derived>::pretty_print(std::ostream& stream) const {
  stream << "peft::" << layer_type() << "(" << options.in_channels() << ", " << options.out_channels()
         << ", kernel_size=" << options.kernel_size() << ", stride=" << options.stride()
         << ", groups=" << options.groups() << ", bias=" << std::boolalpha << bias.defined()
         << ", adapters=" << adapter_names().size() << ")";
}

template class ConvNdImpl<1, Conv1dImpl>;
template class ConvNdImpl<2, Conv2dImpl>;
template class ConvNdImpl<3, Conv3dImpl>;

}  // namespace peft
