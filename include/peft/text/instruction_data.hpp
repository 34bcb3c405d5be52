#pragma once
/// Records (records.hpp) -> token ids + labels -> padded or packed batches, for instruction
/// fine-tuning (TRL's SFTTrainer semantics). Labels are the ids where the model is trained and
/// kIgnoreLabel (-100, what causal_lm_loss ignores) elsewhere; the loss shifts them (position t
/// predicts token t + 1), so ids and labels stay aligned here.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "peft/text/chat_template.hpp"
#include "peft/text/records.hpp"
#include "peft/text/tokenizer.hpp"

namespace peft::text {

constexpr int64_t kIgnoreLabel = -100;

/// One tokenized training example: ids.size() == labels.size().
struct Example {
  std::vector<int64_t> ids;
  std::vector<int64_t> labels;
};

/// A conversation renderer: messages -> text, as ChatTemplate::apply_chat_template.
using ChatRenderer = std::function<std::string(const std::vector<ChatMessage>&, bool add_generation_prompt)>;

/// prompt/completion as TRL: ids = encode(prompt + completion, add_special_tokens) followed by the
/// tokenizer's EOS (when it has one and the text does not already end with it); the completion's
/// tokens are those after encode(prompt, add_special_tokens). When those prompt tokens are not a
/// prefix of the whole (a BPE merge across the boundary), the example is encode(prompt) +
/// encode(completion, false) instead, with a peft::warn naming `where`. completion_only_loss:
/// prompt tokens get kIgnoreLabel; otherwise every label is its id.
Example encode_prompt_completion(const Tokenizer& tokenizer, const std::string& prompt, const std::string& completion,
                                 bool completion_only_loss, const std::string& where = "");

/// The rendered conversation split into (text, is_assistant) pieces that concatenate to
/// render(messages, false). An assistant piece is what rendering messages[:i+1] adds to
/// render(messages[:i], true): the turn's content and the end-of-turn text the template writes
/// after it (what transformers' {% generation %} marks). Throws peft::ConfigError naming `where`
/// when the template does not render incrementally (a prefix rendering is not a prefix of the
/// next one) or the conversation has no assistant turn.
std::vector<std::pair<std::string, bool>> assistant_pieces(const ChatRenderer& render,
                                                           const std::vector<ChatMessage>& messages,
                                                           const std::string& where = "");

/// A conversation: the pieces above, each encoded on its own (no special tokens added: the
/// template writes them) and concatenated; assistant_only_loss keeps labels on the assistant
/// pieces only, otherwise on every token. No EOS is appended (the template ends the turns).
Example encode_messages(const Tokenizer& tokenizer, const ChatRenderer& render, const std::vector<ChatMessage>& messages,
                        bool assistant_only_loss, const std::string& where = "");

/// Keep the first max_length tokens (TRL's truncation, from the right).
void truncate(Example& example, int64_t max_length);

/// True when some label is trained on after the causal shift (a label other than kIgnoreLabel at
/// a position >= 1).
bool has_targets(const Example& example);

/// The pad id for batches: the tokenizer's pad, else its EOS, else 0 (padded positions are
/// masked out of attention and loss, so the id only has to be valid).
int64_t pad_token_id(const Tokenizer& tokenizer);

/// A batch of examples, right-padded to the longest: each [B, L] int64 on the CPU. Padding has
/// ids pad_id, labels kIgnoreLabel and attention_mask 0; real tokens attention_mask 1.
struct LabeledBatch {
  torch::Tensor input_ids;
  torch::Tensor labels;
  torch::Tensor attention_mask;
  /// The three as one [B, 3, L] tensor (what the training loop's hooks carry) and back.
  torch::Tensor stacked() const;
  static LabeledBatch unstack(const torch::Tensor& stacked);
};

/// Right-pads `examples` (at least one, each non-empty) into a LabeledBatch. Throws peft::Error
/// for an empty list or example.
LabeledBatch collate(const std::vector<const Example*>& examples, int64_t pad_id);

/// TRL's packing (the "wrapped" strategy): all examples concatenated, ids with their labels, and
/// cut into blocks of block_len tokens; the last, shorter block is kept. Examples may straddle
/// blocks and attend to the ones before them in the same block. The first label of each block
/// is never a target (nothing predicts it).
std::vector<Example> pack_examples(const std::vector<Example>& examples, int64_t block_len);

}  // namespace peft::text
