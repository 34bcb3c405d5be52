#pragma once
/// PEFT's ModulesToSaveWrapper, kept inside the layer (docs/lifecycle.md): per adapter a full
/// trainable copy of the plain layer, registered on the owning layer as the ModuleDict
/// `modules_to_save` (`modules_to_save.<a>.weight`, `.bias`). While an adapter that has a copy
/// is active, the copy's base_forward replaces the layer's computation; the original weights
/// stay frozen. LoraLayer owns one and forwards its public API here.

#include <torch/nn/modules/container/moduledict.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace peft {

class LoraLayer;

class ModulesToSave {
 public:
  /// Adds the (frozen) copy of adapter `name`; registers `modules_to_save` on `owner` first.
  void add(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraLayer> copy);
  bool has(const std::string& name) const { return copies_.count(name) != 0; }
  bool empty() const { return copies_.empty(); }
  /// The copy of `name`; Error when there is none.
  LoraLayer& get(const std::string& name) const;
  /// The copy of `name`, or nullptr.
  LoraLayer* find(const std::string& name) const;
  /// The copy that computes the layer: the first of `active` that has one, or nullptr.
  LoraLayer* active_copy(const std::vector<std::string>& active) const {
    return copies_.empty() ? nullptr : first_of(active);
  }
  /// requires_grad = trainable && the copy's adapter is in `active`, for every copy.
  void set_trainable(const std::vector<std::string>& active, bool trainable);
  /// Removes the copy of `name` (and the container with the last copy).
  void remove(torch::nn::Module& owner, const std::string& name);
  /// Removes every copy and the container.
  void clear(torch::nn::Module& owner);
  /// Deep copies of every copy (their weights and requires_grad) into `dst`, registered on `owner`.
  void clone_into(ModulesToSave& dst, torch::nn::Module& owner, const torch::optional<torch::Device>& device) const;

 private:
  LoraLayer* first_of(const std::vector<std::string>& names) const;
  torch::nn::ModuleDict dict_{nullptr};
  std::map<std::string, std::shared_ptr<LoraLayer>> copies_;
};

}  // namespace peft
