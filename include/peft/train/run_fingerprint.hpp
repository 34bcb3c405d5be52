#pragma once
/// What identifies a training run: the settings that change its trajectory, as `key -> value`
/// text, stored in every checkpoint (trainer_state.json "run") so that a resume under another
/// config is refused instead of continuing the old run silently (docs/checkpoints.md).
///
/// Included (run_fingerprint below): base_model; pretrain.* (file by content, steps, batch_size,
/// lr, warmup_steps, save_dir); data.file / data.heldout_file / data.chat_template by content
/// (size and CRC-32, not path or mtime: a moved copy of the same data still resumes), data's
/// jsonl_field, heldout_fraction, format, completion_only_loss, assistant_only_loss, packing,
/// max_length; training's batch_size, seq_len, lr, warmup_steps, schedule, min_lr_ratio,
/// weight_decay, grad_accum, max_grad_norm, seed, dtype; every LoraConfig field as lora.<key>
/// (but base_model_name_or_path). Left out, so they may change on resume: training.steps and
/// num_train_epochs (extending a run; the LR schedule then follows the new total), the eval /
/// save / log cadence, keep_checkpoints, device, threads, gradient_checkpointing (same maths),
/// ddp_backend / ddp_timeout (the world size is checked on its own), output_dir.
/// A base model directory is identified by its path, not its (possibly huge) weights.
///
/// Torch-free. Bodies: src/train/run_fingerprint.cpp.

#include <string>
#include <utility>
#include <vector>

#include "peft/format/json_value.hpp"
#include "peft/train/train_config.hpp"

namespace peft::train {

struct RunFingerprint {
  std::vector<std::pair<std::string, std::string>> fields;  ///< sorted by key; empty = unknown

  bool empty() const { return fields.empty(); }
  /// CRC-32 (8 hex digits) of the fields' canonical text; what trainer_state.json records
  /// next to them so that a tampered field is noticed.
  std::string hash() const;
  /// {"fingerprint": hash(), "config": {key: value, ...}}.
  JsonValue to_json() const;
  /// The inverse; SerializationError naming `where` for a malformed object, unsorted or
  /// duplicate keys, or a fingerprint that does not match the fields.
  static RunFingerprint from_json(const JsonValue& j, const std::string& where);
  /// "key: A (checkpoint) vs B (now); ..." for the first `max` keys that differ between `this`
  /// (the checkpoint's) and `now`, keys missing on one side included; "" when equal.
  std::string differences(const RunFingerprint& now, std::size_t max = 4) const;
};

/// The fingerprint of `config` (see top). Reads data files to checksum them; an unreadable one
/// is recorded as "unreadable" (the data phase reports it properly).
RunFingerprint run_fingerprint(const TrainConfig& config);

}  // namespace peft::train
