#pragma once
/// Training checkpoints: `<checkpoints>/step-N/` holding
///   adapter_config.json + adapter_model.safetensors   the adapter in PEFT format (save_pretrained)
///   optimizer.pt                                      torch::save of the optimizer (AdamW moments, step)
///   trainer_state.json                                TrainerState below
///
/// A checkpoint is written into `<checkpoints>/.tmp-step-N-<pid>/`, every file fsynced, then the
/// directory is renamed to `step-N` and the parent fsynced: a kill at any moment leaves either no
/// `step-N` or a complete one (stray `.tmp-*` directories are removed by the next save). Only the
/// newest `keep` checkpoints are kept.
///
/// Bodies: src/train/training_checkpoint.cpp.

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/train/metrics.hpp"

namespace peft::train {

/// Everything besides the weights that a resumed run needs to continue exactly.
struct TrainerState {
  std::int64_t step = 0;             ///< optimizer steps done
  std::int64_t tokens_seen = 0;      ///< training tokens consumed (all micro-batches)
  double elapsed_s = 0.0;            ///< training wall time so far (across resumes)
  std::uint64_t sampler_state = 0;   ///< BatchSampler::state()
  std::string cpu_rng_state;         ///< raw bytes of the default CPU generator's state
  std::string cuda_rng_state;        ///< same for the CUDA device used ("" when CPU only)
  std::int64_t cuda_device = -1;
  std::vector<MetricsRecord> metrics;  ///< every record written so far
  /// Data-parallel runs: the number of ranks, and every rank's generator states by rank (the
  /// fields above are rank 0's), so that each rank's dropout continues where it stopped.
  std::int64_t world_size = 1;
  std::vector<std::string> rank_cpu_rng_states;   ///< empty when world_size is 1
  std::vector<std::string> rank_cuda_rng_states;  ///< empty when CPU only or world_size is 1

  JsonValue to_json() const;
  static TrainerState from_json(const JsonValue& j, const std::string& where);
};

namespace detail {
/// N of a `step-N` directory name, or -1.
std::int64_t checkpoint_step(const std::filesystem::path& p);
}  // namespace detail

/// The state of the default generator of `device` (CPU or a CUDA device) as raw bytes.
std::string rng_state(torch::Device device);
void set_rng_state(torch::Device device, const std::string& bytes);

/// Complete checkpoints under `dir` (step-N directories with trainer_state.json), oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);

/// Write `<dir>/step-<state.step>` crash-safely (see top), then keep only the newest `keep`.
/// Returns the checkpoint's path.
std::filesystem::path save_training_checkpoint(const std::filesystem::path& dir, const LoraModel& pm,
                                               torch::optim::Optimizer& optimizer, const TrainerState& state,
                                               std::int64_t keep = 2);

/// Restore the adapter weights (into adapter "default" of `pm`, in place) and the optimizer from
/// checkpoint `dir`, and return its TrainerState (RNG and sampler are the caller's to restore).
/// Every key and shape is checked before any value is copied.
TrainerState load_training_checkpoint(const std::filesystem::path& dir, LoraModel& pm,
                                      torch::optim::Optimizer& optimizer);

}  // namespace peft::train
