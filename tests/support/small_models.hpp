#pragma once
// Small models the unit tests adapt, defined once: an MLP of peft::Linear layers and a module
// holding one adaptable layer under a given name. (The golden files' models are in
// catalogue_models.hpp.) Layers are created in order, so the global generator's draws are
// lin0.weight, lin0.bias, lin1.weight, ... as in a hand-written module with those members.

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "peft/layers/linear.hpp"

namespace peft_test {

enum class Activation { Relu, Tanh, Gelu };

struct MlpOptions {
  /* implicit */ MlpOptions(std::vector<std::int64_t> sizes) : sizes_(std::move(sizes)) {}
  /// {in, hidden..., out}: layers lin0 (in -> sizes[1]) .. lin{n-2}.
  TORCH_ARG(std::vector<std::int64_t>, sizes);
  TORCH_ARG(bool, bias) = true;
  /// Between the layers; registered as module "relu", "tanh" or "gelu".
  TORCH_ARG(Activation, activation) = Activation::Relu;
  /// log_softmax over the last dimension of the output (PEFT's test MLP).
  TORCH_ARG(bool, log_softmax) = false;
};

/// lin0 -> activation -> lin1 -> ... : peft::Linear layers named lin0, lin1, ...
struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(MlpOptions options_);
  torch::Tensor forward(const torch::Tensor& x);

  MlpOptions options;
  std::vector<peft::Linear> layers;
  peft::Linear lin0{nullptr}, lin1{nullptr};  ///< layers[0], layers[1] (null for a one-layer MLP)
  torch::nn::AnyModule activation;
};
TORCH_MODULE(Mlp);

/// One adaptable layer (peft::Linear, peft::Conv1D) registered under `name`; forward is the layer's.
template <class Layer>
struct OneLayerImpl : torch::nn::Module {
  OneLayerImpl(const std::string& name, Layer layer_) : layer(register_module(name, std::move(layer_))) {}
  torch::Tensor forward(const torch::Tensor& x) { return layer(x); }
  Layer layer;
};
template <class Layer>
using OneLayer = torch::nn::ModuleHolder<OneLayerImpl<Layer>>;

}  // namespace peft_test
