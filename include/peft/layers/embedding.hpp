#pragma once
/// peft::Embedding: a drop-in torch::nn::Embedding (same EmbeddingOptions — num_embeddings,
/// embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight — and the
/// same `weight` [num_embeddings, embedding_dim], init N(0, 1) with the padding_idx row zeroed)
/// that can carry LoRA adapters and trainable tokens (docs/layer.md "Forward: Embedding").
///
///   y = embedding(ids, W) + Σ_active s · embedding(ids, Aᵀ) @ Bᵀ        A [r, num], B [dim, r]
///
/// As a BaseLayer (layers/base_layer.hpp): factors are bare parameters `lora_embedding_A.<a>`,
/// `lora_embedding_B.<a>` (saved without `.weight`); init true (and every other init PEFT falls
/// back to here: gaussian, pissa, olora, orthogonal, eva, corda) A = 0, B ~ N(0, 1), false:
/// both N(0, 1), drawn as randn(r, num) then randn(dim, r) like PEFT; the LoRA lookup uses the
/// base's padding_idx/max_norm/norm_type/scale_grad_by_freq/sparse, never dropout, and the ids
/// are not cast; delta (B @ A)ᵀ · s; DoRA: variants/dora_embedding.hpp; lora_bias is refused.
/// W is stored [in, out], so fan_in_fan_out() is true (PEFT keeps the config flag on its layer
/// without using it; the saved config keeps the value given).

#include <torch/nn/modules/embedding.h>
#include <torch/nn/options/embedding.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>

#include "peft/layers/lora_layer.hpp"

namespace peft {

class EmbeddingImpl : public LoraLayer {
 public:
  EmbeddingImpl(std::int64_t num_embeddings, std::int64_t embedding_dim)
      : EmbeddingImpl(torch::nn::EmbeddingOptions(num_embeddings, embedding_dim)) {}
  explicit EmbeddingImpl(const torch::nn::EmbeddingOptions& options_);
  /// Adopt `weight` [num_embeddings, embedding_dim] without copying or drawing random numbers.
  EmbeddingImpl(const torch::nn::EmbeddingOptions& options_, torch::Tensor weight_);

  /// A peft::Embedding sharing the weight of a stock torch::nn::Embedding.
  static std::shared_ptr<EmbeddingImpl> sharing(const torch::nn::EmbeddingImpl& stock) {
    return std::make_shared<EmbeddingImpl>(stock.options, stock.weight);
  }

  /// (Re)creates the weight and initialises it like torch::nn::Embedding (or adopts options._weight;
  /// in a SkipInitScope: uninitialised, in the scope's dtype and device, no RNG draw).
  void reset();
  /// weight ~ N(0, 1), the padding_idx row set to 0.
  void reset_parameters();

  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override;
  std::shared_ptr<LoraLayer> plain_copy() const override;

  torch::Tensor forward(const torch::Tensor& ids) { return lora_forward(ids); }
  /// For a tied output layer (logits = hidden @ Wᵀ, the embedding weight as lm_head): the weight
  /// under the current activation, as PEFT's tied TrainableTokensWrapper computes it — the active
  /// adapter's token rows written in (none when disabled or merged; per row in a mixed batch);
  /// LoRA adapters of the embedding do not touch the head (PEFT: they act on the lookup only).
  torch::Tensor tied_output(const torch::Tensor& hidden);

  torch::Tensor base_forward(const torch::Tensor& ids) override { return base_forward_with(ids, weight, {}); }
  /// The lookup in W, then the active token rows put in where ids hit them: O(ids · dim) instead
  /// of PEFT's copy of the whole table (same values and row gradients). With max_norm,
  /// scale_grad_by_freq, sparse or a token row at padding_idx, PEFT's way (they act per table row).
  torch::Tensor token_forward(const torch::Tensor& ids, const std::string& name) override;
  torch::Tensor base_forward_with(const torch::Tensor& ids, const torch::Tensor& w, const torch::Tensor& b) override;
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return no_bias_; }
  bool fan_in_fan_out() const override { return true; }
  std::int64_t in_features() const override { return options.num_embeddings(); }
  std::int64_t out_features() const override { return options.embedding_dim(); }

  // ---- adapter geometry ----
  const char* layer_type() const override { return "Embedding"; }
  bool supports_trainable_tokens() const override { return true; }
  void check_adapter_settings(const AdapterSettings& s, const CordaEigens* eigens) override;
  LoraFactorNames lora_factor_names() const override { return {"lora_embedding_A", "lora_embedding_B"}; }
  LoraFactorEntries create_lora_factors(std::int64_t r, bool lora_bias) const override;
  void reset_lora_parameters(const AdapterSettings& s, const LoraFactors& f,
                             std::optional<CordaEigens>& eigens) override;
  torch::Tensor lora_input(const torch::Tensor& ids, const LoraFactors& f) const override;
  torch::Tensor lora_branch(const torch::Tensor& ids, const LoraFactors& f, const AdapterDropout& dropout) const override;
  void add_lora_branch(torch::Tensor& result, const torch::Tensor& ids, const LoraFactors& f,
                       const AdapterDropout& dropout, double scaling) const override;
  std::unique_ptr<LoraVariant> resolve_lora_variant(const AdapterSettings& s) const override;

  void pretty_print(std::ostream& stream) const override;

  torch::nn::EmbeddingOptions options;
  torch::Tensor weight;

 private:
  torch::Tensor lookup(const torch::Tensor& ids, const torch::Tensor& table) const;
  torch::Tensor no_bias_;
};

/// Holder: `peft::Embedding emb(vocab, dim)`, `peft::Embedding(torch::nn::EmbeddingOptions(v, d).padding_idx(0))`.
TORCH_MODULE(Embedding);

}  // namespace peft
