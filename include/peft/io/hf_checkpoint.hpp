#pragma once
/// Plain Hugging Face checkpoints: a `model.safetensors` file, or a directory holding
/// `model.safetensors` or a sharded `model.safetensors.index.json`
/// (`{"weight_map": {"<param>": "<shard file>"}}`). One resolver for every reader (load_checkpoint,
/// peft-merge) with one path-safety policy: shard names are plain file names in the checkpoint
/// directory (no '/', no "..", not absolute) ending in ".safetensors" (so none can be the index
/// or a side file such as config.json), and index and shards must agree.
///
/// load_checkpoint streams a checkpoint into a module tree by parameter name: headers first, the
/// whole plan checked, then the data tensor by tensor (no shard is mapped or held whole).

#include <torch/nn/module.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"
#include "peft/io/safetensors.hpp"

namespace peft {

/// Where the tensors of a checkpoint are (nothing read but the index).
struct HfCheckpointFiles {
  std::filesystem::path dir;                  ///< the checkpoint directory; empty when given a file
  std::vector<std::string> shard_names;       ///< file names, in weight_map order of first use
  std::vector<std::filesystem::path> shards;  ///< the same files as paths
  std::optional<JsonValue> index;             ///< model.safetensors.index.json of a sharded checkpoint
  std::filesystem::path index_path;           ///< its path (empty when not sharded)
  /// The index's weight_map object (tensor name -> shard file name); nullptr when not sharded.
  const JsonValue* weight_map() const { return index ? index->find("weight_map") : nullptr; }
};

/// The files of the checkpoint at `path`: a directory (model.safetensors, else the sharded
/// index), or anything else taken as one safetensors file. SerializationError naming the
/// directory or the index for a directory without either file (a pickle-only one says so), an
/// index without a `weight_map` object or a shard name that is not a plain file name.
HfCheckpointFiles resolve_hf_checkpoint(const std::filesystem::path& path);

/// A checkpoint with its shards read (memory-mapped, see load_safetensors).
struct HfCheckpoint {
  HfCheckpointFiles files;
  std::vector<SafetensorsFile> shards;  ///< shards[i] read from files.shards[i]
};

/// resolve_hf_checkpoint, then every shard read; for a sharded checkpoint every tensor must be
/// in the shard the weight_map names and every listed tensor in its shard (SerializationError
/// naming the index otherwise).
HfCheckpoint open_hf_checkpoint(const std::filesystem::path& path);

struct CheckpointReport {
  std::vector<std::string> missing;     ///< model tensors the checkpoint lacks
  std::vector<std::string> unexpected;  ///< checkpoint tensors the model lacks
};

/// Maps a checkpoint key to the model's key ("" = skip the tensor), for files whose names differ
/// from the module tree (models/causal_lm.hpp: a missing base-model prefix, dropped buffers).
using CheckpointRename = std::function<std::string(const std::string&)>;

/// Copy the checkpoint's tensors into `model`'s parameters and buffers (values are cast to the
/// model's dtype and device). strict: missing or unexpected keys are a SerializationError listing
/// them; otherwise they are returned. Shape mismatches are always errors, and so is a
/// floating-point tensor for an integer/bool one. `rename` (optional) is applied to every
/// checkpoint key first; two keys landing on one model key are an error.
///
/// Streaming: only the safetensors headers are read first (each length checked against its
/// file's size before it is allocated, every entry validated, index and shards agreeing), and
/// every check above runs before any tensor data is read, so a bad or mismatched checkpoint
/// leaves the model unchanged and allocates nothing. Then each tensor is read with pread straight
/// into its parameter when that is a contiguous CPU tensor of the file's dtype (no extra memory),
/// else through a scratch buffer of at most 32 MiB (a whole tensor for non-contiguous
/// destinations) and cast/copied (other dtypes, CUDA). Shards are closed as they are consumed.
/// A read error then (EIO, a file truncated meanwhile) is a SerializationError naming the file
/// and the tensor, and so is a BOOL byte other than 0/1 (checked as it is read); the tensors
/// loaded before it keep their new values.
/// `on_loaded` (optional) is called with each model key right after its tensor is filled (the
/// 4-bit loader quantises a Linear weight there, so only one dense weight exists at a time).
CheckpointReport load_checkpoint(torch::nn::Module& model, const std::filesystem::path& path, bool strict = true,
                                 const CheckpointRename& rename = {},
                                 const std::function<void(const std::string&)>& on_loaded = {});

}  // namespace peft
