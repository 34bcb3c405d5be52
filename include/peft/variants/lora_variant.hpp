#pragma once
/// LoraVariant: what differs between plain LoRA and its variants (PEFT's tuners/lora/variants.py
/// LoraVariant). LoraLayer holds one variant object per adapter, made by the base layer's
/// resolve_lora_variant, and dispatches every variant-specific step to it; per-adapter state
/// (DoRA's magnitude, norm cache and merge-time norm) lives in the object.
///
/// A variant provides, for adapter a with factors A [r, in], B [out, r], scaling s, dense base
/// weight W (stored layout) and Δ = lora_delta(A, B, s) from the base layer's geometry:
///   init(a)                   after A and B were created, initialised and cast (DoRA: m [out])
///   modules()                 modules to register as `<container>.<a>` after lora_B
///                             (DoRA: {"lora_magnitude_vector", m}) — cloned, removed with a
///   extra_parameters()        trained with A and B (requires_grad follows activation), keyed
///                             by PEFT's on-disk suffix (DoRA: "lora_magnitude_vector")
///   forward(a, result, x)     result (base output + bias + earlier adapters) += contribution
///                             plain:  result += s · B(A(dropout(x)))
///                             DoRA:   result = k ⊙ result + (1-k) ⊙ b + k ⊙ s · B(A(x)),
///                                     k = m / ‖W + s·BA‖_row (docs/dora.md "Forward")
///   merged_weight(a, W, Δ)    {W', state}: plain W + Δ; DoRA f ⊙ (W + Δ), f = m / ‖W + Δ‖_row,
///                             state = that norm (unmerge cannot recompute it)
///   merge(a, W, Δ)            W := W' in place (plain: W += Δ), keeping the state
///   merged(state)             keep merged_weight's state after a checked merge wrote W'
///   unmerge(a, W, Δ)          W := W without the adapter (plain: W -= Δ; DoRA: W / f - Δ)
///   upcast()                  fp16/bf16 extra parameters -> fp32 (autocast_adapter_dtype)
///   clone(device)             deep copy for LoraLayer's clone()
///   supports_mixed_batch()    whether mixed batches may route rows to it (they compute plain
///                             LoRA deltas; DoRA: no)
/// The base bias and lora_bias are the layer's business, not the variant's.

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/layers/base_layer.hpp"

namespace peft {

/// One adapter of one layer as a variant sees it (built on the stack for each call).
struct AdapterView {
  BaseLayer& base;                  ///< dense weight, bias, fan_in_fan_out, geometry, training flag
  const AdapterSettings& settings;  ///< r, scaling, dropout p, ...
  const LoraFactors& factors;       ///< A, B, B's bias
  AdapterDropout dropout;           ///< the adapter's input dropout
};

class LoraVariant {
 public:
  virtual ~LoraVariant() = default;
  /// For messages: "LoRA", "DoRA".
  virtual const char* name() const = 0;
  virtual bool supports_mixed_batch() const { return false; }

  virtual void init(const AdapterView& a) { (void)a; }
  virtual std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules() const { return {}; }
  virtual std::vector<std::pair<std::string, torch::Tensor>> extra_parameters() const { return {}; }
  virtual void upcast() {}

  /// The base output and this adapter in one step, when it is the only active adapter: an
  /// undefined tensor where the variant has no such path (then base_forward + forward run).
  virtual torch::Tensor fused_forward(const AdapterView& a, const torch::Tensor& x) {
    (void)a, (void)x;
    return {};
  }
  /// x is already in the adapter dtype (BaseLayer::lora_input); result may be updated in place.
  virtual void forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) = 0;

  /// W' in W's layout and dtype (W is not changed) and the state unmerge needs (or undefined).
  virtual std::pair<torch::Tensor, torch::Tensor> merged_weight(const AdapterView& a, const torch::Tensor& W,
                                                                const torch::Tensor& delta) const = 0;
  virtual void merge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) = 0;
  virtual void merged(torch::Tensor state) { (void)state; }
  virtual void unmerge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) = 0;

  /// Its modules() are registered on the clone's layer by the caller.
  virtual std::unique_ptr<LoraVariant> clone(const torch::optional<torch::Device>& device) const = 0;
};

}  // namespace peft
