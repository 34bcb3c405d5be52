// transformers' logits processors (models/logits_process.hpp), op for op as in
// transformers/generation/logits_process.py.

#include "peft/models/logits_process.hpp"

#include <algorithm>
#include <limits>

#include "peft/error.hpp"

namespace peft::models {

namespace {

void check_scores(const torch::Tensor& scores, const char* what) {
  if (!scores.defined() || scores.dim() != 2 || !scores.is_floating_point())
    throw Error(std::string(what) + ": scores must be [batch, vocab] floating point, got " +
                (scores.defined() ? std::to_string(scores.dim()) + " dims of " + std::string(c10::toString(scores.scalar_type()))
                                  : std::string("an undefined tensor")));
}

constexpr float kFiltered = -std::numeric_limits<float>::infinity();

}  // namespace

torch::Tensor apply_repetition_penalty(const torch::Tensor& input_ids, const torch::Tensor& scores, double penalty) {
  check_scores(scores, "apply_repetition_penalty");
  if (!(penalty > 0.0))
    throw ConfigError::about("GenerationConfig", "repetition_penalty", std::to_string(penalty),
                             "`penalty` has to be a strictly positive float", "1.0 turns the penalty off");
  if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.size(0) != scores.size(0))
    throw Error("apply_repetition_penalty: input_ids must be [batch, length] with the scores' batch " +
                std::to_string(scores.size(0)));
  if (penalty == 1.0 || input_ids.size(1) == 0) return scores;
  const auto ids = input_ids.to(scores.device(), torch::kInt64);
  // gather / where / scatter as transformers: a repeated id writes the same value every time.
  auto score = scores.gather(1, ids);
  score = torch::where(score < 0, score * penalty, score / penalty);
  return scores.scatter(1, ids, score);
}

torch::Tensor apply_temperature(const torch::Tensor& scores, double temperature) {
  check_scores(scores, "apply_temperature");
  if (!(temperature > 0.0))
    throw ConfigError::about("GenerationConfig", "temperature", std::to_string(temperature),
                             "`temperature` has to be a strictly positive float", "");
  return scores / temperature;
}

torch::Tensor apply_top_k(const torch::Tensor& scores, std::int64_t top_k, std::int64_t min_tokens_to_keep) {
  check_scores(scores, "apply_top_k");
  if (top_k < 0) throw ConfigError::about("GenerationConfig", "top_k", std::to_string(top_k), "`top_k` has to be a strictly positive integer", "0 turns it off");
  if (top_k == 0) return scores;
  const auto k = std::min(std::max(top_k, min_tokens_to_keep), scores.size(-1));
  // Remove every entry below the k-th largest score of its row (the k-th itself and its ties stay).
  const auto kth = std::get<0>(torch::topk(scores, k)).narrow(-1, k - 1, 1);
  return scores.masked_fill(scores < kth, kFiltered);
}

torch::Tensor apply_top_p(const torch::Tensor& scores, double top_p, std::int64_t min_tokens_to_keep) {
  check_scores(scores, "apply_top_p");
  if (!(top_p >= 0.0 && top_p <= 1.0))
    throw ConfigError::about("GenerationConfig", "top_p", std::to_string(top_p), "`top_p` has to be a float > 0 and < 1", "");
  if (top_p >= 1.0) return scores;
  auto sorted = torch::sort(scores, /*stable=*/true, /*dim=*/-1, /*descending=*/false);
  const auto& sorted_logits = std::get<0>(sorted);
  const auto& sorted_indices = std::get<1>(sorted);
  const auto cumulative = sorted_logits.softmax(-1).cumsum(-1);
  // Tokens whose cumulative probability (from the least probable up) stays <= 1 - top_p go.
  auto remove = cumulative <= (1.0 - top_p);
  const auto keep = std::min(min_tokens_to_keep, scores.size(-1));
  remove.narrow(-1, scores.size(-1) - keep, keep).fill_(false);
  const auto to_remove = remove.scatter(1, sorted_indices, remove);
  return scores.masked_fill(to_remove, kFiltered);
}

torch::Tensor process_logits(const GenerationConfig& config, const torch::Tensor& input_ids, const torch::Tensor& scores) {
  torch::Tensor s = scores;
  if (config.repetition_penalty != 1.0) s = apply_repetition_penalty(input_ids, s, config.repetition_penalty);
  if (config.do_sample) {
    if (config.temperature != 1.0) s = apply_temperature(s, config.temperature);
    if (config.top_k != 0) s = apply_top_k(s, config.top_k);
    if (config.top_p < 1.0) s = apply_top_p(s, config.top_p);
  }
  return s;
}

}  // namespace peft::models
