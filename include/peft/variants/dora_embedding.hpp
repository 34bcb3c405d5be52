#pragma once
/// DoRA on an Embedding (PEFT's DoraEmbeddingVariant; docs/dora.md). The Embedding's weight W
/// [num_embeddings, dim] is stored [in, out] (fan_in_fan_out), so magnitude, norms, merge and
/// unmerge are DoraVariant's with the transpose: m [dim] = ‖Wᵀ + s·B A‖ per embedding column.
/// Only the forward differs: k = m / ‖Wᵀ + s·B A‖ (detached) scales the whole running output,
/// no dropout and no bias:
///   result = k ⊙ result + k ⊙ (embedding(ids, Aᵀ) @ Bᵀ) · s

#include <memory>

#include "peft/variants/dora_variant.hpp"

namespace peft {

class DoraEmbeddingVariant final : public DoraVariant {
 public:
  void forward(const AdapterView& a, torch::Tensor& result, const torch::Tensor& ids) override;

 protected:
  std::unique_ptr<DoraVariant> make_empty() const override { return std::make_unique<DoraEmbeddingVariant>(); }
};

}  // namespace peft
