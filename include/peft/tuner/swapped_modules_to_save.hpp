#pragma once
/// modules_to_save for modules that are not LoRA layers (a torch::nn::LayerNorm, Embedding, a
/// head, any user module): PEFT's ModulesToSaveWrapper without a wrapper (docs/lifecycle.md
/// "modules_to_save").
///
/// PEFT replaces the module by a wrapper holding the frozen `original_module` and one trainable
/// deep copy per adapter (`modules_to_save.<adapter>`), and forwards to the active adapter's copy.
/// LibTorch has no forward hooks and a parent calls its member holder directly, so a module
/// cannot be put behind a wrapper. Instead the module keeps its own tensors and they hold the
/// values of whatever currently computes:
///   * the module's parameters and buffers (the *live* tensors) keep their identity: the parent's
///     members, optimizers and other references stay valid;
///   * the original values and every adapter's copy not in use are kept aside (`original` and
///     `copies[a]`, same shapes);
///   * activation (set_adapter, disable/enable, delete) copies values by value: the live values
///     go back to their owner's slot, the new owner's values come in. Nothing is re-allocated.
/// So the module computes exactly what PEFT's wrapper computes: the active adapter's copy, or
/// the original while adapters are disabled or no active adapter has a copy. Training updates
/// the live tensors (requires_grad only while an adapter with a copy is active and trainable).
/// unload / merge_and_unload leave the active adapter's values in the module (PEFT returns
/// `modules_to_save[active_adapter]`); otherwise the original values.
///
/// Limits (checked by LoraModel before anything changes): one set of live values means one
/// adapter at a time, so mixed-batch inference through such a module is refused (PEFT refuses
/// it for wrappers of types other than Linear/Embedding/Conv; declare a peft layer to get PEFT's
/// per-row copies); a tensor shared with a module outside (tied weights) is refused, since
/// swapping it would change the other module too.

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace peft {

class SwappedModulesToSave {
 public:
  /// Takes over `module` (its parameters and buffers, recursively, by their names in the module).
  SwappedModulesToSave(std::string key, std::shared_ptr<torch::nn::Module> module);

  const std::string& key() const { return key_; }
  const std::shared_ptr<torch::nn::Module>& module() const { return module_; }
  /// Adapters that have a copy, in creation order.
  const std::vector<std::string>& adapter_names() const { return order_; }
  bool has(const std::string& adapter) const { return copies_.count(adapter) != 0; }
  bool empty() const { return copies_.empty(); }
  /// Whose values the live tensors hold: an adapter name, or "" for the original.
  const std::string& live_owner() const { return live_owner_; }

  /// A copy for `adapter` (PEFT deep-copies the original module), frozen.
  void add(const std::string& adapter);
  /// Make `adapter`'s values live ("" = the original values). requires_grad of the live tensors
  /// becomes `trainable` (false for the original).
  void activate(const std::string& adapter, bool trainable);
  /// Remove the copy of `adapter`; when its values were live, `next` ("" = original) becomes live.
  void remove(const std::string& adapter, const std::string& next, bool trainable);
  /// Leave `keep`'s values ("" = original) in the module and forget every copy.
  void release(const std::string& keep);

  /// The tensors of `adapter`'s copy by name in the module (`weight`, `0.bias`, ...): the live
  /// tensors while its values are live, else the kept copy. Parameters first, then buffers.
  std::vector<std::pair<std::string, torch::Tensor>> tensors(const std::string& adapter) const;
  /// requires_grad of `adapter`'s copy (the live parameters while live, else the kept ones).
  std::vector<bool> requires_grad(const std::string& adapter) const;
  /// The devices of `adapter`'s copy.
  std::vector<torch::Device> devices(const std::string& adapter) const;
  /// Freeze or unfreeze `adapter`'s parameters (PEFT's set_requires_grad on the copy).
  void set_requires_grad(const std::string& adapter, bool requires_grad);

 private:
  struct Slot {
    std::vector<torch::Tensor> values;  // parameters then buffers, in live_ order
    std::vector<bool> requires_grad;    // of the parameters
  };
  Slot& slot(const std::string& owner);
  void stash_live();
  void load_live(const std::string& owner);

  std::string key_;
  std::shared_ptr<torch::nn::Module> module_;
  std::vector<std::pair<std::string, torch::Tensor>> live_;  // the module's own tensors
  std::size_t num_params_ = 0;                               // live_[0, num_params_) are parameters
  Slot original_;
  std::map<std::string, Slot> copies_;
  std::vector<std::string> order_;
  std::string live_owner_;
};

}  // namespace peft
