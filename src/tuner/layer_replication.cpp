// layer_replication (include/peft/tuner/layer_replication.hpp). ModuleList offers no way to remove
// an element; reset_module_list (container_surgery.cpp) rewrites the list the parent holds in place.

#include "peft/tuner/layer_replication.hpp"

#include <torch/nn/modules/container/modulelist.h>

#include "peft/error.hpp"
#include "peft/tuner/injection.hpp"

namespace peft {
namespace {

void set_items(torch::nn::ModuleList& layers, const std::vector<std::shared_ptr<torch::nn::Module>>& items) {
  reset_module_list(*layers, items);
}

/// A deep clone of `m` whose parameters and buffers use `m`'s storage (PEFT's clone_module with
/// share_weights=True).
std::shared_ptr<torch::nn::Module> shared_clone(const torch::nn::Module& m) {
  auto copy = m.clone();
  const auto src_p = m.named_parameters(true), dst_p = copy->named_parameters(true);
  for (const auto& p : src_p) dst_p[p.key()].set_data(p.value());
  const auto src_b = m.named_buffers(true), dst_b = copy->named_buffers(true);
  for (const auto& b : src_b) dst_b[b.key()].set_data(b.value());
  copy->train(m.is_training());
  return copy;
}

std::shared_ptr<torch::nn::Module> child(const std::shared_ptr<torch::nn::Module>& m, const std::string& name) {
  for (const auto& c : m->named_children())
    if (c.key() == name) return c.value();
  return nullptr;
}

}  // namespace

std::pair<std::string, torch::nn::ModuleList> find_replication_layers(const std::shared_ptr<torch::nn::Module>& root,
                                                                      const std::string& layers_key) {
  std::shared_ptr<torch::nn::Module> found;
  std::string key;
  if (!layers_key.empty()) {
    for (const auto& item : root->named_modules("", false))
      if (item.key() == layers_key) found = item.value();
    key = layers_key;
  } else {
    // PEFT: descend through `.model`, then `.bert`; the list is `layers`, `encoder.layer` or `h`.
    auto m = root;
    std::string prefix;
    while (auto next = child(m, "model")) {
      m = next;
      prefix += "model.";
    }
    if (auto bert = child(m, "bert")) {
      m = bert;
      prefix += "bert.";
    }
    if ((found = child(m, "layers"))) key = prefix + "layers";
    else if (auto enc = child(m, "encoder"); enc && (found = child(enc, "layer"))) key = prefix + "encoder.layer";
    else if ((found = child(m, "h"))) key = prefix + "h";
  }
  auto list = std::dynamic_pointer_cast<torch::nn::ModuleListImpl>(found);
  if (!list)
    throw ConfigError("layer_replication", layers_key.empty() ? "" : "\"" + layers_key + "\"",
                      "Could not locate the layers attribute in the model (a torch::nn::ModuleList at `layers`, "
                      "`model.layers`, `encoder.layer` or `h`, as PEFT looks for it)",
                      "name the list in LoraModelOptions::replication_layers");
  return {key, torch::nn::ModuleList(list)};
}

void check_layer_replication(const std::vector<std::array<std::int64_t, 2>>& map, std::size_t n) {
  for (const auto& [start, end] : map)
    if (start < 0 || start >= end || end > static_cast<std::int64_t>(n))
      throw ConfigError("layer_replication", "[" + std::to_string(start) + ", " + std::to_string(end) + "]",
                        "each range [start, end) must satisfy 0 <= start < end <= " + std::to_string(n) +
                            " (the number of layers)",
                        "e.g. [[0, 4], [2, 5]] repeats layers 2 and 3 of 5");
}

std::vector<std::shared_ptr<torch::nn::Module>> replicate_layers(torch::nn::ModuleList& layers,
                                                                 const std::vector<std::array<std::int64_t, 2>>& map) {
  std::vector<std::shared_ptr<torch::nn::Module>> previous(layers->begin(), layers->end());
  check_layer_replication(map, previous.size());
  std::vector<std::shared_ptr<torch::nn::Module>> items;
  for (const auto& [start, end] : map)
    for (auto i = start; i < end; ++i) {
      try {
        items.push_back(shared_clone(*previous[static_cast<std::size_t>(i)]));
      } catch (const c10::Error&) {  // a module that is not Cloneable<>
        throw UnsupportedModuleError("layer_replication: layer " + std::to_string(i) + " (" +
                                     previous[static_cast<std::size_t>(i)]->name() +
                                     ") cannot be cloned; derive its modules from torch::nn::Cloneable<> so "
                                     "replicas can be made. Nothing was changed.");
      }
    }
  set_items(layers, items);
  return previous;
}

void restore_layers(torch::nn::ModuleList& layers, const std::vector<std::shared_ptr<torch::nn::Module>>& previous) {
  set_items(layers, previous);
}

}  // namespace peft
