#pragma once
/// Injection: attach a LoRA adapter to the matching layers of a torch::nn::Module tree
/// (docs/matching.md#order-of-operations, docs/init.md#creating-an-adapter), validating the whole plan
/// before anything changes.
///
/// The contract (LibTorch has no virtual forward and no hooks):
/// * peft::Linear / peft::Conv1D layers get the adapter **in place**: every holder of the layer
///   (the parent's member, a container) sees it. This is the way to declare adaptable layers.
/// * A stock torch::nn::Linear inside torch::nn::Sequential, ModuleList or ModuleDict is swapped
///   for a peft::Linear that shares its weight and bias; the container is updated in place so
///   its forward (or iteration) reaches the LoRA layer.
/// * A stock torch::nn::Linear that some other owner also holds (typically the parent's member
///   holder, used as `fc1(x)` in forward) cannot be swapped: the member would keep calling the
///   plain layer. That is an UnsupportedModuleError naming the module, raised before any change.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/activation.h>

#include <memory>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/init/base_rewrite.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/targeting/plan.hpp"

namespace peft {

/// Replace child `name` of `parent` by `replacement` everywhere the parent keeps it: the
/// registry, and the element list of Sequential / ModuleList / ModuleDict (src/tuner/container_surgery.cpp).
void replace_child_module(torch::nn::Module& parent, const std::string& name,
                          std::shared_ptr<torch::nn::Module> replacement);

/// Number of references a parent of this type legitimately holds to each child
/// (registry + element list for the containers).
std::size_t container_references(const torch::nn::Module& parent);

/// Classify one module for planning.
inline ModuleInfo describe_module(const std::string& key, const torch::nn::Module& m) {
  ModuleInfo info;
  info.key = key;
  info.type_name = m.name();
  if (const auto* l = dynamic_cast<const LoraLayer*>(&m)) {
    info.has_bias = const_cast<LoraLayer*>(l)->base_bias().defined();
    if (!l->adapter_names().empty()) {
      info.kind = ModuleKind::LoraLayer;
      info.type_name = "lora.Linear";  // PEFT's wrapper class name (all-linear re-targets it)
    } else {
      info.kind = dynamic_cast<const Conv1DImpl*>(&m) ? ModuleKind::Conv1D : ModuleKind::Linear;
    }
  } else if (const auto* stock = dynamic_cast<const torch::nn::LinearImpl*>(&m)) {
    info.kind = ModuleKind::Linear;
    info.has_bias = stock->bias.defined();
  } else if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&m)) {
    info.kind = ModuleKind::Embedding;
  } else if (dynamic_cast<const torch::nn::Conv1dImpl*>(&m) || dynamic_cast<const torch::nn::Conv2dImpl*>(&m) ||
             dynamic_cast<const torch::nn::Conv3dImpl*>(&m)) {
    info.kind = ModuleKind::Conv;
  } else if (dynamic_cast<const torch::nn::MultiheadAttentionImpl*>(&m)) {
    info.kind = ModuleKind::MultiheadAttention;
  } else {
    info.kind = m.children().empty() ? ModuleKind::Other : ModuleKind::Container;
  }
  return info;
}

/// The modules of a tree in named_modules() order (root first, key "").
struct ModuleTree {
  std::vector<std::string> keys;
  std::vector<std::shared_ptr<torch::nn::Module>> modules;
  std::vector<ModuleInfo> infos;

  explicit ModuleTree(const std::shared_ptr<torch::nn::Module>& root) {
    for (const auto& item : root->named_modules("", /*include_self=*/true)) {
      keys.push_back(item.key());
      modules.push_back(item.value());
      infos.push_back(describe_module(item.key(), *item.value()));
    }
  }
  std::shared_ptr<torch::nn::Module> find(const std::string& key) const {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == key) return modules[i];
    return nullptr;
  }
};

/// Settings for one layer's new adapter from the planned layer and the config.
inline AdapterSettings adapter_settings(const PlannedLayer& layer, const LoraConfig& config) {
  AdapterSettings s;
  s.r = layer.settings.r;
  s.lora_alpha = layer.settings.lora_alpha;
  s.scaling = layer.settings.scaling;
  s.lora_dropout = config.lora_dropout;
  s.use_rslora = config.use_rslora;
  s.lora_bias = config.lora_bias;
  s.use_dora = config.use_dora;
  s.init = config.init_method();
  s.pissa_niter = config.pissa_niter();
  if (config.loftq_config) {
    s.loftq_bits = config.loftq_config->loftq_bits;
    s.loftq_iter = config.loftq_config->loftq_iter;
  }
  return s;
}

/// The per-layer checks of inits that rewrite the base (dtype, layout, rank, CorDA eigens), so a
/// failing layer stops the injection before any layer changed.
inline void check_init_target(const AdapterSettings& s, const torch::nn::Module& module, const std::string& key) {
  if (!rewrites_base_weight(s.init)) return;
  if (const auto* l = dynamic_cast<const LoraLayer*>(&module)) {
    auto* layer = const_cast<LoraLayer*>(l);
    check_base_rewrite(s.init, layer->base_weight(), s.r, s.pissa_niter, layer->fan_in_fan_out(),
                       layer->corda_eigens() ? &*layer->corda_eigens() : nullptr, key, s.loftq_bits, s.loftq_iter);
  } else if (const auto* stock = dynamic_cast<const torch::nn::LinearImpl*>(&module)) {
    // A stock Linear cannot carry eigens (preprocess_corda observes peft::Linear layers only).
    check_base_rewrite(s.init, stock->weight, s.r, s.pissa_niter, false, nullptr, key, s.loftq_bits, s.loftq_iter);
  }
}

struct InjectionResult {
  TargetPlan plan;
  std::vector<std::shared_ptr<LoraLayer>> layers;  ///< in plan order
};

/// One UnsupportedModuleError naming every refused module (`refused`: one "`key`: reason" line
/// each), so a user fixes them all in one go.
inline UnsupportedModuleError refused_modules_error(const std::vector<std::string>& refused) {
  std::string msg = std::to_string(refused.size()) + (refused.size() == 1 ? " module is" : " modules are") +
                    " refused, nothing was changed:";
  for (const auto& r : refused) msg += "\n  - " + r;
  return UnsupportedModuleError(msg);
}

/// Add adapter `adapter_name` of `config` (validated) to every targeted layer of `root`.
/// The adapter is created inactive and frozen. Throws before any change when the plan fails
/// (nothing matched, unsupported module, bad rank, an existing adapter of that name). Stock
/// layers that cannot be swapped are collected, together with the caller's `refused` lines
/// (modules_to_save), into one UnsupportedModuleError naming all of them.
inline InjectionResult inject_adapter(const std::shared_ptr<torch::nn::Module>& root, const LoraConfig& config,
                                      const std::string& adapter_name, const PlanOptions& options = {},
                                      std::vector<std::string> refused = {}) {
  InjectionResult out;
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> swaps;  // key -> parent
  {
    ModuleTree tree(root);
    out.plan = plan_targets(config, tree.infos, options);
    for (const auto& layer : out.plan.layers) {
      const AdapterSettings settings = adapter_settings(layer, out.plan.config);
      LoraLayer::check_supported(settings);
      auto module = tree.find(layer.key);
      check_init_target(settings, *module, layer.key);
      if (auto* existing = dynamic_cast<LoraLayer*>(module.get())) {
        if (existing->has_adapter(adapter_name))
          throw ConfigError::about("add_adapter", "adapter_name",
                                   "\"" + adapter_name + "\"",
                                   "module `" + layer.key + "` already has an adapter with that name",
                                   "pick another name or delete_adapter first");
        continue;
      }
      // A stock torch::nn::Linear: swappable only if its parent alone refers to it.
      const auto dot = layer.key.rfind('.');
      const std::string parent_key = dot == std::string::npos ? "" : layer.key.substr(0, dot);
      auto parent = tree.find(parent_key);
      // References: the tree (1), this local copy (1), and what the parent holds.
      const auto expected = 2 + container_references(*parent);
      if (static_cast<std::size_t>(module.use_count()) > expected) {
        refused.push_back(
            "target `" + layer.key + "`: a stock torch::nn::Linear that another owner also "
            "holds (usually the parent's member holder, called as `" +
            layer.key.substr(dot == std::string::npos ? 0 : dot + 1) +
            "(x)` in forward): replacing it in the registry would leave that member calling the "
            "plain layer. Declare it as peft::Linear (same constructor and members) so adapters are "
            "attached in place.");
        continue;
      }
      swaps.emplace_back(layer.key, parent);
    }
  }
  if (!refused.empty()) throw refused_modules_error(refused);
  // Mutations start here; everything below only fails on out-of-memory.
  for (const auto& [key, parent] : swaps) {
    const auto name = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    const auto stock = std::dynamic_pointer_cast<torch::nn::LinearImpl>(parent->named_children()[name]);
    auto replacement = LinearImpl::sharing(*stock);
    replacement->train(stock->is_training());
    replace_child_module(*parent, name, replacement);
  }
  ModuleTree tree(root);
  for (const auto& layer : out.plan.layers) {
    auto module = std::dynamic_pointer_cast<LoraLayer>(tree.find(layer.key));
    module->update_layer(adapter_name, adapter_settings(layer, out.plan.config));
    out.layers.push_back(module);
  }
  return out;
}

}  // namespace peft
