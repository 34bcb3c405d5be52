#pragma once
/// Text generation with the reference decoders (transformers' greedy search and sampling):
///
///   auto model = peft::models::load_causal_lm(dir);
///   model->eval();                                         // required (no dropout while decoding)
///   auto gen = peft::models::load_generation_config(dir);  // eos/pad ids of the model
///   gen.max_new_tokens = 32;
///   auto out = peft::models::generate(*model, ids, gen);   // ids [B, T] -> [B, T + n]
///
/// With adapters: generate through the model the LoraModel wraps; the active adapter is used,
/// or one adapter per row while the caller holds `auto scope = pm.mixed_batch(names)` (one name
/// per batch row, kept for every step), or the merged weights after merge_and_unload().
///
/// How it runs (decisions):
/// - Under torch::NoGradGuard; the model must be in eval mode (an Error otherwise: generate does
///   not switch modes behind the caller's back). The model runs in its own dtype and device;
///   the next-token logits are processed in fp32 (as transformers' `.float()`).
/// - With config.use_cache the prompt runs once and fills a KVCache, then each step feeds one
///   token per row ([B, 1]); the attention mask grows by one column of ones per step and the
///   position ids follow transformers' rule (cumsum(mask) - 1), so left-padded rows decode
///   exactly as they would alone. Without the cache every step runs the whole sequence.
/// - Finished rows (a token of config.eos_token_id produced) get pad_token_id (default
///   eos_token_id[0]) at every later step, and the loop ends when every row has finished or
///   after max_new_tokens steps (or max_length - T). As in transformers, finished rows still run
///   through the model (so a mixed-batch scope keeps its one-name-per-row shape).
/// - Sampling draws on the CPU from softmax of the processed fp32 logits with torch::multinomial:
///   from a generator of its own seeded with config.seed (the global RNG untouched), else from
///   the global CPU generator. Tokens drawn with the same seed on the same probabilities are the
///   same on every device (and the same as transformers after torch.manual_seed(seed) on CPU).

#include <torch/types.h>

#include <cstdint>
#include <functional>

#include "peft/models/causal_lm.hpp"
#include "peft/models/generation_config.hpp"
#include "peft/models/logits_process.hpp"

namespace peft::models {

/// One decoding step, passed to the streaming callback right after the tokens are chosen.
struct GenerationStep {
  std::int64_t step = 0;  ///< 0 for the first new token
  /// [B] int64 on the CPU: the token appended to each row (pad_token_id for rows that had
  /// finished before this step).
  torch::Tensor tokens;
  /// [B] bool on the CPU: true where the row was still running, i.e. tokens[b] is a real
  /// generated token (it may be the EOS that finishes the row).
  torch::Tensor active;
};

/// Called once per step with the new tokens (e.g. to print them as they come). An exception it
/// throws ends generation and propagates.
using GenerationCallback = std::function<void(const GenerationStep&)>;

/// Greedy decoding or sampling, as configured (models/generation_config.hpp).
///   input_ids [B, T] int64 (T >= 1), on any device (moved to the model's);
///   attention_mask [B, T] (any integer or bool dtype; nonzero = real token, padding on the
///     left). Undefined: transformers' rule, the positions holding pad_token_id are padding when
///     pad_token_id is set, occurs in the input and differs from every EOS id; else all real.
/// Returns sequences [B, T + n] int64 on the model's device: the prompt (as given) followed by
/// the n <= max_new_tokens generated tokens, finished rows filled with pad_token_id.
/// Throws peft::ConfigError for an invalid config (GenerationConfig::validate) or a pad id
/// outside the vocabulary while some EOS id is in it, peft::Error for bad input shapes, a model
/// in training mode, or errors of the model's forward (e.g. a sequence longer than GPT-2's
/// n_positions).
torch::Tensor generate(CausalLMImpl& model, const torch::Tensor& input_ids, const GenerationConfig& config,
                       const torch::Tensor& attention_mask = {}, const GenerationCallback& on_step = {});

}  // namespace peft::models
