#include "peft/layers/modules_to_save.hpp"

#include <algorithm>

#include "peft/error.hpp"
#include "peft/layers/lora_layer.hpp"

namespace peft {

void ModulesToSave::add(torch::nn::Module& owner, const std::string& name, std::shared_ptr<LoraLayer> copy) {
  if (!dict_) dict_ = owner.register_module("modules_to_save", torch::nn::ModuleDict());
  for (auto& p : copy->parameters()) p.set_requires_grad(false);
  dict_->update({{name, copy}});
  copies_[name] = std::move(copy);
}

LoraLayer& ModulesToSave::get(const std::string& name) const {
  auto it = copies_.find(name);
  if (it == copies_.end()) throw Error("this layer has no modules_to_save copy for adapter `" + name + "`");
  return *it->second;
}

LoraLayer* ModulesToSave::find(const std::string& name) const {
  auto it = copies_.find(name);
  return it == copies_.end() ? nullptr : it->second.get();
}

LoraLayer* ModulesToSave::first_of(const std::vector<std::string>& names) const {
  for (const auto& name : names)
    if (auto* copy = find(name)) return copy;
  return nullptr;
}

void ModulesToSave::set_trainable(const std::vector<std::string>& active, bool trainable) {
  for (const auto& [n, copy] : copies_) {
    const bool on = trainable && std::find(active.begin(), active.end(), n) != active.end();
    for (auto& p : copy->parameters()) p.set_requires_grad(on);
  }
}

void ModulesToSave::remove(torch::nn::Module& owner, const std::string& name) {
  if (!has(name)) return;
  dict_->pop(name);
  dict_->unregister_module(name);  // pop alone keeps it registered (adapter_dict.cpp)
  copies_.erase(name);
  if (copies_.empty()) clear(owner);
}

void ModulesToSave::clear(torch::nn::Module& owner) {
  copies_.clear();
  if (!dict_) return;
  owner.unregister_module("modules_to_save");
  dict_ = nullptr;
}

void ModulesToSave::clone_into(ModulesToSave& dst, torch::nn::Module& owner,
                               const torch::optional<torch::Device>& device) const {
  for (const auto& [n, copy] : copies_) {
    auto cloned = std::dynamic_pointer_cast<LoraLayer>(copy->clone(device));
    if (!dst.dict_) dst.dict_ = owner.register_module("modules_to_save", torch::nn::ModuleDict());
    dst.dict_->update({{n, cloned}});
    dst.copies_[n] = cloned;
  }
}

}  // namespace peft
