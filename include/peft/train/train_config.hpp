#pragma once
/// The YAML config of `peft-finetune` (README "Fine-tuning from the command line"):
///
///   base_model: builtin:tiny-gpt2        # or builtin:tiny-llama, or a Hugging Face model directory
///   data: {file: corpus.txt, jsonl_field: text, heldout_fraction: 0.1}
///   training: {steps: 200, batch_size: 8, seq_len: 64, lr: 1e-3, ...}
///   output_dir: runs/my-run
///   resume: false                        # true = newest complete checkpoint in output_dir
///   pretrain: {...}                      # embedded default run only: full pre-training first
///   lora: {r: 8, lora_alpha: 16, target_modules: all-linear}   # peft::load_lora_yaml's format
///
/// Every key is checked: unknown keys (with a did-you-mean), wrong types and bad values raise
/// ConfigError whose message starts with `<file>:<line>:<column>:` and names the key, the value
/// and a hint. Relative input paths (data.file, pretrain.file, base_model directories) are
/// resolved against the directory of the config file; output_dir and a resume path against the
/// working directory.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/quant/bnb_config.hpp"

namespace peft::train {

/// A bad value in a training config: `<file>:<line>:<col>: <key> = <value>: <problem> (hint: ...)`.
/// field() is the dotted key (`training.lr`), value() the offending text.
class TrainConfigError : public ConfigError {
 public:
  TrainConfigError(const std::string& where, const std::string& key, const std::string& value,
                   const std::string& problem, const std::string& hint, Kind kind = Kind::InvalidValue)
      : ConfigError(key, value, problem, hint, kind), message_(compose(where, key, value, problem, hint)) {}
  /// The message above (ConfigError's own would start with "LoraConfig.").
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  static std::string compose(const std::string& where, const std::string& key, const std::string& value,
                             const std::string& problem, const std::string& hint) {
    std::string m = where.empty() ? key : where + ": " + key;
    if (!value.empty()) m += " = " + value;
    m += ": " + problem;
    if (!hint.empty()) m += " (hint: " + hint + ")";
    return m;
  }
  std::string message_;
};

struct DataConfig {
  std::filesystem::path file;            ///< .txt or .jsonl; empty = the shipped corpus part B
  std::string jsonl_field = "text";      ///< field holding the text in .jsonl records
  double heldout_fraction = 0.1;         ///< tail of the token blocks (or records) kept for evaluation, in (0, 1)
  /// .jsonl record format (text/records.hpp): auto (from the first record) | text |
  /// prompt_completion | messages. text is the raw-text path (documents -> fixed blocks).
  std::string format = "auto";
  std::filesystem::path heldout_file;    ///< records for evaluation instead of the heldout_fraction tail
  std::filesystem::path chat_template;   ///< Jinja file for messages; empty = the model's own
  bool completion_only_loss = true;      ///< prompt_completion: loss on the completion only (TRL's default)
  bool assistant_only_loss = true;       ///< messages: loss on the assistant turns only (TRL: false)
  bool packing = false;                  ///< records concatenated into blocks of max_length instead of padding
  std::int64_t max_length = 0;           ///< records truncated to this many tokens; 0 = training.seq_len
};

/// Learning-rate schedule after the linear warm-up (lr_schedule.hpp).
enum class DecayKind { Cosine, Linear, Constant };

struct TrainingConfig {
  std::int64_t steps = 200;          ///< optimizer steps
  /// > 0: steps = ceil(epochs x train rows / (batch_size x grad_accum x ranks)) instead of `steps`.
  double num_train_epochs = 0.0;
  std::int64_t batch_size = 8;       ///< sequences per micro-batch
  std::int64_t seq_len = 64;         ///< tokens per sequence (blocks hold seq_len + 1)
  double lr = 1e-3;                  ///< peak learning rate
  std::int64_t warmup_steps = 10;    ///< linear warm-up from 0 to lr
  DecayKind schedule = DecayKind::Cosine;
  double min_lr_ratio = 0.0;         ///< decay ends at lr * min_lr_ratio
  double weight_decay = 0.0;         ///< AdamW decoupled weight decay
  std::int64_t grad_accum = 1;       ///< micro-batches per optimizer step
  double max_grad_norm = 1.0;        ///< clip_grad_norm_ threshold; 0 = no clipping
  std::uint64_t seed = 0;            ///< model init, LoRA init, dropout and sampling
  std::string device = "cpu";        ///< cpu | cuda | cuda:N
  std::string dtype = "float32";     ///< float32 | bfloat16 (base weights; adapters stay fp32)
  std::int64_t threads = 0;          ///< CPU threads for LibTorch; 0 = one per core; at most max_threads()
  std::int64_t eval_every = 50;      ///< held-out evaluation period in steps; 0 = only at the end
  std::int64_t eval_batches = 8;     ///< held-out batches (of batch_size x ranks rows) per evaluation; 0 = all
  std::int64_t save_every = 100;     ///< checkpoint period in steps; 0 = no periodic checkpoints
  std::int64_t keep_checkpoints = 2; ///< newest checkpoints kept (>= 1)
  std::int64_t log_every = 10;       ///< metrics.jsonl / non-tty progress period in steps
  /// Recompute each decoder block's activations in backward instead of keeping them
  /// (models/checkpointing.hpp): same loss and gradients, less memory, ~1/3 more compute.
  bool gradient_checkpointing = false;
  /// Data parallelism (several processes: torchrun or peft-finetune --nproc-per-node; see
  /// distributed.hpp). batch_size is per rank, as HF's per_device_train_batch_size.
  std::string ddp_backend = "auto";  ///< auto (nccl on CUDA where built, else gloo) | gloo | nccl
  double ddp_timeout = 1800.0;       ///< seconds a rank waits for the others (HF's ddp_timeout)
};

/// `pretrain:` (the embedded default run): fully train the builtin base on `file` first, freeze
/// it and save it to `<output_dir>/<save_dir>` in Hugging Face format.
struct PretrainConfig {
  std::filesystem::path file;        ///< empty = the shipped corpus part A
  std::int64_t steps = 300;
  std::int64_t batch_size = 16;
  double lr = 3e-3;
  std::int64_t warmup_steps = 20;
  std::string save_dir = "base";
};

struct TrainConfig {
  std::string base_model = "builtin:tiny-gpt2";
  DataConfig data;
  TrainingConfig training;
  std::filesystem::path output_dir = "peft-finetune-out";
  /// false: start fresh; true: newest complete checkpoint under output_dir/checkpoints (fresh
  /// start when there is none); a path: that checkpoint directory.
  bool resume = false;
  std::filesystem::path resume_from;
  std::optional<PretrainConfig> pretrain;
  LoraConfig lora;
  /// `quantization:` (QLoRA): BitsAndBytesConfig's keys; the base's Linear layers (not lm_head)
  /// are quantised to 4 bits after loading and the model prepared as PEFT's
  /// prepare_model_for_kbit_training does (docs/qlora.md). Unset: a dense base.
  std::optional<BitsAndBytesConfig> quantization;
  /// Directory that relative paths were resolved against (the config file's directory).
  std::filesystem::path base_dir;
};

/// Parse a training config. `source_name` prefixes error messages and its parent directory
/// resolves relative paths (pass `base_dir` to override, e.g. for an embedded default).
TrainConfig train_config_from_yaml(const std::string& text, const std::string& source_name = "<yaml>",
                                   std::optional<std::filesystem::path> base_dir = std::nullopt);

/// Read and parse a YAML file (SerializationError when it cannot be read).
TrainConfig load_train_config(const std::filesystem::path& path);

/// The largest training.threads accepted: 4 per CPU core, at most 1024 (more hang the process).
std::int64_t max_threads();

/// The keys train_config_from_yaml accepts at `section` ("" = top level), for docs and hints.
const std::vector<std::string>& train_config_keys(const std::string& section);

/// "training.lr" style did-you-mean: the closest of `candidates` to `key` (edit distance <= 1/3 of
/// the length, at least 2), or "".
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace peft::train
