// Value-swapped modules_to_save copies (include/peft/tuner/swapped_modules_to_save.hpp). Every
// change of owner is two copy_ passes under NoGradGuard: live -> the old owner's slot, the new
// owner's slot -> live. The slots are allocated once (at add), so activation never allocates.

#include "peft/tuner/swapped_modules_to_save.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "peft/error.hpp"

namespace peft {

SwappedModulesToSave::SwappedModulesToSave(std::string key, std::shared_ptr<torch::nn::Module> module)
    : key_(std::move(key)), module_(std::move(module)) {
  for (const auto& p : module_->named_parameters(/*recurse=*/true)) live_.emplace_back(p.key(), p.value());
  num_params_ = live_.size();
  for (const auto& b : module_->named_buffers(/*recurse=*/true)) live_.emplace_back(b.key(), b.value());
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < live_.size(); ++i) {
    original_.values.push_back(live_[i].second.detach().clone());
    if (i < num_params_) original_.requires_grad.push_back(false);
  }
}

SwappedModulesToSave::Slot& SwappedModulesToSave::slot(const std::string& owner) {
  if (owner.empty()) return original_;
  auto it = copies_.find(owner);
  if (it == copies_.end()) throw Error("modules_to_save `" + key_ + "` has no copy for adapter `" + owner + "`");
  return it->second;
}

void SwappedModulesToSave::add(const std::string& adapter) {
  if (has(adapter)) throw Error("modules_to_save `" + key_ + "` already has a copy for adapter `" + adapter + "`");
  // PEFT deep-copies the original module, whatever copy is live at the time.
  Slot s;
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < live_.size(); ++i)
    s.values.push_back(live_owner_.empty() ? live_[i].second.detach().clone() : original_.values[i].clone());
  s.requires_grad.assign(num_params_, false);
  copies_.emplace(adapter, std::move(s));
  order_.push_back(adapter);
}

void SwappedModulesToSave::stash_live() {
  Slot& s = slot(live_owner_);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < live_.size(); ++i) {
    s.values[i].copy_(live_[i].second);
    if (i < num_params_) s.requires_grad[i] = live_[i].second.requires_grad();
  }
}

void SwappedModulesToSave::load_live(const std::string& owner) {
  Slot& s = slot(owner);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < live_.size(); ++i) live_[i].second.copy_(s.values[i]);
  live_owner_ = owner;
}

void SwappedModulesToSave::activate(const std::string& adapter, bool trainable) {
  if (adapter != live_owner_) {
    slot(adapter);  // throws for an unknown adapter before anything moves
    stash_live();
    load_live(adapter);
  }
  for (std::size_t i = 0; i < num_params_; ++i) live_[i].second.set_requires_grad(trainable && !adapter.empty());
}

void SwappedModulesToSave::remove(const std::string& adapter, const std::string& next, bool trainable) {
  if (!has(adapter)) return;
  if (live_owner_ == adapter) {
    slot(next);
    load_live(next);  // the removed copy's live values are dropped, not stashed
    for (std::size_t i = 0; i < num_params_; ++i) live_[i].second.set_requires_grad(trainable && !next.empty());
  }
  copies_.erase(adapter);
  order_.erase(std::find(order_.begin(), order_.end(), adapter));
}

void SwappedModulesToSave::release(const std::string& keep) {
  if (keep != live_owner_) {
    slot(keep);
    load_live(keep);
  }
  copies_.clear();
  order_.clear();
  live_owner_.clear();
}

std::vector<std::pair<std::string, torch::Tensor>> SwappedModulesToSave::tensors(const std::string& adapter) const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const auto it = copies_.find(adapter);
  if (it == copies_.end()) return out;
  for (std::size_t i = 0; i < live_.size(); ++i)
    out.emplace_back(live_[i].first, live_owner_ == adapter ? live_[i].second : it->second.values[i]);
  return out;
}

std::vector<bool> SwappedModulesToSave::requires_grad(const std::string& adapter) const {
  const auto it = copies_.find(adapter);
  if (it == copies_.end()) return {};
  if (live_owner_ != adapter) return it->second.requires_grad;
  std::vector<bool> out;
  for (std::size_t i = 0; i < num_params_; ++i) out.push_back(live_[i].second.requires_grad());
  return out;
}

std::vector<torch::Device> SwappedModulesToSave::devices(const std::string& adapter) const {
  std::vector<torch::Device> out;
  for (const auto& [name, t] : tensors(adapter)) out.push_back(t.device());
  return out;
}

void SwappedModulesToSave::set_requires_grad(const std::string& adapter, bool requires_grad) {
  auto it = copies_.find(adapter);
  if (it == copies_.end()) return;
  if (live_owner_ == adapter)
    for (std::size_t i = 0; i < num_params_; ++i) live_[i].second.set_requires_grad(requires_grad);
  it->second.requires_grad.assign(num_params_, requires_grad);
}

}  // namespace peft
