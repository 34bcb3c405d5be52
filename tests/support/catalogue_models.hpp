#pragma once
// The catalogue models of the golden files (mlp, mlp_nobias, decoder, gpt2; docs/conformance.md) in
// LibTorch, with PEFT-adaptable layers (peft::Linear, peft::Conv1D) and the exact module keys.

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>

#include "peft/format/json_value.hpp"

namespace peft_test {

struct CatalogueModel {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

/// Build `model` from its case.json model_dims (throws std::runtime_error for an unknown model).
CatalogueModel build_catalogue_model(const std::string& model, const peft::JsonValue& dims);

}  // namespace peft_test
