#include "peft/tuner/stock_layers.hpp"

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"

namespace peft {
namespace {

template <class Stock, class Peft>
StockLayerType entry(const char* stock_name, const char* peft_name, ModuleKind kind) {
  return {stock_name, peft_name, kind, [](const torch::nn::Module& m) { return dynamic_cast<const Stock*>(&m) != nullptr; },
          [](const std::shared_ptr<torch::nn::Module>& m) {
            auto layer = Peft::sharing(dynamic_cast<const Stock&>(*m));
            layer->train(m->is_training());
            return AdoptedLayer{layer, torch::nn::AnyModule(layer)};
          }};
}

const std::vector<StockLayerType>& table() {
  static const std::vector<StockLayerType> t{
      entry<torch::nn::LinearImpl, LinearImpl>("torch::nn::Linear", "peft::Linear", ModuleKind::Linear),
      entry<torch::nn::EmbeddingImpl, EmbeddingImpl>("torch::nn::Embedding", "peft::Embedding", ModuleKind::Embedding),
      entry<torch::nn::Conv1dImpl, Conv1dImpl>("torch::nn::Conv1d", "peft::Conv1d", ModuleKind::Conv),
      entry<torch::nn::Conv2dImpl, Conv2dImpl>("torch::nn::Conv2d", "peft::Conv2d", ModuleKind::Conv),
      entry<torch::nn::Conv3dImpl, Conv3dImpl>("torch::nn::Conv3d", "peft::Conv3d", ModuleKind::Conv),
  };
  return t;
}

}  // namespace

const StockLayerType* stock_layer_type(const torch::nn::Module& m) {
  for (const auto& t : table())
    if (t.matches(m)) return &t;
  return nullptr;
}

ModuleKind module_kind_of(const std::string& layer_type) {
  if (layer_type == "Conv1D") return ModuleKind::Conv1D;
  if (layer_type == "Embedding") return ModuleKind::Embedding;
  if (layer_type == "Conv1d" || layer_type == "Conv2d" || layer_type == "Conv3d") return ModuleKind::Conv;
  return ModuleKind::Linear;
}

}  // namespace peft
