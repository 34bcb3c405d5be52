#pragma once
/// DoRA as a LoraVariant for Linear-like layers (PEFT's DoraLinearVariant; docs/dora.md; the
/// math is in variants/dora.hpp). Per adapter it owns the trainable magnitude m [out]
/// (`lora_magnitude_vector.<a>.weight`, saved as `...lora_magnitude_vector`), the norm cache of
/// the forward and the weight norm of merge time:
///   init:     m = ‖transpose(W, fifo) + s·B A‖_row          (after the LoRA init and the cast)
///   forward:  result = k ⊙ result + (1-k) ⊙ b + k ⊙ s·B(A(x)),  k = m / ‖W + s·BA‖_row (detached);
///             with active dropout the base is recomputed on the dropped input
///   merge:    W' = f ⊙ (W + Δ), f = m / ‖W + Δ‖_row;  unmerge: W = W' / f - Δ with f of merge time
/// Mixed batches refuse it. Embedding and convolution DoRA (variants/dora_embedding.hpp,
/// variants/dora_conv.hpp) derive from it: they override the forward and, for convolutions, the
/// norms (initial_magnitude, merge_norm, weight_factor); merge and unmerge stay here.

#include <torch/types.h>

#include <memory>

#include "peft/variants/dora.hpp"
#include "peft/variants/lora_variant.hpp"

namespace peft {

class DoraVariant : public LoraVariant {
 public:
  const char* name() const override { return "DoRA"; }
  /// The magnitude vector m [out] (undefined before init).
  torch::Tensor& magnitude() { return magnitude_->weight; }

  void init(const AdapterView& a) override;
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules() const override;
  std::vector<std::pair<std::string, torch::Tensor>> extra_parameters() const override;
  void upcast() override;
  void forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> merged_weight(const AdapterView& a, const torch::Tensor& W,
                                                        const torch::Tensor& delta) const override;
  void merge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) override;
  void merged(torch::Tensor state) override { merge_norm_ = std::move(state); }
  void unmerge(const AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) override;
  std::unique_ptr<LoraVariant> clone(const torch::optional<torch::Device>& device) const override;

 protected:
  /// m at creation: ‖transpose(W, fifo) + s·B A‖_row (dora_init_magnitude).
  virtual torch::Tensor initial_magnitude(const AdapterView& a) const;
  /// The norm of merge time, shaped like m (detached): ‖transpose(W + Δ, fifo)‖_row.
  virtual torch::Tensor merge_norm(const AdapterView& a, const torch::Tensor& W, const torch::Tensor& delta) const;
  /// m / norm shaped to multiply W in its stored layout: [out, 1] ([1, out] with fan_in_fan_out).
  virtual torch::Tensor weight_factor(const AdapterView& a, const torch::Tensor& norm) const;
  /// An empty variant of the same class (clone() copies the state into it).
  virtual std::unique_ptr<DoraVariant> make_empty() const { return std::make_unique<DoraVariant>(); }

  std::shared_ptr<DoraMagnitudeImpl> magnitude_;
  DoraNormCache norm_cache_;   // forward: ‖W_i‖² and the whole norm while nothing changed
  torch::Tensor merge_norm_;   // PEFT's "<a>-weight_norm": the norm of merge time
};

}  // namespace peft
