// LoraModel::set_requires_grad, get_layer_status and get_model_status: PEFT's functions of the same
// names (peft_model.py, tuners_utils.py; docs/lifecycle.md "Model status").

#include <algorithm>
#include <set>

#include "peft/layers/conv1d.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft {
namespace {

/// The adapter tensors of `name` in `layer` (PEFT's adapter_layer_names containers: lora_A,
/// lora_B or lora_embedding_A/B, the variant's, the modules_to_save copy, trainable tokens).
std::vector<torch::Tensor> adapter_tensors(LoraLayer& layer, const std::string& name) {
  std::vector<torch::Tensor> out;
  for (const auto& [suffix, t] : layer.adapter_tensors(name)) out.push_back(t);
  return out;
}

Tristate all_or_none(const std::vector<bool>& vals) {
  if (std::all_of(vals.begin(), vals.end(), [](bool v) { return v; })) return Tristate::True;
  if (std::none_of(vals.begin(), vals.end(), [](bool v) { return v; })) return Tristate::False;
  return Tristate::Irregular;
}

std::vector<std::string> device_types(const std::vector<torch::Device>& devices) {
  std::set<std::string> s;
  for (const auto& d : devices) s.insert(c10::DeviceTypeName(d.type(), /*lower_case=*/true));
  return {s.begin(), s.end()};
}

/// "peft::LinearImpl" -> "Linear" (Python's class name).
std::string short_type(std::string type) {
  const auto colon = type.rfind("::");
  if (colon != std::string::npos) type = type.substr(colon + 2);
  if (type.size() > 4 && type.compare(type.size() - 4, 4, "Impl") == 0) type.resize(type.size() - 4);
  return type;
}

void add_tensor_status(TunerLayerStatus& s, const std::string& adapter, const std::vector<torch::Tensor>& tensors) {
  std::vector<bool> grads;
  std::vector<torch::Device> devices;
  for (const auto& t : tensors) {
    grads.push_back(t.requires_grad());
    devices.push_back(t.device());
  }
  s.requires_grad[adapter] = all_or_none(grads);
  s.devices[adapter] = device_types(devices);
}

}  // namespace

void LoraModel::set_requires_grad(const std::vector<std::string>& adapter_names, bool requires_grad) {
  for (const auto& n : adapter_names) peft_config(n);  // unknown names throw before any change
  for (const auto& [key, layer] : lora_layers())
    for (const auto& n : adapter_names)
      for (auto& t : adapter_tensors(*layer, n)) t.set_requires_grad(requires_grad);
  for (const auto& m : swapped_)
    for (const auto& n : adapter_names) m->set_requires_grad(n, requires_grad);
}

std::vector<TunerLayerStatus> LoraModel::get_layer_status() const {
  std::vector<TunerLayerStatus> out;
  for (const auto& item : model_->named_modules("", /*include_self=*/true)) {
    const std::string& key = item.key();
    if (auto layer = std::dynamic_pointer_cast<LoraLayer>(item.value())) {
      if (layer->plain()) continue;
      TunerLayerStatus s;
      s.name = key;
      s.enabled = !layer->disabled();
      s.merged_adapters = layer->merged_adapters();
      if (!layer->adapter_names().empty()) {
        // PEFT's lora.Linear also wraps transformers' Conv1D.
        s.module_type = "lora." + (dynamic_cast<const Conv1DImpl*>(layer.get()) ? std::string("Linear")
                                                                                 : short_type(layer->name()));
        s.active_adapters = layer->active_adapters();
        s.available_adapters = layer->adapter_names();
      } else {  // a peft layer holding modules_to_save copies: PEFT's ModulesToSaveWrapper
        s.module_type = "ModulesToSaveWrapper";
        for (const auto& n : active_)
          if (layer->has_trainable_copy(n) && s.active_adapters.empty()) s.active_adapters.push_back(n);
        for (const auto& n : order_)
          if (layer->has_trainable_copy(n)) s.available_adapters.push_back(n);
      }
      std::sort(s.available_adapters.begin(), s.available_adapters.end());
      for (const auto& n : s.available_adapters) add_tensor_status(s, n, adapter_tensors(*layer, n));
      out.push_back(std::move(s));
      continue;
    }
    for (const auto& m : swapped_) {
      if (m->key() != key) continue;
      TunerLayerStatus s;
      s.name = key;
      s.module_type = "ModulesToSaveWrapper";
      s.enabled = !disabled_;
      const std::string owner = copy_owner(*m);
      if (!owner.empty()) s.active_adapters.push_back(owner);
      s.available_adapters = m->adapter_names();
      std::sort(s.available_adapters.begin(), s.available_adapters.end());
      for (const auto& n : s.available_adapters) {
        s.requires_grad[n] = all_or_none(m->requires_grad(n));
        s.devices[n] = device_types(m->devices(n));
      }
      out.push_back(std::move(s));
    }
  }
  if (out.empty())
    throw Error("No adapter layers found in the model, please ensure that it's a PEFT model or that you have PEFT "
                "adapters injected in the model.");
  return out;
}

TunerModelStatus LoraModel::get_model_status() const {
  const auto layers = get_layer_status();
  TunerModelStatus s;
  s.base_model_type = short_type(model_->name());
  s.adapter_model_type = "LoraModel";
  for (const auto& n : order_) s.peft_types[n] = "LORA";
  std::tie(s.trainable_params, s.total_params) = get_nb_trainable_parameters();
  s.num_adapter_layers = static_cast<std::int64_t>(layers.size());
  std::vector<bool> enabled;
  std::set<std::vector<std::string>> actives;
  std::set<std::string> available, merged_all;
  std::map<std::string, std::vector<Tristate>> grads;
  std::map<std::string, std::set<std::string>> devices;
  for (const auto& l : layers) {
    enabled.push_back(l.enabled);
    actives.insert(l.active_adapters);
    available.insert(l.available_adapters.begin(), l.available_adapters.end());
    merged_all.insert(l.merged_adapters.begin(), l.merged_adapters.end());
    for (const auto& [a, g] : l.requires_grad) grads[a].push_back(g);
    for (const auto& [a, d] : l.devices) devices[a].insert(d.begin(), d.end());
  }
  s.enabled = all_or_none(enabled);
  if (actives.size() <= 1) s.active_adapters = actives.empty() ? std::vector<std::string>{} : *actives.begin();
  s.available_adapters.assign(available.begin(), available.end());
  // Merged: every adapter merged somewhere must be merged on every layer that has it.
  s.merged_adapters = std::vector<std::string>(merged_all.begin(), merged_all.end());
  for (const auto& l : layers)
    for (const auto& a : l.available_adapters)
      if (merged_all.count(a) &&
          std::find(l.merged_adapters.begin(), l.merged_adapters.end(), a) == l.merged_adapters.end())
        s.merged_adapters.reset();
  for (const auto& [a, vals] : grads) {
    const bool all_true = std::all_of(vals.begin(), vals.end(), [](Tristate t) { return t == Tristate::True; });
    const bool all_false = std::all_of(vals.begin(), vals.end(), [](Tristate t) { return t == Tristate::False; });
    s.requires_grad[a] = all_true ? Tristate::True : all_false ? Tristate::False : Tristate::Irregular;
  }
  for (const auto& [a, d] : devices) s.devices[a].assign(d.begin(), d.end());
  return s;
}

}  // namespace peft
