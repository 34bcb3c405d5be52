#include "peft/layers/trainable_tokens.hpp"

#include <algorithm>

#include "peft/error.hpp"

namespace peft {

void TrainableTokens::register_rows(torch::nn::Module& owner, const std::string& name, const torch::Tensor& rows) {
  if (!holder_) {
    holder_ = owner.register_module("token_adapter", torch::nn::ModuleDict());
    delta_ = torch::nn::ParameterDict();
    holder_->update({{"trainable_tokens_delta", delta_.ptr()}});
  }
  delta_->insert(name, rows);
}

void TrainableTokens::add(torch::nn::Module& owner, const std::string& name, std::vector<std::int64_t> indices,
                          const torch::Tensor& W) {
  torch::NoGradGuard no_grad;
  const auto idx = index_tensor(indices, W);
  // PEFT initialises the rows from the weight (init_weights=True) and keeps a copy for unmerge.
  auto rows = W.index_select(0, idx).clone();
  rows.set_requires_grad(false);
  register_rows(owner, name, rows);
  entries_[name] = Entry{std::move(indices), rows.clone()};
}

const std::vector<std::int64_t>& TrainableTokens::indices(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error("this layer has no trainable tokens for adapter `" + name + "`");
  return it->second.indices;
}

torch::Tensor TrainableTokens::rows(const std::string& name) const {
  indices(name);  // the error for an unknown name
  return delta_->get(name);
}

const std::string* TrainableTokens::first_of(const std::vector<std::string>& names) const {
  for (const auto& n : names)
    if (has(n)) return &n;
  return nullptr;
}

torch::Tensor TrainableTokens::index_tensor(const std::vector<std::int64_t>& indices, const torch::Tensor& like) {
  return torch::tensor(indices, torch::TensorOptions().dtype(torch::kLong)).to(like.device());
}

torch::Tensor TrainableTokens::weight_with(const std::string& name, const torch::Tensor& W) const {
  return W.index_copy(0, index_tensor(indices(name), W), rows(name).to(W.scalar_type()));
}

void TrainableTokens::write_rows(const std::string& name, torch::Tensor& W) const {
  torch::NoGradGuard no_grad;
  W.index_copy_(0, index_tensor(indices(name), W), rows(name).to(W.device(), W.scalar_type()));
}

void TrainableTokens::restore_rows(const std::string& name, torch::Tensor& W) const {
  torch::NoGradGuard no_grad;
  W.index_copy_(0, index_tensor(indices(name), W), entries_.at(name).original.to(W.device(), W.scalar_type()));
}

void TrainableTokens::set_trainable(const std::vector<std::string>& active, bool trainable) {
  for (const auto& [n, e] : entries_)
    delta_->get(n).set_requires_grad(trainable && std::find(active.begin(), active.end(), n) != active.end());
}

void TrainableTokens::remove(torch::nn::Module& owner, const std::string& name) {
  if (!has(name)) return;
  delta_->pop(name);
  entries_.erase(name);
  if (entries_.empty()) clear(owner);
}

void TrainableTokens::clear(torch::nn::Module& owner) {
  entries_.clear();
  if (!holder_) return;
  owner.unregister_module("token_adapter");
  holder_ = nullptr;
  delta_ = nullptr;
}

void TrainableTokens::clone_into(TrainableTokens& dst, torch::nn::Module& owner,
                                 const torch::optional<torch::Device>& device) const {
  torch::NoGradGuard no_grad;
  for (const auto& [n, e] : entries_) {
    const torch::Tensor& src = delta_->get(n);
    auto copy = (device ? src.to(*device) : src).clone();
    copy.set_requires_grad(src.requires_grad());
    dst.register_rows(owner, n, copy);
    dst.entries_[n] = Entry{e.indices, (device ? e.original.to(*device) : e.original).clone()};
  }
}

}  // namespace peft
