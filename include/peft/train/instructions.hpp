#pragma once
/// Instruction fine-tuning data of a run (data.format prompt_completion / messages): records ->
/// train / held-out examples, the padded-batch loss, and exact-match answers on held-out prompts.
/// phases.hpp calls these when data.file holds such records; a trainer of its own can too.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "peft/models/causal_lm.hpp"
#include "peft/text/instruction_data.hpp"
#include "peft/train/data_parallel.hpp"
#include "peft/train/train_config.hpp"

namespace peft::train {

/// A held-out prompt and the tokens a correct model continues it with.
struct AnswerPrompt {
  std::vector<std::int64_t> prompt;    ///< what the model is given
  std::vector<std::int64_t> expected;  ///< the completion + EOS, or the last assistant turn as rendered
  std::string prompt_text;             ///< for display: the record's prompt / last user message
  std::string expected_text;           ///< for display: the completion / last assistant content
};

/// Records of data.file (and data.heldout_file) tokenized for training.
struct InstructionSet {
  text::RecordFormat format = text::RecordFormat::PromptCompletion;
  std::vector<text::Example> train;          ///< rows of the padded batches (packed blocks with data.packing)
  std::vector<text::Example> heldout;        ///< one per held-out record, never packed
  std::vector<AnswerPrompt> answers;         ///< one per held-out record
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::int64_t pad_id = 0;
  std::size_t train_records = 0;
  std::size_t truncated = 0;                 ///< records longer than max_length (cut)
  std::int64_t tokens = 0;                   ///< train + held-out tokens after truncation
};

/// `records` (of one format, not text) -> the set: the held-out records are data.heldout_file's,
/// else the last round(n x heldout_fraction) records (at least 1); each encoded with the masks of
/// `data` (encode_prompt_completion / encode_messages with `render`), truncated to `max_length`,
/// and the train ones packed into blocks of max_length with data.packing. Throws
/// peft::SerializationError naming the record when truncation leaves it nothing to train on, and
/// peft::Error when no train or held-out record remains.
InstructionSet make_instruction_set(const std::vector<text::Record>& records, const std::vector<text::Record>& heldout_records,
                                    const DataConfig& data, std::shared_ptr<const text::Tokenizer> tokenizer,
                                    std::int64_t max_length, const text::ChatRenderer& render);

/// A [B, 3, L] stacked LabeledBatch -> forward with its attention mask -> causal_lm_loss against
/// its labels (mean over the targets that are not kIgnoreLabel, HF's semantics).
torch::Tensor labeled_batch_loss(models::CausalLMImpl& model, const torch::Tensor& stacked);

/// Token-mean loss over the first `max_examples` (0 = all) held-out examples, in padded chunks of
/// `batch` on `device`; eval mode and no grad (the model's mode is restored).
double instruction_heldout_loss(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                                std::int64_t max_examples, torch::Device device);
/// The same over the chunks `shard` owns, as a sum of chunk losses weighted by their targets.
LossSum instruction_heldout_loss_sum(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                                     std::int64_t max_examples, torch::Device device, const Shard& shard);

/// Greedy answers to the held-out prompts.
struct AnswerCheck {
  std::vector<std::string> answers;  ///< decoded, special tokens and the end-of-turn text dropped
  std::vector<char> right;           ///< per answer: its tokens are exactly `expected`
  std::int64_t correct = 0;          ///< answers whose tokens are exactly `expected`
  std::int64_t total = 0;
  double exact_match() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

/// Greedy decoding (models::generate, left-padded batches of `batch`) of expected.size() tokens
/// after each of the first `max_prompts` (0 = all) prompts; exact match = those tokens equal
/// `expected` (generation stops at EOS, so a longer or shorter answer fails), on the model's
/// device. Eval mode, restored.
AnswerCheck check_answers(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                          std::int64_t max_prompts = 0);

}  // namespace peft::train
