#include "support/small_models.hpp"

#include <torch/torch.h>

#include <stdexcept>
#include <utility>

namespace peft_test {
namespace {

/// The activation module and the name it is registered under.
std::pair<const char*, torch::nn::AnyModule> make_activation(Activation a) {
  switch (a) {
    case Activation::Tanh: return {"tanh", torch::nn::AnyModule(torch::nn::Tanh())};
    case Activation::Gelu: return {"gelu", torch::nn::AnyModule(torch::nn::GELU())};
    case Activation::Relu: break;
  }
  return {"relu", torch::nn::AnyModule(torch::nn::ReLU())};
}

}  // namespace

MlpImpl::MlpImpl(MlpOptions options_) : options(std::move(options_)) {
  const auto& sizes = options.sizes();
  if (sizes.size() < 2) throw std::invalid_argument("MlpOptions: sizes needs at least {in, out}");
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    layers.push_back(register_module("lin" + std::to_string(i),
                                     peft::Linear(torch::nn::LinearOptions(sizes[i], sizes[i + 1]).bias(options.bias()))));
    if (i == 0) {  // registered after lin0, like a member declared between lin0 and lin1
      auto [name, module] = make_activation(options.activation());
      activation = std::move(module);
      register_module(name, activation.ptr());
    }
  }
  lin0 = layers[0];
  if (layers.size() > 1) lin1 = layers[1];
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = layers[0](x);
  for (std::size_t i = 1; i < layers.size(); ++i) h = layers[i](activation.forward(h));
  return options.log_softmax() ? torch::log_softmax(h, -1) : h;
}

}  // namespace peft_test
