#pragma once
// The catalogue models of the golden files (mlp, mlp_nobias, decoder, gpt2; docs/conformance.md;
// and the layer suite's convnet, conv1dnet, embednet) in LibTorch, with PEFT-adaptable layers
// (peft::Linear, peft::Conv1D, peft::Conv1d/2d, peft::Embedding) and the exact module keys.

#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "peft/format/json_value.hpp"

namespace peft_test {

struct CatalogueModel {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

/// The integer `key` of a case's model_dims (throws std::runtime_error naming a missing one).
std::int64_t model_dim(const peft::JsonValue& dims, const char* key);

/// Build `model` from its case.json model_dims (throws std::runtime_error for an unknown model).
CatalogueModel build_catalogue_model(const std::string& model, const peft::JsonValue& dims);

/// The layer suite's models (support/catalogue_layer_models.cpp); nullopt for another name.
std::optional<CatalogueModel> build_layer_catalogue_model(const std::string& model, const peft::JsonValue& dims);
/// The Python class name PEFT writes as auto_mapping.base_model_class for a layer-suite model.
std::string layer_catalogue_class_name(const std::string& model);
/// A random input of a layer-suite model: `rows` images/sequences (embednet: `tokens` ids each).
torch::Tensor layer_catalogue_input(const std::string& model, const peft::JsonValue& dims, std::int64_t rows,
                                    std::int64_t tokens);

}  // namespace peft_test
