#pragma once
/// Injection: attach a LoRA adapter (and its trainable tokens) to the matching layers of a
/// torch::nn::Module tree (docs/matching.md#order-of-operations, docs/init.md#creating-an-adapter),
/// validating the whole plan before anything changes.
///
/// The contract (LibTorch has no virtual forward and no hooks):
/// * peft layers (peft::Linear, peft::Conv1D, peft::Embedding, peft::Conv1d/2d/3d) get the
///   adapter **in place**: every holder of the layer (the parent's member, a container) sees it.
///   This is the way to declare adaptable layers.
/// * A stock torch::nn::Linear, Embedding or Conv1d/2d/3d inside torch::nn::Sequential,
///   ModuleList or ModuleDict is swapped for the peft drop-in that shares its tensors
///   (tuner/stock_layers.hpp); the container is updated in place so its forward (or iteration)
///   reaches the LoRA layer.
/// * Such a stock layer that some other owner also holds (typically the parent's member holder,
///   used as `fc1(x)` in forward) cannot be swapped: the member would keep calling the plain
///   layer. That is an UnsupportedModuleError naming the module, raised before any change.

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/modulelist.h>

#include <memory>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/init/base_rewrite.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/targeting/plan.hpp"
#include "peft/tuner/stock_layers.hpp"
#include "peft/tuner/trainable_tokens.hpp"

namespace peft {

/// Replace child `name` of `parent` by `replacement` everywhere the parent keeps it: the
/// registry, and the element list of Sequential / ModuleList / ModuleDict
/// (src/tuner/container_surgery.cpp). A Sequential needs `any`, the replacement typed for its
/// forward. Returns what was there, so that replace_child_module(r.parent, r.name, r.module,
/// r.any) puts it back (undoing a stock-layer swap).
struct ReplacedChild {
  std::shared_ptr<torch::nn::Module> parent;
  std::string name;
  std::shared_ptr<torch::nn::Module> module;
  torch::nn::AnyModule any;  ///< a Sequential's typed element; empty for other parents
};
ReplacedChild replace_child_module(const std::shared_ptr<torch::nn::Module>& parent, const std::string& name,
                                   std::shared_ptr<torch::nn::Module> replacement, torch::nn::AnyModule any = {});

/// Replaces every element of `list` (registry and element list) by `items`, in place, so holders
/// of the list see the change; ModuleList itself can only append (src/tuner/container_surgery.cpp).
void reset_module_list(torch::nn::ModuleListImpl& list, const std::vector<std::shared_ptr<torch::nn::Module>>& items);

/// Number of references a parent of this type legitimately holds to each child
/// (registry + element list for the containers).
std::size_t container_references(const torch::nn::Module& parent);

/// Classify one module for planning: peft layers by their BaseLayer::layer_type(), stock layers by
/// the adoption table.
inline ModuleInfo describe_module(const std::string& key, const torch::nn::Module& m) {
  ModuleInfo info;
  info.key = key;
  info.type_name = m.name();
  if (const auto* l = dynamic_cast<const LoraLayer*>(&m)) {
    info.has_bias = const_cast<LoraLayer*>(l)->base_bias().defined();
    if (!l->adapter_names().empty()) {
      info.kind = ModuleKind::LoraLayer;
      info.type_name = std::string("lora.") + l->layer_type();  // PEFT's wrapper class name
    } else {
      info.kind = module_kind_of(l->layer_type());
    }
  } else if (const StockLayerType* stock = stock_layer_type(m)) {
    info.kind = stock->kind;
    // Keep the dict alive: find() points into it (a temporary here was a use-after-free, ASan).
    const auto params = m.named_parameters(/*recurse=*/false);
    const torch::Tensor* bias = params.find("bias");
    info.has_bias = bias && bias->defined();
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
  s.init_name = config.init_lora_weights.describe();
  s.pissa_niter = config.pissa_niter();
  if (config.loftq_config) {
    s.loftq_bits = config.loftq_config->loftq_bits;
    s.loftq_iter = config.loftq_config->loftq_iter;
  }
  return s;
}

/// The LoRA-capable layer at `key` of a tree, resolved before any change: the peft layer itself,
/// or, for a stock layer in a container, the drop-in that will replace it (sharing its tensors).
struct LayerSlot {
  std::string key;
  std::shared_ptr<LoraLayer> layer;
  std::shared_ptr<torch::nn::Module> parent;  ///< set when the stock layer must be swapped
  torch::nn::AnyModule any;                   ///< the drop-in, typed for a Sequential
};

/// A module that is no LoRA-capable layer throws UnsupportedModuleError. A stock layer that cannot
/// be swapped (another owner holds it) adds a "`key`: reason" line to `refused` and gives a slot
/// without a layer, so that one error can name every such module.
inline LayerSlot resolve_layer_slot(const ModuleTree& tree, const std::string& key, std::vector<std::string>& refused) {
  LayerSlot slot;
  slot.key = key;
  auto module = tree.find(key);
  if (auto layer = std::dynamic_pointer_cast<LoraLayer>(module)) {
    slot.layer = layer;
    return slot;
  }
  const StockLayerType* stock = module ? stock_layer_type(*module) : nullptr;
  if (!stock)
    throw UnsupportedModuleError("Module `" + key + "` (" + (module ? module->name() : "missing") +
                                 ") cannot carry adapters. Nothing was changed.");
  // A stock layer: swappable only if its parent alone refers to it.
  const auto dot = key.rfind('.');
  const std::string parent_key = dot == std::string::npos ? "" : key.substr(0, dot);
  auto parent = tree.find(parent_key);
  // References: the tree (1), this local copy (1), and what the parent holds.
  const auto expected = 2 + container_references(*parent);
  if (static_cast<std::size_t>(module.use_count()) > expected) {
    refused.push_back("target `" + key + "`: a stock " + stock->stock_name +
                      " that another owner also holds (usually the parent's member holder, called as `" +
                      key.substr(dot == std::string::npos ? 0 : dot + 1) +
                      "(x)` in forward): replacing it in the registry would leave that member calling the "
                      "plain layer. Declare it as " + stock->peft_name +
                      " (same constructor and members) so adapters are attached in place.");
    return slot;
  }
  AdoptedLayer adopted = stock->adopt(module);
  slot.layer = adopted.layer;
  slot.parent = parent;
  slot.any = std::move(adopted.any);
  return slot;
}

/// One UnsupportedModuleError naming every refused module (`refused`: one "`key`: reason" line
/// each), so a user fixes them all in one go.
inline UnsupportedModuleError refused_modules_error(const std::vector<std::string>& refused) {
  std::string msg = std::to_string(refused.size()) + (refused.size() == 1 ? " module is" : " modules are") +
                    " refused, nothing was changed:";
  for (const auto& r : refused) msg += "\n  - " + r;
  return UnsupportedModuleError(msg);
}

struct InjectionResult {
  TargetPlan plan;
  std::vector<std::shared_ptr<LoraLayer>> layers;  ///< in plan order
  std::vector<TokenTarget> tokens;                 ///< layers that got trainable tokens
  std::vector<ReplacedChild> replaced;             ///< stock layers swapped for peft layers, in order
};

/// Add adapter `adapter_name` of `config` (validated) to every targeted layer of `root`, and its
/// trainable tokens (tuner/trainable_tokens.hpp). The adapter is created inactive and frozen.
/// Throws before any change when the plan fails (nothing matched, unsupported module or
/// settings, bad rank, an existing adapter of that name). Stock layers that cannot be swapped
/// are collected, with the caller's `refused` lines (modules_to_save), into one
/// UnsupportedModuleError naming all of them.
inline InjectionResult inject_adapter(const std::shared_ptr<torch::nn::Module>& root, const LoraConfig& config,
                                      const std::string& adapter_name, const PlanOptions& options = {},
                                      std::vector<std::string> refused = {}) {
  InjectionResult out;
  std::vector<LayerSlot> slots, token_slots;
  {
    ModuleTree tree(root);
    out.plan = plan_targets(config, tree.infos, options);
    out.tokens = plan_trainable_tokens(out.plan.config, tree.infos, out.plan, options);
    for (const auto& layer : out.plan.layers) {
      LayerSlot slot = resolve_layer_slot(tree, layer.key, refused);
      if (!slot.layer) continue;
      if (slot.layer->has_adapter(adapter_name))
        throw ConfigError::about("add_adapter", "adapter_name",
                                 "\"" + adapter_name + "\"",
                                 "module `" + layer.key + "` already has an adapter with that name",
                                 "pick another name or delete_adapter first");
      if (slot.layer->has_any_trainable_tokens())
        throw UnsupportedModuleError("Target module `" + layer.key +
                                     "` holds trainable tokens of another adapter; a module is either adapted with "
                                     "LoRA or token-trained. Nothing was changed.");
      // Rank, init, flags for this layer type; base-rewrite checks (dtype, layout, CorDA eigens).
      const auto& eigens = slot.layer->corda_eigens();
      try {
        slot.layer->check_adapter_settings(adapter_settings(layer, out.plan.config), eigens ? &*eigens : nullptr);
      } catch (const ConfigError& e) {
        throw e.located("module `" + layer.key + "`");
      }
      slots.push_back(std::move(slot));
    }
    for (const auto& t : out.tokens) {
      LayerSlot slot = resolve_layer_slot(tree, t.key, refused);
      if (!slot.layer) continue;
      slot.layer->check_trainable_tokens(adapter_name, t.indices);
      token_slots.push_back(std::move(slot));
    }
  }
  if (!refused.empty()) throw refused_modules_error(refused);
  // Mutations start here; everything below only fails on out-of-memory.
  for (auto* group : {&slots, &token_slots})
    for (const auto& slot : *group) {
      if (!slot.parent) continue;
      const auto dot = slot.key.rfind('.');
      const auto name = slot.key.substr(dot == std::string::npos ? 0 : dot + 1);
      out.replaced.push_back(replace_child_module(slot.parent, name, slot.layer, slot.any));
    }
  for (std::size_t i = 0; i < slots.size(); ++i) {
    slots[i].layer->update_layer(adapter_name, adapter_settings(out.plan.layers[i], out.plan.config));
    out.layers.push_back(slots[i].layer);
  }
  for (std::size_t i = 0; i < token_slots.size(); ++i)
    token_slots[i].layer->add_trainable_tokens(adapter_name, out.tokens[i].indices);
  return out;
}

}  // namespace peft
