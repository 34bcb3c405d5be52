#pragma once
/// One per-adapter container of a LoraLayer (PEFT's nn.ModuleDict / nn.ParameterDict attributes
/// lora_dropout, lora_A, lora_B, lora_magnitude_vector, ...): registered on the layer at its
/// first entry (a ModuleDict for module entries, a ParameterDict for bare parameters) and
/// unregistered when its last entry goes, so a layer without adapters has only its own
/// parameters. Registration order is call order, which fixes the state dict's order.

#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/parameterdict.h>
#include <torch/types.h>

#include <cstddef>
#include <optional>
#include <string>

#include "peft/layers/base_layer.hpp"

namespace peft::detail {

class AdapterDict {
 public:
  /// Adds `e` as entry `adapter` of container `name` on `owner` (registered if needed).
  void insert(torch::nn::Module& owner, const std::string& name, const std::string& adapter, const AdapterEntry& e);
  /// Removes entry `adapter` (and the container with its last entry).
  void pop(torch::nn::Module& owner, const std::string& adapter);
  /// Unregisters the container with every entry.
  void clear(torch::nn::Module& owner);
  AdapterEntry get(const std::string& adapter) const;
  std::size_t size() const;

 private:
  std::string name_;
  torch::nn::ModuleDict modules_{nullptr};
  torch::nn::ParameterDict parameters_{nullptr};
};

/// A deep copy of an entry (module clone, or a cloned parameter keeping requires_grad).
AdapterEntry clone_entry(const AdapterEntry& e, const torch::optional<torch::Device>& device);
/// Moves an entry's tensors to `device` and, when given, `dtype` (Module::to semantics: the
/// parameters keep their identity, so LoraFactors handles stay valid).
void move_entry(const AdapterEntry& e, torch::Device device, std::optional<torch::ScalarType> dtype);
/// Handles to the factor tensors inside A's and B's entries (`weight`, B's `bias`).
LoraFactors factor_tensors(const AdapterEntry& A, const AdapterEntry& B);

}  // namespace peft::detail
