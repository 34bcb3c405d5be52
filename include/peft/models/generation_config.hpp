#pragma once
/// transformers' GenerationConfig, the settings of peft::models::generate (models/generate.hpp):
/// the same field names and defaults, read from a model directory's generation_config.json and
/// config.json.
///
///   auto gen = peft::models::load_generation_config("path/to/hf_dir");   // eos/pad ids, sampling
///   gen.max_new_tokens = 64;
///   gen.do_sample = true;
///   gen.seed = 0;                                                         // own generator
///
/// Decisions: generation_config.json (when present) gives the settings, as transformers'
/// from_pretrained does; token ids it leaves absent or null come from config.json (top level,
/// else its `text_config`, where transformers 5 and composite models keep them), so a
/// generation_config.json without eos_token_id still stops at the model's EOS. Settings
/// generate() does not implement (beam search, min_p, typical_p, no_repeat_ngram_size, ...) are
/// warned about (peft::warn) when they hold a non-default value, and otherwise ignored.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"

namespace peft::models {

/// What generate() does (transformers' names; defaults as in transformers 4.x/5.x).
struct GenerationConfig {
  /// New tokens to generate at most. Unset: max_length - prompt length (transformers' rule).
  std::optional<std::int64_t> max_new_tokens;
  /// Prompt + new tokens, used only while max_new_tokens is unset (transformers' default 20).
  std::int64_t max_length = 20;
  /// false: greedy (argmax); true: sample from softmax of the processed logits.
  bool do_sample = false;
  /// Sampling only: logits / temperature (> 0; 1 = off).
  double temperature = 1.0;
  /// Sampling only: keep the top_k highest logits, ties with the k-th kept (0 = off).
  std::int64_t top_k = 50;
  /// Sampling only: keep the smallest set of most probable tokens whose probabilities add up to
  /// top_p or more (at least one token; 1 = off). In [0, 1].
  double top_p = 1.0;
  /// > 0; 1 = off. Logits of tokens already in the row (prompt included) are divided by it when
  /// positive and multiplied when negative (RepetitionPenaltyLogitsProcessor), greedy or not.
  double repetition_penalty = 1.0;
  /// A row is finished once it produced any of these (empty: rows never finish early).
  std::vector<std::int64_t> eos_token_id;
  /// Written into finished rows (and fed to the model for them). Unset: eos_token_id[0].
  std::optional<std::int64_t> pad_token_id;
  /// Read from the files; generate() does not add it (the caller's prompt is used as given).
  std::optional<std::int64_t> bos_token_id;
  /// Sampling: seed of a CPU generator of generate()'s own (the global torch RNG is untouched);
  /// unset: the global CPU generator (torch::manual_seed governs, as in transformers). Not in
  /// transformers' GenerationConfig (there the caller seeds the global RNG).
  std::optional<std::uint64_t> seed;
  /// true: the prompt runs once, then one token per step against the KV cache; false: the whole
  /// sequence runs again at every step (same tokens; for comparisons and benchmarks).
  bool use_cache = true;

  /// transformers' checks, as a ConfigError with subject "GenerationConfig":
  /// max_new_tokens > 0, max_length > 0, repetition_penalty > 0; with do_sample also
  /// temperature > 0, top_k >= 0, 0 <= top_p <= 1; token ids >= 0.
  void validate() const;
};

/// `base` with every generation field of `json` (a generation_config.json or config.json object)
/// laid over it: max_new_tokens, max_length, do_sample, temperature, top_k, top_p,
/// repetition_penalty, eos_token_id (an integer or a list), pad_token_id, bos_token_id, use_cache.
/// null means "not set" (the base value stays). Other keys are ignored; unimplemented settings
/// with non-default values are warned about. A wrong type is a ConfigError named after `source`
/// (`dir/generation_config.json: GenerationConfig.top_k = "x": must be an integer`).
GenerationConfig generation_config_from_json(const JsonValue& json, GenerationConfig base = {},
                                             const std::string& source = "generation_config.json");

/// The same from JSON text (a SerializationError when it does not parse).
GenerationConfig generation_config_from_json_text(const std::string& text, GenerationConfig base = {},
                                                  const std::string& source = "generation_config.json");

/// The generation settings of a model: for a directory, generation_config.json over the
/// defaults (or config.json's generation fields when there is no generation_config.json, like
/// transformers' GenerationConfig.from_model_config), then bos/eos/pad ids still unset taken
/// from config.json (or its text_config); for "builtin:tiny-gpt2" / "builtin:tiny-llama" the
/// builtin config (bos = eos = 256, the ByteTokenizer's <|endoftext|>). A directory without
/// either file gives the defaults. The result is validated.
GenerationConfig load_generation_config(const std::string& dir_or_builtin);

}  // namespace peft::models
