#pragma once
/// peft::EmbeddingOwner: implemented by a model that names its input and output embeddings, like a
/// transformers PreTrainedModel with get_input_embeddings() / get_output_embeddings(). PEFT acts
/// on the embedding layers only for such models: save_pretrained's `save_embedding_layers`
/// (io/embedding_layers.hpp) saves nothing for a plain nn.Module. The reference decoders
/// (models/causal_lm.hpp) implement it; a user's own root module may too.
///
///   struct MyLmImpl : torch::nn::Module, peft::EmbeddingOwner {
///     std::string input_embeddings_key() const override { return "embed_tokens"; }
///     std::string output_embeddings_key() const override { return "lm_head"; }
///   };

#include <string>

namespace peft {

struct EmbeddingOwner {
  virtual ~EmbeddingOwner() = default;
  /// Module key of the input embedding, e.g. "transformer.wte", "model.embed_tokens".
  virtual std::string input_embeddings_key() const = 0;
  /// Module key of the output embedding ("lm_head"); "" when it is tied to the input embedding
  /// and therefore not a module of its own.
  virtual std::string output_embeddings_key() const = 0;
  /// transformers' config.tie_word_embeddings: the output layer computes with the input
  /// embedding's weight. Merging an adapter on a module named embed_tokens / lm_head of such a
  /// model warns, as PEFT's _check_merge_allowed does.
  virtual bool tie_word_embeddings() const { return false; }
};

}  // namespace peft
