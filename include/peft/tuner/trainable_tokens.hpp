#pragma once
/// Where `trainable_token_indices` applies (PEFT's _set_trainable with TrainableTokensWrapper;
/// docs/layer.md "Trainable tokens"), decided before injection changes anything:
///   * dict form {name: [indices]}: every module whose key ends with `name` (a plain string
///     suffix, as for modules_to_save) gets those rows;
///   * list form [indices]: PEFT's name for the input embedding of a model without
///     get_input_embeddings(), "embed_tokens" (PlanOptions::input_embeddings overrides it);
///   * refused: a name also listed in modules_to_save (ValueError in PEFT), a name that matches
///     no module (TargetNotFoundError, PEFT's "Target modules {...} not found"), a module that
///     this adapter targets with LoRA (PEFT's TypeError). The layer's own checks (Embedding only,
///     index range, no LoRA on it) are LoraLayer::check_trainable_tokens.

#include <cstdint>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/targeting/plan.hpp"

namespace peft {

struct TokenTarget {
  std::string key;                    ///< module key
  std::vector<std::int64_t> indices;  ///< in config order
};

/// The modules that get trainable tokens for `config` (in named_modules() order per config entry).
inline std::vector<TokenTarget> plan_trainable_tokens(const LoraConfig& config, const std::vector<ModuleInfo>& modules,
                                                      const TargetPlan& plan, const PlanOptions& options = {}) {
  std::vector<TokenTarget> out;
  if (!config.trainable_token_indices || config.trainable_token_indices->is_null()) return out;
  auto ints = [](const JsonValue& v) {
    std::vector<std::int64_t> ids;
    for (const auto& e : v.as_array()) ids.push_back(e.as_int());
    return ids;
  };
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> wanted;
  const JsonValue& tti = *config.trainable_token_indices;
  if (tti.is_array())
    wanted.emplace_back(options.input_embeddings, ints(tti));
  else
    for (const auto& [name, ids] : tti.as_object()) wanted.emplace_back(name, ints(ids));

  // Keys inside an adapted layer (its adapter containers) are never candidates.
  std::vector<std::string> inner_prefixes;
  for (const auto& m : modules)
    if (m.kind == ModuleKind::LoraLayer) inner_prefixes.push_back(m.key + ".");
  for (const auto& [name, ids] : wanted) {
    if (config.modules_to_save)
      for (const auto& m : *config.modules_to_save)
        if (m == name)
          throw ConfigError("trainable_token_indices", "{\"" + name + "\": ...}",
                            "The embedding layer is already marked to be trained fully, either specify "
                            "`modules_to_save=[..., \"" + name + "\", ...]` or `trainable_tokens={'" + name +
                                "': x}` but not both",
                            "remove `" + name + "` from one of the two");
    bool found = false;
    for (const auto& m : modules) {
      if (m.key.empty() || !detail::ends_with(m.key, name)) continue;
      bool inner = false;
      for (const auto& p : inner_prefixes) inner = inner || m.key.compare(0, p.size(), p) == 0;
      if (inner) continue;
      for (const auto& l : plan.layers)
        if (l.key == m.key)
          throw UnsupportedModuleError("trainable_token_indices cannot be applied to `" + m.key +
                                       "`: this adapter also targets it with LoRA (PEFT raises TypeError for a "
                                       "lora." + std::string(m.kind == ModuleKind::Embedding ? "Embedding" : "layer") +
                                       "); leave it out of target_modules or of trainable_token_indices. Nothing "
                                       "was changed.");
      out.push_back({m.key, ids});
      found = true;
    }
    if (!found)
      throw TargetNotFoundError("Target modules {'" + name + "'} not found in the base model (trainable_token_indices). " +
                                (tti.is_array() ? "The list form names the input embedding `" + name +
                                                      "`; use the dict form {module: [indices]} for other names."
                                                : std::string("Check the module name.")));
  }
  return out;
}

}  // namespace peft
