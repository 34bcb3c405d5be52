#pragma once
/// The phases of a fine-tuning run, as peft-finetune strings them together; a trainer of your own
/// calls the ones it needs and puts its own between them:
///
///   TrainingRun run = prepare_run(load_train_config("train.yaml"), "train.yaml", {}, &std::cout);
///   PretrainResult pre = pretrain_base(run);              // only with a `pretrain:` section
///   BaseModel base = build_model(run, pre.base_source);   // base weights + their tokenizer
///   TokenData data = prepare_data(run, base);             // data.file -> train / held-out blocks
///   double before = evaluate(run, *base.model, data);     // held-out loss
///   LoraModel adapter = attach_adapter(run, base);        // config.lora as adapter "default"
///   LoopResult r = finetune(run, base, adapter, data, before);   // run_training (trainer.hpp)
///   fs::path dir = export_adapter(run, adapter);          // save_pretrained -> output_dir/adapter
///   MergeCheck m = verify_merge(run, base.source, dir, data, *r.final_eval_loss);
///   print_summary(run, {pre, adapter.get_nb_trainable_parameters(), before, r, dir, m});
///
/// Each phase says what it does in lines on *run.out and progress on *run.progress (the library
/// never writes to stdout itself; peft-finetune passes std::cout and std::cerr). Phases that seed
/// (pretrain_base, build_model, verify_merge) call torch::manual_seed(training.seed) first, so a
/// run is reproducible phase by phase. Errors: TrainConfigError naming the config and the key for
/// values the run cannot use, peft::Error and LibTorch's errors otherwise.

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "peft/models/causal_lm.hpp"
#include "peft/text/dataset.hpp"
#include "peft/text/tokenizer.hpp"
#include "peft/train/data_parallel.hpp"
#include "peft/train/distributed.hpp"
#include "peft/train/instructions.hpp"
#include "peft/train/run_fingerprint.hpp"
#include "peft/train/train_config.hpp"
#include "peft/train/trainer.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft::train {

/// Command-line style overrides of a config (peft-finetune's --output-dir, --steps, --resume).
struct RunOverrides {
  std::optional<std::filesystem::path> output_dir;
  std::optional<std::int64_t> steps;
  bool resume = false;  ///< true = `resume: true`; false leaves the config's setting
  /// This process is one rank of a data-parallel run (DistributedEnv::from_environment()); with
  /// world_size > 1, prepare_run joins the process group (training.ddp_backend / ddp_timeout).
  std::optional<DistributedEnv> distributed;
};

/// What every phase reads: the config and what prepare_run derived from it.
struct TrainingRun {
  TrainConfig config;                                  ///< with the overrides applied
  std::string config_name;                             ///< prefixes TrainConfigError messages
  torch::Device device = torch::kCPU;                  ///< training.device
  torch::Dtype dtype = torch::kFloat32;                ///< training.dtype (the base weights)
  std::filesystem::path output_dir;                    ///< = config.output_dir, created
  std::optional<std::filesystem::path> resume_from;    ///< the checkpoint to continue from
  RunFingerprint fingerprint;                          ///< run_fingerprint(config), in every checkpoint
  std::ostream* out = nullptr;                         ///< phase lines and the summary; nullptr = none
  std::ostream* progress = nullptr;                    ///< progress lines (progress.hpp); nullptr = none
  bool tty = false;                                    ///< progress redrawn in place
  std::function<void()> before_batch;                  ///< called before each fine-tuning micro-batch
  /// Data parallel: the group of ranks (nullptr = one process). Rank 0 alone pre-trains, checks
  /// answers, exports and verifies the merge; every rank trains its shard and evaluates its share.
  std::shared_ptr<ProcessGroup> process_group;
  int rank() const { return process_group ? process_group->rank() : 0; }
  int world_size() const { return process_group ? process_group->world_size() : 1; }
  Shard shard() const { return {rank(), world_size()}; }
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();  ///< summary's "in all"
};

/// Apply `overrides`, check training.device (CUDA present, index in range), create output_dir,
/// set LibTorch's CPU threads (training.threads, 0 = one per core, shared out among the local
/// ranks) and find the resume point: resume_from, else the newest checkpoint in
/// output_dir/checkpoints (a line on `out` when there is none: the run starts fresh), whose
/// checksums and run fingerprint are checked (SerializationError; TrainConfigError `resume`
/// naming the keys that differ). A fresh run (no resume) into an output_dir whose checkpoints/
/// holds a checkpoint is refused (TrainConfigError `output_dir`: resume, another dir, or delete). With
/// overrides.distributed (world size > 1): `device: cuda` becomes cuda:LOCAL_RANK, the process
/// group is created, and every rank must see the same resume point (else peft::Error: an
/// output_dir that is not shared between machines).
TrainingRun prepare_run(TrainConfig config, std::string config_name, const RunOverrides& overrides = {},
                        std::ostream* out = nullptr, std::ostream* progress = nullptr, bool tty = false);

/// "config NAME, output DIR, device D, dtype T, N threads".
std::string describe_run(const TrainingRun& run);

/// What pretrain_base leaves for the next phases.
struct PretrainResult {
  std::string base_source;                 ///< what build_model loads: the saved base, or config.base_model
  std::optional<double> seconds;           ///< pre-training time, when it ran in this process
  bool interrupted = false;                ///< stop_requested() during pre-training; nothing saved
};

/// With a `pretrain:` section: train every parameter of the builtin config.base_model from its
/// seeded random init on pretrain.file (byte tokenizer, 5% held out, fp32 whatever training.dtype
/// says), freeze it and save it to output_dir/pretrain.save_dir in Hugging Face format, writing
/// pretrain_metrics.jsonl and pretrain_loss.svg; a resumed run reuses a base saved there. Without
/// one: {config.base_model} and nothing else.
PretrainResult pretrain_base(const TrainingRun& run);

/// The base model on run.device in run.dtype and the tokenizer that goes with it.
struct BaseModel {
  models::CausalLM model;
  std::string source;                            ///< what was loaded: builtin name or directory
  std::shared_ptr<const text::Tokenizer> tokenizer;  ///< byte tokenizer for builtin models
};

/// Load `source` (load_causal_lm) after torch::manual_seed(training.seed), with the tokenizer of
/// config.base_model (text::load_tokenizer; a ByteTokenizer for `builtin:` names). Throws
/// TrainConfigError when training.seq_len exceeds the model's positions.
BaseModel build_model(const TrainingRun& run, const std::string& source);

/// A tokenized text file cut into blocks of seq_len + 1 tokens, or instruction records.
struct TokenData {
  text::TokenBlocks blocks;    ///< raw text (empty when `instructions` is set)
  std::int64_t tokens = 0;     ///< tokens in the file (documents joined with eos)
  std::size_t documents = 0;   ///< documents, or records
  /// prompt_completion / messages records (instructions.hpp); then evaluate(), finetune() and
  /// verify_merge() work on padded batches of examples instead of blocks.
  std::optional<InstructionSet> instructions;
  /// The fine-tune's optimizer steps: training.steps, or from training.num_train_epochs.
  std::int64_t steps = 0;
};

/// peft::Error when `tokenizer` dropped characters since its dropped_characters() was `before`
/// (a vocabulary without tokens for some of the data's characters, no unk, no byte fallback):
/// training would silently learn from text with pieces missing.
void check_nothing_dropped(const text::Tokenizer& tokenizer, std::uint64_t before, const std::filesystem::path& data);

/// load_documents -> encode_documents -> make_blocks; peft::Error when the tokenizer has more ids
/// than the model has embeddings (`vocab`) or dropped characters of the data.
TokenData load_token_data(const std::filesystem::path& file, const std::string& jsonl_field,
                          const text::Tokenizer& tokenizer, std::int64_t seq_len, double heldout_fraction,
                          std::int64_t vocab);

/// config.data with the base's tokenizer: text -> blocks of training.seq_len, prompt_completion /
/// messages .jsonl records -> an InstructionSet (data.max_length, default training.seq_len; messages
/// rendered with data.chat_template, else the model directory's template); a "data:" line on
/// run.out. Throws TrainConfigError naming data.format / data.max_length / data.chat_template
/// when they cannot be used with this file or model.
TokenData prepare_data(const TrainingRun& run, const BaseModel& base);

/// prepare_data's path for prompt_completion / messages `records` of data.file.
TokenData prepare_instruction_data(const TrainingRun& run, const BaseModel& base, const std::vector<text::Record>& records);

/// Instruction records only: greedy answers to the held-out prompts (check_answers; nullopt for
/// text data, and on ranks other than 0) in chunks of training.batch_size.
std::optional<AnswerCheck> check_heldout_answers(const TrainingRun& run, models::CausalLMImpl& model,
                                                 const TokenData& data);

/// The first `shown` held-out prompts with the expected answer and the answers before and after,
/// then the exact-match line, on run.out.
void print_answers(const TrainingRun& run, const TokenData& data, const AnswerCheck& before, const AnswerCheck& after,
                   std::size_t shown = 4);

/// Every held-out prompt with the expected answer, the answers before and after and whether they
/// are right, one JSON object per line, to output_dir/answers.jsonl; returns that path.
std::filesystem::path write_answers(const TrainingRun& run, const TokenData& data, const AnswerCheck& before,
                                    const AnswerCheck& after);

/// Mean next-token loss over the first `max_blocks` (0 = all) rows of `heldout` [n, T+1], in
/// chunks of `batch` rows on `device`, model in eval mode and no grad (its mode is restored).
double heldout_loss(models::CausalLMImpl& model, const torch::Tensor& heldout, std::int64_t batch,
                    std::int64_t max_blocks, torch::Device device);
/// The same over the chunks `shard` owns, as a sum of chunk losses weighted by their rows.
LossSum heldout_loss_sum(models::CausalLMImpl& model, const torch::Tensor& heldout, std::int64_t batch,
                         std::int64_t max_blocks, torch::Device device, const Shard& shard);

/// heldout_loss over data's held-out blocks (instruction_heldout_loss over its held-out examples):
/// training.eval_batches x training.batch_size x ranks rows (each rank its share) in chunks of training.batch_size (the
/// evaluation the loop runs every eval_every steps).
double evaluate(const TrainingRun& run, models::CausalLMImpl& model, const TokenData& data);

/// PEFT's target resolution for a reference decoder: its model_type, lm_head as the output layer.
LoraModelOptions adapter_options(const models::CausalLMImpl& model);

/// config.lora (base_model_name_or_path = base.source) attached to base.model as adapter
/// "default" (initialised from the global RNG); a "lora:" line on run.out.
LoraModel attach_adapter(const TrainingRun& run, const BaseModel& base);

/// The LoRA fine-tune: run_training on adapter's trainable parameters with a BatchSampler over the
/// train blocks (seed training.seed), held-out evaluation as evaluate(), checkpoints in
/// output_dir/checkpoints, metrics.jsonl and loss.svg, resuming from run.resume_from.
/// `loss_before` is reported in the opening line. Unless interrupted, final_eval_loss is set
/// (evaluated here when the loop ran no step, e.g. a resumed finished run).
LoopResult finetune(const TrainingRun& run, const BaseModel& base, LoraModel& adapter, const TokenData& data,
                    double loss_before);

/// save_pretrained(adapter) into output_dir/adapter (by rank 0, then a barrier); returns that directory.
std::filesystem::path export_adapter(const TrainingRun& run, const LoraModel& adapter);

/// The merged model's held-out loss against the LoRA model's.
struct MergeCheck {
  double merged_loss = 0.0;
  double lora_loss = 0.0;
  double relative_difference = 0.0;  ///< |merged - lora| / max(1e-12, |lora|)
  double tolerance = 0.0;            ///< 1e-4 for fp32 bases, 2e-2 for bf16 (W + BA rounded to 8 bits)
  /// Instruction data: the merged model's held-out answers, which must be as many right as the
  /// LoRA model's (`lora_correct`, set by the caller) in fp32.
  std::optional<AnswerCheck> merged_answers;
  std::optional<std::int64_t> lora_correct;
  bool answers_match() const {
    return !merged_answers || !lora_correct || merged_answers->correct == *lora_correct || tolerance > 1e-4;
  }
  bool passed() const { return relative_difference <= tolerance && answers_match(); }  ///< false for NaN too
  /// "the merged model's held-out loss M differs from the LoRA model's L by R (relative), more than T".
  std::string failure_message() const;
};

/// A fresh `base_source` (after torch::manual_seed(training.seed)), the adapter saved in
/// `adapter_dir`, merge_and_unload, and evaluate() against `lora_loss` (and, for instruction
/// data, check_heldout_answers against `lora_answers`). Evaluates in this process alone: a
/// data-parallel run calls it on rank 0 only.
MergeCheck verify_merge(const TrainingRun& run, const std::string& base_source,
                        const std::filesystem::path& adapter_dir, const TokenData& data, double lora_loss,
                        const std::optional<AnswerCheck>& lora_answers = std::nullopt);

/// What print_summary reports.
struct RunSummary {
  PretrainResult pretrain;
  std::pair<std::int64_t, std::int64_t> parameters;  ///< trainable, all (get_nb_trainable_parameters)
  double loss_before = 0.0;
  LoopResult training;                               ///< steps, tokens, training time
  std::filesystem::path adapter_dir;
  MergeCheck merge;                                  ///< lora_loss = the held-out loss after
  std::optional<AnswerCheck> answers_before, answers_after;  ///< instruction data only
};

/// The "summary" block on run.out: pre-trained base, trainable share, held-out loss before and
/// after, the merge check, steps / tokens / times, and where the outputs are.
void print_summary(const TrainingRun& run, const RunSummary& summary);

}  // namespace peft::train
