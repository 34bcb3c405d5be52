// LoraModel's adapter lifecycle with modules_to_save and layer_replication
// (include/peft/tuner/lora_model.hpp; docs/lifecycle.md).

#include "peft/tuner/lora_model.hpp"

#include "peft/layers/linear.hpp"
#include "peft/detail/strings.hpp"
#include "peft/tuner/embedding_owner.hpp"
#include "peft/warnings.hpp"

#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/parameterdict.h>
#include <torch/nn/modules/container/parameterlist.h>

#include <algorithm>
#include <set>

#include "peft/tuner/config_support.hpp"
#include "peft/tuner/layer_replication.hpp"

namespace peft {
namespace {

bool inside(const std::string& key, const std::string& prefix) {
  return !prefix.empty() && key.size() > prefix.size() && key.compare(0, prefix.size() + 1, prefix + ".") == 0;
}

/// The tensors of `m` (parameters and buffers, recursively) that something outside `m`'s subtree
/// of `root` also holds: "<param> (also `<other key>`)".
std::vector<std::string> shared_outside(const torch::nn::Module& root, const std::string& key,
                                        const torch::nn::Module& m) {
  std::map<const void*, std::string> outside;
  for (const auto& p : root.named_parameters(true))
    if (p.key().compare(0, key.size() + 1, key + ".") != 0) outside.emplace(p.value().unsafeGetTensorImpl(), p.key());
  for (const auto& b : root.named_buffers(true))
    if (b.key().compare(0, key.size() + 1, key + ".") != 0) outside.emplace(b.value().unsafeGetTensorImpl(), b.key());
  std::vector<std::string> out;
  auto check = [&](const std::string& name, const torch::Tensor& t) {
    auto it = outside.find(t.unsafeGetTensorImpl());
    if (it != outside.end()) out.push_back(name + " (also `" + it->second + "`)");
  };
  for (const auto& p : m.named_parameters(true)) check(p.key(), p.value());
  for (const auto& b : m.named_buffers(true)) check(b.key(), b.value());
  // Storage shared with a replica (layer_replication) counts too: swapping would change both.
  if (out.empty()) {
    std::map<const void*, std::string> storages;
    for (const auto& p : root.named_parameters(true))
      if (p.key().compare(0, key.size() + 1, key + ".") != 0 && p.value().numel() > 0)
        storages.emplace(p.value().storage().unsafeGetStorageImpl(), p.key());
    for (const auto& p : m.named_parameters(true)) {
      if (p.value().numel() == 0) continue;
      auto it = storages.find(p.value().storage().unsafeGetStorageImpl());
      if (it != storages.end()) out.push_back(p.key() + " (storage shared with `" + it->second + "`)");
    }
  }
  return out;
}

}  // namespace

LoraModel::ModulesToSaveSelection LoraModel::select_modules_to_save(const LoraConfig& config) const {
  ModulesToSaveSelection out;
  if (!config.modules_to_save) return out;
  std::vector<std::string> skip;  // LoRA layers and selected modules: their children are theirs
  for (const auto& item : model_->named_modules("", /*include_self=*/false)) {
    const auto& key = item.key();
    const auto& module = item.value();
    if (std::any_of(skip.begin(), skip.end(), [&](const std::string& p) { return inside(key, p); })) continue;
    auto layer = std::dynamic_pointer_cast<LoraLayer>(module);
    if (layer && !layer->adapter_names().empty()) skip.push_back(key);
    bool hit = false;  // PEFT: the module key ends with an entry (a plain string suffix)
    for (const auto& m : *config.modules_to_save)
      hit = hit || (key.size() >= m.size() && key.compare(key.size() - m.size(), m.size(), m) == 0);
    if (!hit) continue;
    skip.push_back(key);
    const std::string type = module->name();
    if (layer) {
      if (!layer->adapter_names().empty())
        out.refused.push_back("modules_to_save `" + key + "` already carries LoRA adapters; a module is either "
                              "adapted or saved whole");
      else
        out.layers.push_back(layer);
      continue;
    }
    // PEFT's check_module: containers cannot be called, so they cannot be wrapped.
    if (dynamic_cast<const torch::nn::ModuleListImpl*>(module.get()) ||
        dynamic_cast<const torch::nn::ModuleDictImpl*>(module.get()) ||
        dynamic_cast<const torch::nn::ParameterDictImpl*>(module.get()) ||
        dynamic_cast<const torch::nn::ParameterListImpl*>(module.get())) {
      out.refused.push_back("modules_to_save `" + key + "`: modules_to_save cannot be applied to modules of type " +
                            type + " (select its elements instead)");
      continue;
    }
    bool adapted_inside = false;
    for (const auto& sub : module->modules(/*include_self=*/false))
      if (auto l = std::dynamic_pointer_cast<LoraLayer>(sub)) adapted_inside = adapted_inside || !l->plain();
    if (adapted_inside) {
      out.refused.push_back("modules_to_save `" + key + "` contains layers that carry adapters or copies; select "
                            "a module without them");
      continue;
    }
    const bool known = std::any_of(swapped_.begin(), swapped_.end(), [&](const auto& s) { return s->key() == key; });
    if (!known) {
      const auto shared = shared_outside(*model_, key, *module);
      if (!shared.empty()) {
        out.refused.push_back("modules_to_save `" + key + "` (" + type + ") shares tensors with other modules: " +
                              detail::abbreviated_list(shared, 4, ", ") +
                              "; its copies are swapped in by value, which would change them too (untie them, or "
                              "declare the layer as a peft layer, whose copy is a separate module)");
        continue;
      }
    }
    out.modules.emplace_back(key, module);
  }
  return out;
}

void LoraModel::add_adapter(const std::string& name, LoraConfig config) {
  // Adapter names become submodule names (LibTorch throws its own c10::Error for these).
  if (name.empty() || name.find('.') != std::string::npos)
    throw ConfigError::about("add_adapter", "adapter_name", "\"" + name + "\"",
                             "must be a non-empty name without '.' (it names submodules)", "e.g. \"task_a\"");
  if (configs_.count(name))
    throw ConfigError::about("add_adapter", "adapter_name", "\"" + name + "\"", "Adapter with this name already exists",
                             "choose another name or delete_adapter first");
  config.validate();
  check_config_supported(config, *model_);
  for (const auto& [other, c] : configs_)
    if (c.bias != Bias::none && config.bias != Bias::none)
      throw ConfigError("bias", to_string(config.bias),
                        "LoraModel supports only 1 adapter with bias; adapter `" + other +
                            "` already has bias=" + to_string(c.bias),
                        "set bias=\"none\" for all but one adapter");
  // layer_replication (PEFT's _prepare_model): first adapter only, since PEFT would replicate
  // the already replicated list again for a second one.
  std::optional<std::pair<torch::nn::ModuleList, std::vector<std::shared_ptr<torch::nn::Module>>>> replicated;
  if (config.layer_replication && !config.layer_replication->empty()) {
    if (!configs_.empty() || replicated_)
      throw ConfigError("layer_replication", "[...]",
                        "layers are replicated once, with the first adapter; PEFT would replicate the replicated "
                        "list again",
                        "add this adapter without layer_replication (its layers already exist)");
    if (config.bias != Bias::none)
      throw ConfigError("bias", to_string(config.bias),
                        "replicated layers share their base tensors, so a trained base bias cannot be replicated",
                        "set bias=\"none\" with layer_replication");
    auto [key, list] = find_replication_layers(model_, options_.replication_layers);
    auto previous = replicate_layers(list, *config.layer_replication);
    replicated.emplace(list, std::move(previous));
  }
  try {
    auto selection = select_modules_to_save(config);
    {
      std::vector<InitLoraWeights> inits{config.init_lora_weights};
      for (const auto& [other, c] : configs_) inits.push_back(c.init_lora_weights);
      warn_base_rewrite_with_other_adapters(inits);
    }
    InjectionResult r = inject_adapter(model_, config, name, options_.plan, selection.refused);
    for (auto& layer : selection.layers) layer->add_trainable_copy(name);
    for (auto& [key, module] : selection.modules) {
      auto it = std::find_if(swapped_.begin(), swapped_.end(), [&](const auto& s) { return s->key() == key; });
      if (it == swapped_.end()) it = swapped_.insert(swapped_.end(), std::make_shared<SwappedModulesToSave>(key, module));
      (*it)->add(name);
    }
    configs_[name] = r.plan.config;
    replaced_[name] = std::move(r.replaced);
    order_.push_back(name);
    std::vector<std::string> keys;
    for (const auto& l : r.plan.layers) keys.push_back(l.key);
    targeted_[name] = keys;
    if (options_.autocast_adapter_dtype)
      for (auto& layer : r.layers) layer->upcast_adapter(name);
  } catch (...) {
    if (replicated) restore_layers(replicated->first, replicated->second);
    throw;
  }
  if (replicated) replicated_ = true;
  refresh_trainable();
}

std::vector<std::string> LoraModel::modules_to_save_conflicts(const std::vector<std::string>& adapters) const {
  std::vector<std::string> out;
  auto count = [&](auto&& has) {
    std::size_t n = 0;
    std::vector<std::string> seen;
    for (const auto& a : adapters)
      if (has(a) && std::find(seen.begin(), seen.end(), a) == seen.end()) {
        seen.push_back(a);
        ++n;
      }
    return n;
  };
  for (const auto& item : model_->named_modules("", false)) {
    if (auto l = std::dynamic_pointer_cast<LoraLayer>(item.value())) {
      if (count([&](const std::string& a) { return l->has_trainable_copy(a); }) > 1) out.push_back(item.key());
      continue;
    }
    for (const auto& m : swapped_)
      if (m->key() == item.key() && count([&](const std::string& a) { return m->has(a); }) > 1)
        out.push_back(item.key());
  }
  return out;
}

void LoraModel::check_one_copy_per_module(const std::vector<std::string>& names) const {
  const auto conflicts = modules_to_save_conflicts(names);
  if (conflicts.empty()) return;
  throw Error("Only one adapter can be set at a time for modules_to_save (PEFT's ModulesToSaveWrapper): " +
              detail::abbreviated_list(conflicts, 8, ", ", "`") +
              " would take a copy from several of the adapters [" + detail::abbreviated_list(names, 8, ", ") +
              "] (hint: activate one of the adapters that save these modules, or combine them with "
              "add_weighted_adapter first)");
}

void LoraModel::check_mixed_batch_modules_to_save(const std::vector<std::string>& names) const {
  for (const auto& m : swapped_) {
    bool involved = !copy_owner(*m).empty();
    for (const auto& n : names) involved = involved || m->has(n);
    if (involved)
      throw Error("Mixed batching is only supported for the following modules: Linear, Embedding, Conv1d, Conv2d, "
                  "Conv3d. modules_to_save `" + m->key() + "` (" + m->module()->name() +
                  ") holds one adapter's values at a time (hint: declare it as a peft layer, whose copies are "
                  "separate modules, or run one forward per adapter)");
  }
}

void LoraModel::check_merge_allowed() const {
  if (replicated_)
    throw Error("Cannot merge LORA layers when base model layers are replicated (layer_replication shares one "
                "base weight between several layers; hint: use the adapters unmerged)");
  const auto* owner = dynamic_cast<const EmbeddingOwner*>(model_.get());
  if (!owner || !owner->tie_word_embeddings()) return;
  // PEFT looks at the names only (EMBEDDING_LAYER_NAMES), over every adapter's targets.
  std::vector<std::string> tied;
  for (const auto& [name, keys] : targeted_)
    for (const auto& key : keys) {
      const auto leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
      if ((leaf == "embed_tokens" || leaf == "lm_head") && std::find(tied.begin(), tied.end(), key) == tied.end())
        tied.push_back(key);
    }
  if (!tied.empty())
    warn("Model with `tie_word_embeddings=True` and the tied_target_modules=[" + detail::abbreviated_list(tied, 8, ", ", "'") +
         "] are part of the adapter. This can lead to complications: the merged embedding is also the output "
         "layer's weight. You can merge after untying the embeddings (a checkpoint saved with "
         "tie_word_embeddings=false and lm_head.weight a copy of the embedding).");
}

void LoraModel::delete_adapter(const std::string& name) {
  peft_config(name);
  auto layers = lora_layers();
  for (auto& [key, layer] : layers) {
    const auto& m = layer->merged_adapters();
    if (std::find(m.begin(), m.end(), name) != m.end())
      throw Error("Cannot delete adapter `" + name + "` while it is merged (hint: unmerge_adapter first)");
  }
  {
    ScopedWarningCapture per_layer;  // one model-level warning instead of one per layer
    for (auto& [key, layer] : layers)
      if (layer->holds(name)) layer->delete_adapter(name);
  }
  configs_.erase(name);
  targeted_.erase(name);
  saved_rank_.erase(name);
  replaced_.erase(name);
  order_.erase(std::find(order_.begin(), order_.end(), name));
  detail::drop_active_adapter(active_, name, order_);
  // A deleted live copy hands over to the original; refresh_trainable below makes the new
  // active adapter's copy live (PEFT: the wrapper follows the new active adapter).
  for (auto it = swapped_.begin(); it != swapped_.end();) {
    (*it)->remove(name, "", false);
    if ((*it)->empty()) {
      (*it)->release("");
      it = swapped_.erase(it);
    } else {
      ++it;
    }
  }
  refresh_trainable();
}

void LoraModel::undo_add_adapter(const std::string& name) {
  auto it = replaced_.find(name);
  std::vector<ReplacedChild> replaced = it == replaced_.end() ? std::vector<ReplacedChild>{} : it->second;
  delete_adapter(name);
  for (auto r = replaced.rbegin(); r != replaced.rend(); ++r) {
    const auto now = r->parent->named_children();
    const std::shared_ptr<torch::nn::Module>* current = now.find(r->name);
    auto* layer = current ? dynamic_cast<LoraLayer*>(current->get()) : nullptr;
    // Only a peft layer left empty goes back (another adapter added since may use it).
    if (layer && layer->adapter_names().empty() && !layer->has_any_trainable_tokens())
      replace_child_module(r->parent, r->name, r->module, r->any);
  }
}

std::pair<std::int64_t, std::int64_t> LoraModel::get_nb_trainable_parameters() const {
  std::int64_t trainable = 0, all = 0;
  std::set<const void*> seen;
  std::set<std::pair<const void*, std::int64_t>> storages;  // replicas share storage, not tensors
  // PEFT counts a bitsandbytes Params4bit as numel · 2 · element_size: the weights it stands for.
  std::set<const void*> four_bit;
  for (const auto& m : model_->modules())
    if (const auto* lin = dynamic_cast<const LinearImpl*>(m.get()); lin && lin->quantized())
      four_bit.insert(lin->weight.unsafeGetTensorImpl());
  for (const auto& p : model_->parameters()) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    if (p.numel() > 0 && !storages.emplace(p.data_ptr(), p.numel()).second) continue;
    const std::int64_t n = four_bit.count(p.unsafeGetTensorImpl()) ? p.numel() * 2 : p.numel();
    all += n;
    if (p.requires_grad()) trainable += n;
  }
  // PEFT's wrapper holds the original and one copy per adapter; the live tensors count once.
  for (const auto& m : swapped_)
    for (const auto& a : m->adapter_names()) {
      const auto grads = m->requires_grad(a);
      const auto tensors = m->tensors(a);
      for (std::size_t i = 0; i < grads.size(); ++i) {
        all += tensors[i].second.numel();
        if (m->live_owner() != a && grads[i]) trainable += tensors[i].second.numel();
      }
    }
  return {trainable, all};
}

}  // namespace peft
