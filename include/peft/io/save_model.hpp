#pragma once
/// Saving a plain or merged model from memory (docs/file-format.md "Model checkpoints"): the
/// counterpart of load_checkpoint (io/hf_checkpoint.hpp). Keys are the module's own parameter
/// and buffer names (`lin0.weight`, `model.layers.0.mlp.up_proj.weight`), values as they are
/// (dtype kept, copied to the CPU), metadata {"format": "pt"} as transformers writes it.
///
///   auto merged = pm.merge_and_unload();
///   peft::save_model(*merged, "out/");            // out/model.safetensors
///   peft::load_checkpoint(*fresh, "out/");        // strict: every name, every shape
///
/// Tied tensors are written under every name (load_checkpoint, strict, expects each name).
/// With max_shard_size > 0 the tensors go to `model-0000i-of-0000N.safetensors` files of at most
/// that many bytes each (a tensor larger than the limit gets a shard of its own) and
/// `model.safetensors.index.json` ({"metadata": {"total_size"}, "weight_map"}), the Hugging Face
/// layout. Every file is written atomically; the index last, so a reader never sees an index
/// naming shards that are not complete. A previous save of the other layout in the same
/// directory is removed after the new one is in place.

#include <torch/nn/module.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace peft {

/// The module's parameters then buffers, by name (the tensors themselves, not copies).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& model);

struct SaveModelOptions {
  std::int64_t max_shard_size = 0;  ///< bytes per shard; 0 = one model.safetensors
};

/// Writes state_dict(model) into directory `dir` (created) as described above.
void save_model(const torch::nn::Module& model, const std::filesystem::path& dir, const SaveModelOptions& options = {});

}  // namespace peft
