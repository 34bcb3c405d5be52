#pragma once
/// transformers' logits processors used by generate() (models/generate.hpp), as free functions
/// on the next-token scores of one step. scores [B, V] floating point (generate() passes fp32);
/// each returns a new tensor and leaves its input unchanged. Filtered entries get -inf.
///
/// Order (process_logits, as transformers' _get_logits_processor): repetition penalty (greedy
/// and sampling), then for sampling only temperature, top-k, top-p.

#include <torch/types.h>

#include <cstdint>

#include "peft/models/generation_config.hpp"

namespace peft::models {

/// RepetitionPenaltyLogitsProcessor: for every token id present in row b of `input_ids` [B, L]
/// (int64; prompt, padding and generated tokens alike, as in transformers), scores[b, id] is
/// divided by `penalty` when positive and multiplied by it when negative (0 stays 0). A token
/// present several times is penalised once. penalty 1 returns the scores unchanged.
torch::Tensor apply_repetition_penalty(const torch::Tensor& input_ids, const torch::Tensor& scores, double penalty);

/// TemperatureLogitsWarper: scores / temperature (temperature > 0).
torch::Tensor apply_temperature(const torch::Tensor& scores, double temperature);

/// TopKLogitsWarper: entries below the k-th largest of their row become -inf (ties with the k-th
/// are kept, so more than k may survive). k = max(top_k, min_tokens_to_keep), capped at V;
/// top_k 0 returns the scores unchanged.
torch::Tensor apply_top_k(const torch::Tensor& scores, std::int64_t top_k, std::int64_t min_tokens_to_keep = 1);

/// TopPLogitsWarper (nucleus): sort each row ascending (stable, so equal scores keep index
/// order), take the cumulative softmax, and filter every token whose cumulative probability is
/// <= 1 - top_p: what survives is the smallest set of most probable tokens with probability
/// >= top_p. The min_tokens_to_keep most probable (the last of the ascending sort) always
/// survive. top_p 1 returns the scores unchanged.
torch::Tensor apply_top_p(const torch::Tensor& scores, double top_p, std::int64_t min_tokens_to_keep = 1);

/// The processors `config` turns on, in transformers' order, on the scores [B, V] of sequences
/// `input_ids` [B, L]: repetition_penalty != 1; with do_sample: temperature != 1, top_k != 0,
/// top_p < 1.
torch::Tensor process_logits(const GenerationConfig& config, const torch::Tensor& input_ids, const torch::Tensor& scores);

}  // namespace peft::models
