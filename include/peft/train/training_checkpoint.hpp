#pragma once
/// Training checkpoints (docs/checkpoints.md): `<checkpoints>/step-N/` holding
///   adapter_config.json + adapter_model.safetensors   the adapter in PEFT format (save_pretrained)
///   optimizer.safetensors                             AdamW's moments, steps, options (optimizer_state.hpp)
///   trainer_state.json                                TrainerState (trainer_state.hpp), with the run fingerprint
///   checksums.json                                    size + CRC-32 of the four files (checkpoint_manifest.hpp)
///
/// A checkpoint is written into `<checkpoints>/.tmp-step-N-<pid>/`, every file fsynced, then the
/// directory is renamed to `step-N` and the parent fsynced: a kill at any moment leaves either no
/// `step-N` or a complete one (stray `.tmp-*` directories are removed by the next save). Only the
/// newest `keep` checkpoints of the same run (same fingerprint) are kept; other directories are
/// never pruned. Nothing read back is trusted: checksums first, then every field and tensor is
/// checked against the live model and optimizer, and only then is anything changed.
/// Checkpoints of peft-cpp before this format (optimizer.pt, a pickle) are refused.
///
/// Bodies: src/train/training_checkpoint.cpp.

#include <torch/optim/adamw.h>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "peft/tuner/lora_model.hpp"
#include "peft/train/run_fingerprint.hpp"
#include "peft/train/trainer_state.hpp"

namespace peft::train {

namespace detail {
/// N of a `step-N` directory name, or -1.
std::int64_t checkpoint_step(const std::filesystem::path& p);
}  // namespace detail

/// The state of the default generator of `device` (CPU or a CUDA device) as raw bytes.
std::string rng_state(torch::Device device);
/// SerializationError (nothing changed) when `bytes` is not a state of that generator.
void set_rng_state(torch::Device device, const std::string& bytes);

/// Complete checkpoints under `dir` (step-N directories with trainer_state.json), oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);

/// Write `<dir>/step-<state.step>` crash-safely (see top), then prune this run's checkpoints
/// (those whose fingerprint is state.run's) older than the new one down to the newest `keep`.
/// Returns the checkpoint's path.
std::filesystem::path save_training_checkpoint(const std::filesystem::path& dir, const LoraModel& pm,
                                               const torch::optim::AdamW& optimizer, const TrainerState& state,
                                               std::int64_t keep = 2);

/// Verify checkpoint `dir`'s checksums and parse its trainer_state.json (no model needed):
/// SerializationError naming the file for a changed, truncated or missing file or a bad field;
/// a pre-checksum checkpoint (optimizer.pt) is refused with a hint. `all_files` false checks
/// only the manifest and trainer_state.json (for early checks before load_training_checkpoint,
/// which checks every file where it reads them: a resume reads each large file once for its CRC).
TrainerState read_checkpoint_state(const std::filesystem::path& dir, bool all_files = true);

/// TrainConfigError (`<where>: resume = <dir>: ...`, naming the keys that differ) when the
/// checkpoint's run fingerprint and `now` both exist and differ.
void check_same_run(const std::filesystem::path& dir, const RunFingerprint& checkpoint, const RunFingerprint& now,
                    const std::string& where = "");

/// Restore the adapter weights (into adapter "default" of `pm`, in place) and the optimizer from
/// checkpoint `dir`, and return its TrainerState (RNG and sampler are the caller's to restore).
/// read_checkpoint_state, check_same_run against `run` (when given), then every adapter tensor
/// (name, dtype, shape), the RNG state sizes and the optimizer file (read_adamw_state) are checked
/// before any value is copied: on any error nothing in `pm` or `optimizer` has changed.
TrainerState load_training_checkpoint(const std::filesystem::path& dir, LoraModel& pm,
                                      torch::optim::AdamW& optimizer, const RunFingerprint& run = {});

}  // namespace peft::train
