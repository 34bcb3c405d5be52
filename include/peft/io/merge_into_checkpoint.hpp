#pragma once
/// Merge PEFT LoRA adapters into a plain Hugging Face checkpoint on the state dict alone, without
/// a model class (what `peft-merge` does; llama.cpp's export-lora, for safetensors):
///
///   W' = W + w·s·transpose(B A, fan_in_fan_out)          s = alpha/r (alpha/sqrt(r) with rslora),
///   DoRA: W' = m / ‖W + Δ‖_row ⊙ (W + Δ)                   r, alpha from rank/alpha_pattern
///   lora_bias: b' = b + w·s·lora_B.bias;  bias="all" biases and modules_to_save tensors replace the base's
///
/// computed in float32 per tensor and cast to the output dtype (default: each tensor keeps the
/// base's dtype). Several adapters are merged in the order given (as PEFT's merge_and_unload
/// merges several active adapters), each delta times its weight w (default 1).
///
/// Decisions:
///  * Everything is validated before any output exists (every module found in the base, shapes
///    fit, ranks agree with r/rank_pattern, dtypes floating, values finite, DoRA/lora_bias keys
///    agree with the config); the output is built in a temporary sibling directory and renamed
///    into place, so on any error OUT is left as it was. The merged values are checked finite too.
///  * A sharded base (model.safetensors.index.json) gives a sharded output with the same shard
///    names, key order and weight_map (memory and file sizes stay bounded like the input's); a
///    single file gives OUT/model.safetensors. Tensors are streamed one at a time.
///  * Layout per module (HF Conv1D stores [in, out]): a non-square base weight's shape decides,
///    whatever adapter_config.json says (PEFT switches fan_in_fan_out on per Conv1D layer and
///    saves the value the last created layer left, e.g. false for gpt2 all-linear with lm_head);
///    a square one takes the layout found for non-square modules with the same leaf name, else
///    under the nearest enclosing module that has any (e.g. the GPT-2 block), else the config's
///    fan_in_fan_out. `fan_in_fan_out` in the
///    options forces one layout for all modules (then a non-square misfit is an error).
///  * Adapters whose init rewrote the base (pissa, pissa_niter_N, olora, corda) and LoftQ are
///    refused: their factors only make sense against the residual base. Convert them first
///    (PEFT: save_pretrained(path_initial_model_for_weight_conversion=...); peft-cpp:
///    SaveOptions::path_initial_model_for_weight_conversion). EVA adapters merge normally.
///  * A DoRA adapter with a weight other than 1 is refused (the norm makes it non-linear). The
///    weight scales lora_bias too, but not replaced tensors (bias="all", modules_to_save), which
///    are taken as they are; when two adapters replace the same tensor, the later one wins.
///  * Side files of a base directory (config.json, generation_config.json, tokenizer files) are
///    copied; with an explicit dtype, config.json's `torch_dtype`/`dtype` is updated.
///  * A bitsandbytes 4-bit base (`*-bnb-4bit`: U8 codes + `.absmax`/`.quant_state.*`, every state
///    validated first) is merged on its dequantised weights (float32: code · absmax, then the
///    steps above). `quantized_base` decides what is written (docs/qlora.md):
///      dequantize (default): every 4-bit weight, merged or not, becomes a dense tensor of its
///        state's dtype (or `dtype`), its state entries are dropped and config.json loses
///        `quantization_config`: exactly what was trained, at 2-4x the size;
///      requantize: merged weights are quantised again like their state (type, block size,
///        double quantisation) in their state's dtype, as PEFT's Linear4bit.merge does, with
///        PEFT's warning (lossy); the other 4-bit entries are copied, and `dtype` rewrites only
///        the dtype their states dequantise to.

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace peft {

/// One adapter directory (adapter_config.json + adapter_model.safetensors) and its weight.
struct MergeAdapter {
  std::filesystem::path dir;
  double weight = 1.0;
};

/// Progress of the write phase: called after every tensor.
struct MergeProgress {
  std::size_t tensors_done = 0, tensors_total = 0;
  /// Output bytes. With requantised 4-bit weights, bytes_total counts their JSON states at the
  /// base's length (a few bytes may differ); the last call's total is exact.
  std::uint64_t bytes_done = 0, bytes_total = 0;
  std::string tensor;                             ///< the tensor just written
};

/// What a merge writes for a bitsandbytes 4-bit base (see the decisions above).
enum class QuantizedBaseMerge { dequantize, requantize };

struct MergeCheckpointOptions {
  /// Output dtype of every floating tensor (kFloat32, kBFloat16, kHalf); nullopt keeps each
  /// base tensor's dtype. Integer tensors are always kept as they are.
  std::optional<torch::ScalarType> dtype;
  /// Replace an existing non-empty output directory (otherwise refused).
  bool overwrite = false;
  /// Force the layout of every adapted weight (true: [in, out] as HF Conv1D); nullopt = per
  /// module from the shapes (see the decisions above).
  std::optional<bool> fan_in_fan_out;
  /// A 4-bit base: dense output (exact) or requantised merged weights (PEFT's merge, lossy).
  QuantizedBaseMerge quantized_base = QuantizedBaseMerge::dequantize;
  std::function<void(const MergeProgress&)> progress;
};

/// What was merged into one base tensor.
struct MergedTensorInfo {
  std::string key;            ///< base tensor key, e.g. model.layers.0.self_attn.q_proj.weight
  std::string what;           ///< "lora", "dora", "lora_bias", "replaced", "tokens" (rows written)
                              ///< (a 4-bit weight's key names its codes)
  std::size_t adapter = 0;    ///< index into the adapters argument
  std::int64_t r = 0;         ///< rank (lora / dora / lora_bias)
  double scaling = 0.0;       ///< s, without the adapter weight
  bool fan_in_fan_out = false;
};

struct MergeReport {
  std::vector<MergedTensorInfo> merged;            ///< in merge order
  std::vector<std::filesystem::path> files;        ///< files written under OUT (relative)
  std::size_t tensors = 0;                         ///< tensors written
  std::uint64_t bytes = 0;                         ///< bytes of the safetensors written
  std::vector<std::string> notes;                  ///< decisions worth telling the user
};

/// Merge `adapters` into the checkpoint `base` (a HF directory with model.safetensors or a
/// sharded model.safetensors.index.json, or one .safetensors file) and write `out`. Throws
/// ConfigError / SerializationError / UnsupportedModuleError / Error naming the file, key and a
/// hint; on error nothing under `out` changes.
MergeReport merge_checkpoint(const std::filesystem::path& base, const std::vector<MergeAdapter>& adapters,
                             const std::filesystem::path& out, const MergeCheckpointOptions& options = {});

/// The same merge on tensors in memory (no files): `base` is a state dict, the result holds the
/// same keys in the same order. Same validation and errors as merge_checkpoint.
std::vector<std::pair<std::string, torch::Tensor>> merge_state_dict(
    const std::vector<std::pair<std::string, torch::Tensor>>& base, const std::vector<MergeAdapter>& adapters,
    const MergeCheckpointOptions& options = {}, MergeReport* report = nullptr);

/// "float32" | "bfloat16" | "float16" (also "fp32", "bf16", "fp16") -> dtype; ConfigError otherwise.
torch::ScalarType parse_merge_dtype(const std::string& name);

/// "dequantize" | "requantize" -> QuantizedBaseMerge; ConfigError otherwise.
QuantizedBaseMerge parse_quantized_base_merge(const std::string& name);

}  // namespace peft
