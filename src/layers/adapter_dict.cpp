#include "peft/layers/detail/adapter_dict.hpp"

#include "peft/error.hpp"

namespace peft::detail {

void AdapterDict::insert(torch::nn::Module& owner, const std::string& name, const std::string& adapter,
                         const AdapterEntry& e) {
  if (!modules_ && !parameters_) {
    name_ = name;
    if (e.module)
      modules_ = owner.register_module(name, torch::nn::ModuleDict());
    else
      parameters_ = owner.register_module(name, torch::nn::ParameterDict());
  }
  if (e.module) {
    if (!modules_)
      throw Error("container `" + name_ + "` holds parameters, not modules (adapter `" + adapter + "`)");
    modules_->update({{adapter, e.module}});
  } else {
    if (!parameters_)
      throw Error("container `" + name_ + "` holds modules, not parameters (adapter `" + adapter + "`)");
    parameters_->insert(adapter, e.parameter);
  }
}

void AdapterDict::pop(torch::nn::Module& owner, const std::string& adapter) {
  // ModuleDict::pop keeps the child registered (like Python's): its parameters would stay in
  // named_parameters() and the name could not be used again.
  if (modules_) {
    modules_->pop(adapter);
    modules_->unregister_module(adapter);
  }
  if (parameters_) parameters_->pop(adapter);
  if (size() == 0) clear(owner);
}

void AdapterDict::clear(torch::nn::Module& owner) {
  if (!modules_ && !parameters_) return;
  owner.unregister_module(name_);
  modules_ = nullptr;
  parameters_ = nullptr;
}

AdapterEntry AdapterDict::get(const std::string& adapter) const {
  if (modules_) return {(*modules_)[adapter], torch::Tensor()};
  if (parameters_) return {nullptr, parameters_->get(adapter)};
  throw Error("container `" + name_ + "` has no entry `" + adapter + "`");
}

std::size_t AdapterDict::size() const {
  return modules_ ? modules_->size() : parameters_ ? parameters_->size() : 0;
}

AdapterEntry clone_entry(const AdapterEntry& e, const torch::optional<torch::Device>& device) {
  if (e.module) return {e.module->clone(device), torch::Tensor()};
  torch::NoGradGuard no_grad;
  auto copy = (device ? e.parameter.to(*device) : e.parameter).clone();
  copy.set_requires_grad(e.parameter.requires_grad());
  return {nullptr, copy};
}

void move_entry(const AdapterEntry& e, torch::Device device, std::optional<torch::ScalarType> dtype) {
  if (e.module) {
    if (dtype)
      e.module->to(device, *dtype);
    else
      e.module->to(device);
    return;
  }
  torch::NoGradGuard no_grad;
  e.parameter.set_data(dtype ? e.parameter.to(device, *dtype) : e.parameter.to(device));
}

LoraFactors factor_tensors(const AdapterEntry& A, const AdapterEntry& B) {
  auto param = [](const AdapterEntry& e, const char* key) {
    if (!e.module) return std::string(key) == "weight" ? e.parameter : torch::Tensor();
    const auto params = e.module->named_parameters(/*recurse=*/false);
    const torch::Tensor* t = params.find(key);
    return t ? *t : torch::Tensor();
  };
  return {param(A, "weight"), param(B, "weight"), param(B, "bias")};
}

}  // namespace peft::detail
