#pragma once
/// LoraLayer: everything a LoRA-capable layer does with its adapters (docs/layer.md,
/// docs/lifecycle.md), independent of the base layer's kind and of the adapters' variants.
///
///   y = base(x) + sum_{a in active} scaling_a * B_a(A_a(dropout_a(x)))      A_a: [r, in], B_a: [out, r]
///   scaling_a = alpha / r   (alpha / sqrt(r) with use_rslora)
///
/// Two seams keep it generic:
///   * the base layer (layers/base_layer.hpp, implemented by peft::Linear, peft::Conv1D,
///     peft::Embedding and peft::Conv1d/2d/3d): the frozen forward, the weight (stored and dense)
///     and the adapter geometry — how A and B are created, applied and composed into a delta;
///   * one variant per adapter (variants/lora_variant.hpp: plain LoRA, DoRA): init of extra
///     parameters, the forward contribution, the merged weight, merge and unmerge.
/// The init of new factors is init/lora_init.hpp; modules_to_save copies are ModulesToSave,
/// trainable tokens TrainableTokens (both per adapter, inside the layer).
///
/// In-memory names are PEFT's: `lora_A.<adapter>.weight`, `lora_B.<adapter>.weight`
/// (`.bias` with lora_bias), `lora_dropout.<adapter>`, the variant's containers (DoRA:
/// `lora_magnitude_vector.<adapter>.weight`), `modules_to_save.<adapter>.*`; the base keeps
/// `weight`/`bias`, so a layer without adapters has exactly the parameters (and cost) of the
/// plain layer.

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peft/detail/copyable_mutex.hpp"
#include "peft/init/corda_eigens.hpp"
#include "peft/layers/adapter_settings.hpp"
#include "peft/layers/base_layer.hpp"
#include "peft/layers/detail/adapter_dict.hpp"
#include "peft/layers/modules_to_save.hpp"
#include "peft/layers/trainable_tokens.hpp"
#include "peft/variants/lora_variant.hpp"

namespace peft {

namespace detail {
/// PEFT's rule after deleting adapter `name`: drop it from `active`; if nothing stays active,
/// activate the alphabetically first of `remaining` (with a warning).
void drop_active_adapter(std::vector<std::string>& active, const std::string& name,
                         const std::vector<std::string>& remaining);
}  // namespace detail

class LoraLayer : public BaseLayer {
 public:
  /// A new layer of the same kind holding copies of the base weight and bias, no adapters
  /// (the modules_to_save copy).
  virtual std::shared_ptr<LoraLayer> plain_copy() const = 0;

  // ---- adapters ----
  /// Create adapter `name` (PEFT's update_layer): dropout module, the factors of the base
  /// layer's geometry (Linear: lora_A = Linear(in, r, no bias), lora_B = Linear(r, out,
  /// bias=lora_bias)) drawn from the global CPU generator in fp32, then the init
  /// (init/lora_init.hpp), then cast to the base weight's device and (floating) dtype, then the
  /// variant's init. The new adapter is inactive and frozen; call set_adapter to activate it.
  /// pissa / pissa_niter_N / olora / corda / loftq replace the base weight by the residual
  /// (docs/init.md); corda consumes the eigens that preprocess_corda attached.
  void update_layer(const std::string& name, const AdapterSettings& s);

  /// Throws ConfigError for settings no Linear layer can be created with (EVA's re-created
  /// layers); a layer's own limits are BaseLayer::check_adapter_settings.
  static void check_supported(const AdapterSettings& s);

  /// fp16/bf16 adapter weights -> fp32 (PEFT's autocast_adapter_dtype=True).
  void upcast_adapter(const std::string& name);

  bool has_adapter(const std::string& name) const { return adapters_.count(name) != 0; }
  /// Whether adapter `name` lives in this layer at all: LoRA factors, a modules_to_save copy or
  /// trainable tokens.
  bool holds(const std::string& name) const {
    return has_adapter(name) || has_trainable_copy(name) || has_trainable_tokens(name);
  }
  /// Adapter `name`'s tensors under PEFT's on-disk suffixes (docs/file-format.md#on-disk-keys):
  /// `lora_A.weight`, `lora_B.weight`, `lora_B.bias` (or `lora_embedding_A`, `lora_embedding_B`),
  /// the variant's (`lora_magnitude_vector`), `token_adapter.trainable_tokens_delta`; the
  /// modules_to_save copy's own names. The tensors are the layer's own.
  std::vector<std::pair<std::string, torch::Tensor>> adapter_tensors(const std::string& name) const;
  /// Adapters of this layer in creation order.
  const std::vector<std::string>& adapter_names() const { return names_; }
  const AdapterSettings& settings(const std::string& name) const { return adapter(name).settings; }
  /// The Linear modules of adapter `name` (Error for a geometry whose factors are not Linear).
  torch::nn::Linear& lora_A(const std::string& name);
  torch::nn::Linear& lora_B(const std::string& name);
  /// The factor tensors of adapter `name`, for any geometry.
  const LoraFactors& lora_factors(const std::string& name) const { return adapter(name).factors; }
  /// The variant of adapter `name` (plain LoRA, DoRA, ...).
  LoraVariant& variant(const std::string& name) const { return *adapter(name).variant; }
  /// DoRA magnitude m [out] of adapter `name` (`lora_magnitude_vector.<name>.weight`).
  torch::Tensor& lora_magnitude(const std::string& name);
  /// Change the scaling of an adapter (PEFT's set_scale: factor * alpha / r).
  void set_scale(const std::string& name, double factor);
  /// Replace rank and alpha of adapter `name` (scaling recomputed; the factor tensors are not
  /// touched): hotswap_adapter, whose new weights may have a lower rank than the tensors.
  void set_rank_and_alpha(const std::string& name, std::int64_t r, Number lora_alpha);

  // ---- activation ----
  /// Make `names` the active adapters (summed in this order); their parameters get
  /// requires_grad = trainable, every other adapter's are frozen. Unmerges first (warning).
  void set_adapter(const std::vector<std::string>& names, bool trainable = true);
  const std::vector<std::string>& active_adapters() const { return active_; }
  /// Disabled: forward is the base layer's (a merged layer is unmerged first, as in PEFT).
  void enable_adapters(bool enabled);

  // ---- modules_to_save (PEFT's ModulesToSaveWrapper, kept inside the layer) ----
  /// Give adapter `name` a full trainable copy of this layer (`modules_to_save.<name>.weight`,
  /// `.bias`). While `name` is active, the copy replaces the layer's computation; the original
  /// weights (`weight`, `bias`) stay frozen.
  void add_trainable_copy(const std::string& name);
  bool has_trainable_copy(const std::string& name) const { return modules_to_save_.has(name); }
  /// The modules_to_save copy of adapter `name`.
  LoraLayer& trainable_copy(const std::string& name) { return modules_to_save_.get(name); }
  /// True when the layer carries no LoRA adapters, modules_to_save copies or trainable tokens.
  bool plain() const { return names_.empty() && modules_to_save_.empty() && tokens_.empty(); }

  // ---- trainable tokens (PEFT's TrainableTokensLayer, kept inside the layer) ----
  /// Give adapter `name` trainable rows `indices` of the weight (`token_adapter.trainable_tokens_
  /// delta.<name>`, initialised to the current rows, frozen until activated). While `name` is
  /// active the forward uses the weight with these rows; merge writes them into the weight.
  void add_trainable_tokens(const std::string& name, std::vector<std::int64_t> indices);
  /// Throws what add_trainable_tokens would throw, without changing anything: a layer without
  /// supports_trainable_tokens(), LoRA adapters on it, an index outside [0, in_features()), an
  /// existing entry for `name`.
  void check_trainable_tokens(const std::string& name, const std::vector<std::int64_t>& indices) const;
  bool has_trainable_tokens(const std::string& name) const { return tokens_.has(name); }
  bool has_any_trainable_tokens() const { return !tokens_.empty(); }
  /// The rows of adapter `name` (the trained parameter) and their indices.
  torch::Tensor trainable_tokens_delta(const std::string& name) const { return tokens_.rows(name); }
  const std::vector<std::int64_t>& trainable_token_indices(const std::string& name) const {
    return tokens_.indices(name);
  }
  /// Throws when activating `names` together is impossible here: two of them hold trainable
  /// tokens (PEFT: "Only one adapter can be set at a time").
  void check_set_adapter(const std::vector<std::string>& names) const;
  /// The weight the layer computes with under adapter `name`: the stored weight, with `name`'s
  /// token rows when it has tokens ("__base__": the stored weight).
  torch::Tensor weight_for(const std::string& name);
  /// The frozen forward under adapter `name`'s token rows: base_forward_with(x, weight_for(name)),
  /// which copies the whole weight; a layer may compute the same without that copy.
  virtual torch::Tensor token_forward(const torch::Tensor& x, const std::string& name) {
    return base_forward_with(x, weight_for(name), base_bias());
  }
  bool disabled() const { return disabled_; }
  /// While non-empty, forward() runs forward_mixed_batch with these per-row adapter names
  /// (set by LoraModel::mixed_batch for the duration of a call).
  void set_batch_adapters(std::vector<std::string> names) { batch_adapters_ = std::move(names); }
  const std::vector<std::string>& batch_adapters() const { return batch_adapters_; }
  /// Calibration hook (CorDA, EVA): while set, every forward first passes its input to `fn`
  /// (also with adapters disabled). Pass nullptr to remove it.
  void set_input_observer(std::function<void(const torch::Tensor&)> fn) { observer_ = std::move(fn); }
  /// CorDA eigens (PEFT's `module.eigens`): set by preprocess_corda, consumed by a "corda" update_layer.
  void set_corda_eigens(std::optional<CordaEigens> e) { corda_eigens_ = std::move(e); }
  const std::optional<CordaEigens>& corda_eigens() const { return corda_eigens_; }

  // ---- forward (src/layers/lora_forward.cpp) ----
  /// The layer's forward (the concrete layers' forward() calls this): base output, then each
  /// active adapter's variant adds its contribution to the input cast to the adapter dtype;
  /// the sum is cast back to the base output's dtype once.
  torch::Tensor lora_forward(const torch::Tensor& x);

  /// Mixed-batch inference (docs/lifecycle.md): row i of x uses adapter adapter_names[i]
  /// ("__base__" = no adapter). Eval only; rounds each delta to the output dtype before adding.
  /// Adapters whose variant does not support it (DoRA) are refused; in a layer that holds
  /// modules_to_save copies or trainable tokens (PEFT's wrappers) every named adapter must have
  /// one (PEFT's KeyError), and such a layer must be Linear, Embedding or Conv1d/2d/3d.
  torch::Tensor forward_mixed_batch(const torch::Tensor& x, const std::vector<std::string>& adapter_names);

  // ---- merging (src/layers/lora_merge.cpp) ----
  /// PEFT's get_delta_weight: the geometry's delta (Linear: transpose(B @ A, fan_in_fan_out) *
  /// scaling), in the adapter dtype (half adapters on the CPU are multiplied in fp32).
  torch::Tensor delta_weight(const std::string& name);

  /// The dense base weight with adapter `name` merged into the current one (not written back),
  /// and the state its variant's unmerge needs: W + Δ, or (DoRA) f ⊙ (W + Δ) with
  /// f = m / ‖transpose(W + Δ, fifo)‖_row and that norm (docs/dora.md).
  std::pair<torch::Tensor, torch::Tensor> merged_weight(const std::string& name);

  /// Throws what merge(safe_merge, names) would throw, without changing anything: a lora_bias
  /// adapter on a layer without bias, and (safe_merge) a non-finite merged weight or bias.
  void check_merge(bool safe_merge, const std::vector<std::string>& names);

  /// Fold adapters (default: the active ones) into the base weight. safe_merge checks the result
  /// for NaN/Inf before writing it (the base stays untouched on failure).
  void merge(bool safe_merge = false, std::vector<std::string> names = {});

  /// Undo merge(), last merged first.
  void unmerge();
  bool merged() const { return !merged_.empty(); }
  const std::vector<std::string>& merged_adapters() const { return merged_; }

  // ---- removal ----
  /// Remove one adapter (it must not be merged). The active list loses it; when it becomes
  /// empty the alphabetically first remaining adapter is activated (PEFT, with a warning).
  void delete_adapter(const std::string& name);

  /// Remove every adapter and its containers: the layer is a plain layer again (merged
  /// weights stay merged). A modules_to_save copy of an active adapter becomes the layer's
  /// weights (PEFT replaces the wrapper by the trained copy, in merge_and_unload and unload).
  void remove_all_adapters();

 protected:
  /// For a concrete layer's clone(): `t` copied (moved to `device` if given) with its
  /// requires_grad; an undefined tensor (no bias) stays undefined. Call under NoGradGuard.
  static torch::Tensor cloned(const torch::Tensor& t, const torch::optional<torch::Device>& device);
  /// Ends a concrete layer's clone(): `copy` (built from cloned base tensors) gets deep copies of
  /// the adapters and this layer's training mode.
  template <class Layer>
  std::shared_ptr<Layer> finish_clone(std::shared_ptr<Layer> copy, const torch::optional<torch::Device>& device) const {
    clone_adapters_into(*copy, device);
    copy->train(is_training());
    return copy;
  }
  /// Deep-copies every adapter (weights, settings, variant state, activation, merge state) into
  /// `dst`, which has the same base shape; used by the concrete layers' clone().
  void clone_adapters_into(LoraLayer& dst, const torch::optional<torch::Device>& device) const;

  void require(const std::string& name) const;

 private:
  /// One adapter: what it was created with, handles to its factors, its dropout (null: none)
  /// and its variant.
  struct Adapter {
    AdapterSettings settings;
    LoraFactors factors;
    std::shared_ptr<torch::nn::DropoutImpl> dropout;
    std::unique_ptr<LoraVariant> variant;
  };
  const Adapter& adapter(const std::string& name) const;
  Adapter& adapter(const std::string& name) {
    return const_cast<Adapter&>(static_cast<const LoraLayer*>(this)->adapter(name));
  }
  AdapterView view(const Adapter& a) { return AdapterView{*this, a.settings, a.factors, AdapterDropout{a.dropout.get()}}; }
  /// Adds adapter `name` with its (registered-to-be) entries; the variant's modules follow.
  void add_adapter_entries(const std::string& name, const AdapterEntry& dropout, const LoraFactorEntries& factors,
                           Adapter a);
  void set_requires_grad(const Adapter& a, bool on);
  torch::nn::Linear& linear_factor(std::map<std::string, torch::nn::Linear>& cache, const detail::AdapterDict& dict,
                                   const std::string& name);

  std::map<std::string, Adapter> adapters_;
  detail::AdapterDict lora_dropout_, lora_A_, lora_B_;   // registered in this order at the first adapter
  std::map<std::string, detail::AdapterDict> variant_dicts_;  // by container name (DoRA: lora_magnitude_vector)
  // Typed holders for lora_A()/lora_B(), filled lazily under `cache_mutex_` (map nodes are
  // stable; erasing happens only in adapter changes, which must not run concurrently with use).
  std::map<std::string, torch::nn::Linear> a_cache_, b_cache_;
  CopyableMutex cache_mutex_;
  std::vector<std::string> names_;
  std::vector<std::string> active_;
  std::vector<std::string> merged_;
  bool disabled_ = false;
  std::vector<std::string> batch_adapters_;
  std::function<void(const torch::Tensor&)> observer_;
  std::optional<CordaEigens> corda_eigens_;
  ModulesToSave modules_to_save_;
  TrainableTokens tokens_;
};

}  // namespace peft
