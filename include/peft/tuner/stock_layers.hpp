#pragma once
/// The stock LibTorch layers injection adopts (README "The injection contract"): inside a
/// Sequential, ModuleList or ModuleDict such a layer is swapped in place for the peft drop-in
/// that shares its tensors (same parameter names, no copy, no random draws). One table entry per
/// stock type — Linear, Embedding, Conv1d, Conv2d, Conv3d; the peft layers themselves say what
/// they are (BaseLayer::layer_type).

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>

#include <memory>
#include <string>

#include "peft/layers/lora_layer.hpp"
#include "peft/targeting/plan.hpp"

namespace peft {

/// A peft layer adopted from a stock one (not yet in the model).
struct AdoptedLayer {
  std::shared_ptr<LoraLayer> layer;  ///< the drop-in, sharing the stock layer's tensors
  torch::nn::AnyModule any;          ///< the same layer, typed for a Sequential's element list
};

/// One adoptable stock type.
struct StockLayerType {
  const char* stock_name;  ///< "torch::nn::Embedding"
  const char* peft_name;   ///< "peft::Embedding"
  ModuleKind kind;         ///< how planning sees it
  bool (*matches)(const torch::nn::Module& m);
  AdoptedLayer (*adopt)(const std::shared_ptr<torch::nn::Module>& stock);  ///< keeps the training flag
};

/// The entry for `m`'s type, or nullptr when m is not a stock layer peft-cpp adopts.
const StockLayerType* stock_layer_type(const torch::nn::Module& m);

/// The planning kind of a peft layer from its BaseLayer::layer_type() ("Linear" -> Linear,
/// "Conv1D" -> Conv1D, "Embedding" -> Embedding, "Conv1d"/"Conv2d"/"Conv3d" -> Conv).
ModuleKind module_kind_of(const std::string& layer_type);

}  // namespace peft
