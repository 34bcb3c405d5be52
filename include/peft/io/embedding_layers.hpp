#pragma once
/// save_pretrained's `save_embedding_layers` (PEFT's get_peft_model_state_dict, "DEAL WITH
/// EMBEDDINGS"; docs/file-format.md "Embedding layers"): the base weights of the input and
/// output embeddings written into the adapter file, e.g. after resizing the vocabulary.
///
/// PEFT asks a transformers model for get_input_embeddings() / get_output_embeddings() and saves
/// nothing for a model without them (a plain nn.Module). peft-cpp asks the root module for the
/// same through peft::EmbeddingOwner (tuner/embedding_owner.hpp; the reference decoders implement
/// it): without it "auto" saves nothing, as PEFT, and "yes" is a ConfigError (PEFT would silently
/// save nothing).
///
/// "auto" (PEFT's default) saves them when an embedding layer is targeted (target_modules lists
/// `embed_tokens` or `lm_head`, or its regex matches a module of those names) and
/// trainable_token_indices is unset, or when `base_model_name_or_path` has a config.json whose
/// `vocab_size` differs from the input embedding's rows (the vocabulary was resized). When the
/// embedding is targeted, only embedding layers that carry LoRA are saved (their base weights,
/// `<m>.base_layer.weight`), as in PEFT.

#include <torch/nn/module.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "peft/config/config_json.hpp"
#include "peft/config/lora_config.hpp"
#include "peft/detail/regex.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/error.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/tuner/embedding_owner.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// save_pretrained's `save_embedding_layers`: PEFT's "auto", True or False.
enum class SaveEmbeddingLayers { Auto, Yes, No };

namespace detail {

inline std::string last_component(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

/// (input, output) embedding module keys of an EmbeddingOwner. For any other model: {"", ""}, or
/// with `by_name` (loading a file that has them) the first module named `embed_tokens`, `wte` or
/// `word_embeddings` and the one named `lm_head`.
inline std::pair<std::string, std::string> embedding_layer_keys(const torch::nn::Module& model, bool by_name = false) {
  if (const auto* owner = dynamic_cast<const EmbeddingOwner*>(&model))
    return {owner->input_embeddings_key(), owner->output_embeddings_key()};
  std::string input, output;
  if (!by_name) return {};
  for (const auto& item : model.named_modules("", false)) {
    const std::string name = last_component(item.key());
    if (input.empty() && (name == "embed_tokens" || name == "wte" || name == "word_embeddings")) input = item.key();
    if (output.empty() && name == "lm_head") output = item.key();
  }
  return {input, output};
}

/// PEFT's `embedding_is_targeted`.
inline bool embedding_is_targeted(const LoraConfig& config, const torch::nn::Module& model) {
  const ModuleSpec& t = config.target_modules;
  if (t.is_regex() && !t.is_all_linear()) {
    const auto re = compile_python_regex(t.pattern(), "target_modules");
    for (const auto& item : model.named_modules("", false)) {
      const std::string name = last_component(item.key());
      if ((name == "embed_tokens" || name == "lm_head") && re.fullmatch(item.key())) return true;
    }
    return false;
  }
  if (t.is_list())
    for (const auto& n : t.names())
      if (n == "embed_tokens" || n == "lm_head") return true;
  return false;
}

/// The base tensors of the embedding layers, keyed as on disk (`<m>.weight`, or
/// `<m>.base_layer.weight` for a layer carrying LoRA); `by_name` as in embedding_layer_keys.
inline std::vector<std::pair<std::string, torch::Tensor>> embedding_layer_tensors(const torch::nn::Module& model,
                                                                                   bool only_lora_layers,
                                                                                   bool by_name = false) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const auto [input, output] = embedding_layer_keys(model, by_name);
  for (const auto& item : model.named_modules("", false)) {
    if (item.key().empty() || (item.key() != input && item.key() != output)) continue;
    auto* layer = dynamic_cast<LoraLayer*>(item.value().get());
    const bool lora = layer && !layer->adapter_names().empty();
    if (only_lora_layers && !lora) continue;
    if (lora) {
      out.emplace_back(adapter_keys::module_key(item.key(), "base_layer.weight"), layer->base_weight());
      if (layer->base_bias().defined()) out.emplace_back(adapter_keys::base_layer_bias_key(item.key()), layer->base_bias());
    } else {
      for (const auto& p : item.value()->named_parameters(false))
        out.emplace_back(adapter_keys::module_key(item.key(), p.key()), p.value());
    }
  }
  return out;
}

/// PEFT's decision for `save_embedding_layers` (rule above), warning like PEFT when "auto" turns it on.
inline bool resolve_save_embedding_layers(SaveEmbeddingLayers mode, const LoraConfig& config,
                                          const torch::nn::Module& model, bool& targeted) {
  targeted = embedding_is_targeted(config, model);
  const bool owner = dynamic_cast<const EmbeddingOwner*>(&model) != nullptr;
  if (mode == SaveEmbeddingLayers::Yes && !owner)
    throw ConfigError::about("save_pretrained", "save_embedding_layers", "Yes",
                             "the model does not name its embeddings (a transformers model's get_input_embeddings; "
                             "PEFT saves nothing for such a model)",
                             "implement peft::EmbeddingOwner on the root module, or leave the option at Auto / No");
  if (mode != SaveEmbeddingLayers::Auto) return mode == SaveEmbeddingLayers::Yes;
  if (!owner) return false;  // PEFT: a model without get_input_embeddings saves no embedding layer
  if (targeted && !config.trainable_token_indices) {
    warn("Setting `save_embedding_layers` to `True` as embedding layers found in `target_modules`.");
    return true;
  }
  if (!config.base_model_name_or_path) return false;
  const auto base_config = std::filesystem::path(*config.base_model_name_or_path) / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(base_config, ec)) return false;
  const JsonValue json = JsonValue::parse(read_text_file(base_config));
  const JsonValue* vocab = json.is_object() ? json.find("vocab_size") : nullptr;
  const auto input = embedding_layer_keys(model).first;
  if (!vocab || !vocab->is_number() || input.empty()) return false;
  for (const auto& p : model.named_parameters(true))
    if (p.key() == input + ".weight" || p.key() == input + ".base_layer.weight") {
      if (p.value().size(0) == vocab->as_int()) return false;
      warn("Setting `save_embedding_layers` to `True` as the embedding layer has been resized during finetuning.");
      return true;
    }
  return false;
}

}  // namespace detail
}  // namespace peft
