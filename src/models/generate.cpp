// Greedy decoding and sampling with the KV cache (models/generate.hpp): transformers'
// GenerationMixin._sample for decoder-only models, batch rows left-padded.

#include "peft/models/generate.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <optional>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/models/forward_args.hpp"

namespace peft::models {

namespace {

using Kind = ConfigError::Kind;

torch::Device model_device(CausalLMImpl& model) {
  for (const auto& p : model.parameters()) return p.device();
  return torch::kCPU;
}

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

void check_inputs(CausalLMImpl& model, const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  if (model.is_training())
    throw Error("generate: the model is in training mode (hint: call model->eval() first; generate does not "
                "switch modes itself)");
  if (!input_ids.defined() || input_ids.dim() != 2 || input_ids.size(0) < 1 || input_ids.size(1) < 1 ||
      !at::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false))
    throw Error("generate: input_ids must be [batch, seq] integer ids with batch and seq >= 1, got " +
                (input_ids.defined() ? shape_text(input_ids) + " " + c10::toString(input_ids.scalar_type())
                                     : std::string("an undefined tensor")));
  if (attention_mask.defined() && (attention_mask.dim() != 2 || attention_mask.sizes() != input_ids.sizes()))
    throw Error("generate: attention_mask must have input_ids' shape " + shape_text(input_ids) + ", got " +
                shape_text(attention_mask));
}

/// The mask generate() runs with, int64 [B, T] on `device`: the caller's, or transformers'
/// _prepare_attention_mask_for_generation (padding = pad_token_id when it is set, occurs in the
/// input and is no EOS id), else all ones.
torch::Tensor prompt_mask(const torch::Tensor& ids, const torch::Tensor& attention_mask, const GenerationConfig& config) {
  if (attention_mask.defined()) {
    auto mask = attention_mask.to(ids.device()).ne(0).to(torch::kInt64);
    auto real = mask.sum(1);
    if (real.eq(0).any().item<bool>())
      throw Error("generate: attention_mask has a row without any real token (row " +
                  std::to_string(real.eq(0).nonzero().flatten()[0].item<int64_t>()) + ")");
    return mask;
  }
  if (config.pad_token_id) {
    const auto pad = *config.pad_token_id;
    bool pad_is_eos = false;
    for (const auto e : config.eos_token_id) pad_is_eos = pad_is_eos || e == pad;
    if (!pad_is_eos && ids.eq(pad).any().item<bool>()) {
      auto mask = ids.ne(pad).to(torch::kInt64);
      if (!mask.sum(1).eq(0).any().item<bool>()) return mask;
    }
  }
  return torch::ones_like(ids);
}

/// The number of new tokens to generate for a prompt of length T.
std::int64_t new_token_budget(const GenerationConfig& config, std::int64_t T) {
  if (config.max_new_tokens) return *config.max_new_tokens;
  const auto n = config.max_length - T;
  if (n <= 0)
    throw ConfigError::about("GenerationConfig", "max_length", std::to_string(config.max_length),
                             "leaves no room for new tokens after a prompt of " + std::to_string(T) + " tokens",
                             "set max_new_tokens");
  return n;
}

/// pad_token_id or eos_token_id[0]; checked against the vocabulary when a row can finish.
std::int64_t resolve_pad(const GenerationConfig& config, std::int64_t vocab) {
  bool can_finish = false;
  for (const auto e : config.eos_token_id) can_finish = can_finish || (e >= 0 && e < vocab);
  const std::optional<std::int64_t> pad =
      config.pad_token_id ? config.pad_token_id
                          : (config.eos_token_id.empty() ? std::nullopt : std::optional<std::int64_t>(config.eos_token_id[0]));
  if (!can_finish) return pad.value_or(0);  // no row ever finishes: the pad is never used
  if (!pad || *pad < 0 || *pad >= vocab)
    throw ConfigError::about("GenerationConfig", "pad_token_id", pad ? std::to_string(*pad) : "None",
                             "finished rows are fed the pad token, which must be in the vocabulary of " +
                                 std::to_string(vocab) + " tokens",
                             config.pad_token_id ? "set pad_token_id to a token of the model"
                                                 : "eos_token_id[0] is outside the vocabulary: set pad_token_id");
  return *pad;
}

}  // namespace

torch::Tensor generate(CausalLMImpl& model, const torch::Tensor& input_ids, const GenerationConfig& config,
                       const torch::Tensor& attention_mask, const GenerationCallback& on_step) {
  config.validate();
  check_inputs(model, input_ids, attention_mask);
  torch::NoGradGuard no_grad;
  const auto device = model_device(model);
  const auto B = input_ids.size(0), T = input_ids.size(1);
  const auto budget = new_token_budget(config, T);
  const auto pad = resolve_pad(config, model.vocab_size());
  const bool has_eos = !config.eos_token_id.empty();
  const auto eos = torch::tensor(config.eos_token_id, torch::kInt64);

  auto sequences = input_ids.to(device, torch::kInt64);
  auto mask = prompt_mask(sequences, attention_mask, config);
  c10::optional<at::Generator> generator;
  if (config.do_sample && config.seed) generator = at::detail::createCPUGenerator(*config.seed);

  KVCache cache;
  ForwardArgs args;
  args.cache = config.use_cache ? &cache : nullptr;
  auto unfinished = torch::ones({B}, torch::kBool);
  torch::Tensor step_input = sequences;
  const auto long_on_device = torch::TensorOptions().dtype(torch::kInt64).device(device);
  for (std::int64_t step = 0; step < budget; ++step) {
    // Always a mask (all ones without padding): the position ids are then [B, t], one row per
    // sequence, which mixed-batch LoRA on a position embedding needs.
    args.attention_mask = mask;
    const auto logits = model.forward(config.use_cache ? step_input : sequences, args);  // [B, t, V]
    auto scores = logits.select(1, logits.size(1) - 1).to(torch::kFloat32);
    scores = process_logits(config, sequences, scores);
    torch::Tensor next;
    if (config.do_sample) {
      const auto probs = torch::softmax(scores, -1).to(torch::kCPU);
      next = torch::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(1);
    } else {
      next = scores.argmax(-1).to(torch::kCPU);
    }
    const auto active = unfinished.clone();
    if (has_eos) next = torch::where(unfinished, next, torch::full_like(next, pad));
    step_input = next.to(device).unsqueeze(1);
    sequences = torch::cat({sequences, step_input}, 1);
    mask = torch::cat({mask, torch::ones({B, 1}, long_on_device)}, 1);
    if (has_eos) unfinished = unfinished.logical_and(torch::isin(next, eos).logical_not());
    if (on_step) on_step(GenerationStep{step, next, active});
    if (has_eos && !unfinished.any().item<bool>()) break;
  }
  return sequences;
}

}  // namespace peft::models
