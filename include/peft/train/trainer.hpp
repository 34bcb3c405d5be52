#pragma once
/// The training loop of peft-finetune, independent of the model and data types: the caller
/// supplies batches and the loss through TrainHooks.
///
///   per optimizer step: lr = lr_at(step) -> grad_accum x (batch, loss / grad_accum, backward)
///                       -> clip_grad_norm_(max_grad_norm) -> AdamW step
///   every log_every steps: a metrics.jsonl record (mean loss since the last record, lr, tokens/s)
///   every eval_every steps and at the end: held-out loss (model in eval mode, no grad)
///   every save_every steps: a checkpoint (training_checkpoint.hpp) when a LoraModel is given
///   stop_requested() (signals.hpp) at a step boundary: a checkpoint, then return interrupted
///
/// Data parallel (LoopOptions::process_group, data_parallel.hpp): rank 0's adapter is broadcast
/// first; after each step's last micro-batch one bucketed allreduce averages the gradients and
/// sums the loss, the token count and the ranks' stop requests (so every rank stops at the same
/// step); clipping follows. Each rank feeds its own shard (next_batch) and evaluates its share
/// (eval_loss reduces). Checkpoints hold every rank's RNG state and are written by rank 0
/// between barriers; resuming needs the same world size.
/// Checkpoints (training_checkpoint.hpp) are verified before use: checksums, every field and
/// tensor against the live adapter and AdamW, and the run fingerprint (LoopOptions::run).
///
/// Resuming from a checkpoint restores the adapter, AdamW, step, sampler, RNG and metrics so the
/// run continues exactly as if it had not stopped (bit for bit on CPU: same ops, same order).
/// Body: src/train/trainer.cpp.

#include <torch/nn/module.h>

#include <functional>
#include <optional>
#include <ostream>
#include <vector>

#include "peft/tuner/lora_model.hpp"
#include "peft/train/distributed.hpp"
#include "peft/train/metrics.hpp"
#include "peft/train/signals.hpp"
#include "peft/train/train_config.hpp"
#include "peft/train/training_checkpoint.hpp"

namespace peft::train {

struct TrainHooks {
  std::function<torch::Tensor()> next_batch;                     ///< [B, T+1] int64 token blocks
  std::function<std::uint64_t()> sampler_state;                  ///< for checkpoints
  std::function<void(std::uint64_t)> restore_sampler;            ///< on resume
  std::function<torch::Tensor(const torch::Tensor&)> loss;       ///< batch -> scalar loss (grad enabled)
  std::function<double()> eval_loss;                             ///< held-out loss; optional
  /// Tokens a batch trains on, for tokens/s and tokens_seen; unset: B x (T - 1) of a [B, T+1]
  /// block batch (a padded batch passes its real-token count).
  std::function<std::int64_t(const torch::Tensor&)> batch_tokens;
};

struct LoopOptions {
  TrainingConfig training;
  torch::Device device = torch::kCPU;
  std::string label = "train";                     ///< progress-line prefix
  std::string phase;                               ///< MetricsRecord::phase
  std::filesystem::path metrics_path;              ///< "" = no metrics.jsonl
  std::filesystem::path svg_path;                  ///< "" = no loss curve
  std::string svg_title = "LoRA fine-tune";
  std::filesystem::path checkpoints_dir;           ///< "" = no checkpoints
  LoraModel* peft_model = nullptr;                 ///< whose adapter "default" checkpoints hold
  std::optional<std::filesystem::path> resume_from;
  /// The run's fingerprint (run_fingerprint.hpp): recorded in every checkpoint; a resume from a
  /// checkpoint of another run is refused (TrainConfigError), and pruning only removes this
  /// run's checkpoints. Empty: not recorded, not checked.
  RunFingerprint run;
  std::ostream* progress = nullptr;                ///< nullptr = silent
  bool tty = false;
  /// Data parallel over these ranks (world size > 1); nullptr = this process alone. Only rank 0
  /// should be given metrics_path / svg_path / progress.
  std::shared_ptr<ProcessGroup> process_group;
};

struct LoopResult {
  std::int64_t step = 0;          ///< optimizer steps done in total
  bool interrupted = false;       ///< stopped by stop_requested()
  std::optional<std::filesystem::path> last_checkpoint;
  std::vector<MetricsRecord> metrics;
  std::optional<double> final_eval_loss;
  std::int64_t tokens_seen = 0;
  double elapsed_s = 0.0;
};

/// Train `params` (the trainable parameters only) of `model` with AdamW.
LoopResult run_training(torch::nn::Module& model, const std::vector<torch::Tensor>& params, const TrainHooks& hooks,
                        const LoopOptions& o);

}  // namespace peft::train
