#pragma once
/// PEFT's layer_replication (replicate_layers; docs/config.md "layer_replication"): the decoder
/// layers of a ModuleList are rebuilt from [start, end) ranges of the original list, e.g.
/// [[0, 4], [2, 5]] turns layers [0..4] into [0, 1, 2, 3, 2, 3, 4]. Each new entry is a clone
/// whose parameters share the original layer's storage (no memory for base weights), so every
/// copy gets its own adapters while the base stays one. The list is changed in place (its
/// holder in the parent keeps working).
///
/// Differences from PEFT, by necessity: LibTorch cannot register one tensor object in two
/// modules behind their typed members, so a replica's parameters are distinct tensors over the
/// same storage. That is exact for frozen base weights; training a shared base tensor (bias
/// "all"/"lora_only", modules_to_save inside a replica) would give each replica its own gradient,
/// so LoraModel refuses those combinations. PEFT also sets HF's `layer_idx` on the replicas;
/// peft-cpp's reference decoders have none.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace peft {

/// The ModuleList that layer_replication rebuilds: `layers_key` when given, else PEFT's search
/// from the root through `model.` children: `layers`, then `bert.` / `encoder.layer`, then `h`.
/// Returns the list and its key; ConfigError (field layer_replication) when none is found.
std::pair<std::string, torch::nn::ModuleList> find_replication_layers(const std::shared_ptr<torch::nn::Module>& root,
                                                                      const std::string& layers_key = "");

/// Checks the ranges against a list of `n` layers: 0 <= start < end <= n (ConfigError naming
/// the bad pair).
void check_layer_replication(const std::vector<std::array<std::int64_t, 2>>& map, std::size_t n);

/// Rebuilds `layers` from `map` (checked). Returns the previous elements, for restore_layers.
std::vector<std::shared_ptr<torch::nn::Module>> replicate_layers(torch::nn::ModuleList& layers,
                                                                 const std::vector<std::array<std::int64_t, 2>>& map);

/// Puts `previous` back as the elements of `layers` (undo of replicate_layers).
void restore_layers(torch::nn::ModuleList& layers, const std::vector<std::shared_ptr<torch::nn::Module>>& previous);

}  // namespace peft
