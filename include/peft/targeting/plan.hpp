#pragma once
/// Injection planning (docs/matching.md#order-of-operations): given a config and an inventory of a
/// model's modules
/// (key + kind, in named_modules() order), decide which modules get a LoRA layer, with what
/// rank/alpha/scaling, and what PEFT would save as `target_modules` — without touching a model.
/// The injector builds the inventory from a torch::nn::Module tree, plans, then mutates, so a
/// failing plan leaves the model untouched.

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/targeting/matching.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/targeting/target_defaults.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// What a module is, as far as targeting cares.
enum class ModuleKind {
  Container,           ///< a module with children only (block, ModuleList, ...)
  Linear,              ///< torch::nn::Linear or peft::Linear
  Conv1D,              ///< GPT-2 style Conv1D, weight [in, out]
  Embedding,           ///< torch::nn::Embedding or peft::Embedding
  Conv,                ///< Conv1d/2d/3d (torch's or peft::Conv1d/2d/3d)
  MultiheadAttention,  ///< PEFT adapts it; peft-cpp does not yet
  LoraLayer,           ///< a layer that already carries adapters (its children are skipped)
  Other,               ///< activations, norms, dropout, ...
};

struct ModuleInfo {
  std::string key;        ///< dotted name, "" for the root
  ModuleKind kind = ModuleKind::Other;
  std::string type_name;  ///< for messages, e.g. "ReLU", "LlamaBlock"; "lora.<type>" for an adapted layer
  bool has_bias = false;
};

struct PlannedLayer {
  std::string key;
  ModuleKind kind = ModuleKind::Linear;
  LayerSettings settings;
  bool fan_in_fan_out = false;  ///< read from the (shared) config when this layer is created
};

struct TargetPlan {
  std::vector<PlannedLayer> layers;    ///< in named_modules() order = creation / RNG order
  std::vector<std::string> excluded;   ///< exclude_modules / modules_to_save hits
  std::vector<std::string> unmatched;
  /// The config as PEFT leaves (and saves) it: target_modules resolved (arch default, all-linear
  /// expanded, minimal-suffix set) and fan_in_fan_out as the last created layer set it.
  LoraConfig config;
};

struct PlanOptions {
  std::string model_type = "custom";  ///< HF model_type for the None-targets default
  /// all-linear drops this module (HF get_output_embeddings()); custom models have none, so
  /// PEFT targets their output Linear too.
  std::optional<std::string> output_layer;
  /// The input embedding's name for the list form of `trainable_token_indices` (PEFT uses
  /// get_input_embeddings(), or "embed_tokens" for a model without it).
  std::string input_embeddings = "embed_tokens";
};

/// PEFT's `_find_minimal_target_modules` (docs/matching.md#minimal-suffix-rewrite): the smallest set of
/// dotted suffixes that
/// selects exactly `targets` among `all_keys`. Returned sorted. Throws ConfigError on an
/// invalid target set.
inline std::vector<std::string> minimal_target_suffixes(const std::vector<std::string>& targets,
                                                        const std::vector<std::string>& all_keys) {
  auto suffixes = [](const std::string& s) {
    std::vector<std::string> out;  // shortest first: c, b.c, a.b.c
    for (std::size_t end = s.size();;) {
      auto dot = end == 0 ? std::string::npos : s.rfind('.', end - 1);
      if (dot == std::string::npos) break;
      out.push_back(s.substr(dot + 1));
      end = dot;
    }
    out.push_back(s);
    return out;
  };
  std::set<std::string> target_set(targets.begin(), targets.end());
  if (target_set.empty() || target_set.count(""))
    throw ConfigError("target_modules", "", "cannot minimise an empty target set or the root", "");
  std::set<std::string> other_suffixes;
  for (const auto& k : all_keys) {
    if (target_set.count(k)) continue;
    bool is_target_suffix = false;
    for (const auto& t : target_set)
      if (k.size() > t.size() && k.compare(k.size() - t.size(), t.size(), t) == 0 &&
          k[k.size() - t.size() - 1] == '.') {
        is_target_suffix = true;
        break;
      }
    if (is_target_suffix) continue;
    for (auto& s : suffixes(k)) other_suffixes.insert(std::move(s));
  }
  std::vector<std::pair<std::vector<std::string>, std::string>> sorted;
  for (const auto& t : target_set) sorted.emplace_back(suffixes(t), t);
  std::sort(sorted.begin(), sorted.end());
  std::set<std::string> chosen;
  for (const auto& item : sorted) {
    for (const auto& suffix : item.first) {
      if (chosen.count(suffix) || other_suffixes.count(suffix)) continue;
      bool covered = false;
      for (const auto& c : chosen)
        if (key_matches_suffix(item.second, c) && item.second != c) covered = true;
      if (!covered) {
        chosen.insert(suffix);
        break;
      }
    }
  }
  if (chosen.empty()) return {target_set.begin(), target_set.end()};
  return {chosen.begin(), chosen.end()};
}

/// Plan an injection of `config` (already validated) into a model described by `modules`.
/// Throws TargetNotFoundError when nothing is targeted, UnsupportedModuleError when a matched
/// module cannot carry LoRA, ConfigError for a resolved rank PEFT rejects.
inline TargetPlan plan_targets(const LoraConfig& config, const std::vector<ModuleInfo>& modules,
                               const PlanOptions& options = {}) {
  TargetPlan plan;
  plan.config = config;
  LoraConfig& cfg = plan.config;

  if (cfg.target_parameters)
    throw ConfigError("target_parameters", "[...]", "is not supported by peft-cpp yet",
                      "target the owning Linear modules with target_modules instead");
  if (cfg.target_modules.is_none()) {
    auto d = default_target_modules(options.model_type);
    if (!d)
      throw ConfigError("target_modules", "None",
                        "Please specify `target_modules` or `target_parameters` in `peft_config`: "
                        "there is no default for model_type \"" + options.model_type + "\"",
                        "name the layers to adapt, e.g. {\"q_proj\", \"v_proj\"}, or \"all-linear\"");
    cfg.target_modules = *d;
  }

  // Keys that lie inside an existing LoRA layer are never candidates.
  std::vector<std::string> lora_prefixes;
  for (const auto& m : modules)
    if (m.kind == ModuleKind::LoraLayer) lora_prefixes.push_back(m.key + ".");
  auto inside_lora = [&](const std::string& key) {
    for (const auto& p : lora_prefixes)
      if (key.compare(0, p.size(), p) == 0) return true;
    return false;
  };

  // Linear-like: Linear, Conv1D, and adapted ones (lora.Linear / lora.Conv1D; not lora.Conv1d).
  auto linear_like = [](const ModuleInfo& m) {
    return m.kind == ModuleKind::Linear || m.kind == ModuleKind::Conv1D ||
           (m.kind == ModuleKind::LoraLayer &&
            (m.type_name.find("Linear") != std::string::npos || m.type_name.find("Conv1D") != std::string::npos));
  };
  if (cfg.target_modules.is_all_linear()) {
    std::vector<std::string> linear;
    for (const auto& m : modules) {
      // all-linear: nn.Linear and Conv1D only (never Embedding or torch convolutions).
      if (!linear_like(m) || inside_lora(m.key)) continue;
      if (options.output_layer && m.key == *options.output_layer) continue;
      linear.push_back(m.key);
    }
    cfg.target_modules = ModuleSpec::list(linear);
  }
  if (cfg.target_modules.is_list() && cfg.target_modules.names().size() >= 20) {
    std::vector<std::string> keys;
    bool has_root = false;
    for (const auto& m : modules) {
      keys.push_back(m.key);
      has_root |= m.key.empty();
    }
    if (!has_root) keys.emplace_back("");
    auto minimal = minimal_target_suffixes(cfg.target_modules.names(), keys);
    if (minimal.size() < cfg.target_modules.names().size()) cfg.target_modules = ModuleSpec::list(minimal);
  }

  const TargetMatcher match(cfg);
  const LayerSettingsResolver resolve(cfg);
  const InitMethod init = cfg.init_method();
  for (const auto& m : modules) {
    if (m.key.empty() || inside_lora(m.key)) continue;
    const MatchResult r = match(m.key);
    if (r == MatchResult::Excluded) {
      plan.excluded.push_back(m.key);
      continue;
    }
    if (r == MatchResult::NoMatch) {
      plan.unmatched.push_back(m.key);
      continue;
    }
    switch (m.kind) {
      case ModuleKind::Linear:
      case ModuleKind::Conv1D:
      case ModuleKind::Embedding:
      case ModuleKind::Conv:
      case ModuleKind::LoraLayer: break;
      case ModuleKind::MultiheadAttention:
        throw UnsupportedModuleError(
            "Target module `" + m.key + "` (" + m.type_name +
            ") is supported by Python PEFT but not by peft-cpp yet; peft-cpp adapts Linear, "
            "Embedding, Conv1d/2d/3d and GPT-2 Conv1D layers. Narrow target_modules or add it to "
            "exclude_modules.");
      default:
        throw UnsupportedModuleError(
            "Target module `" + m.key + "` (" + m.type_name +
            ") is not supported: only Linear, Embedding, Conv1d/2d/3d and GPT-2 Conv1D layers can "
            "carry LoRA. A broad regex in target_modules probably matched a container or an "
            "activation; narrow it or add the module to exclude_modules.");
    }
    // The layer factory rewrites the shared config flag (Quirk, kept: the saved value is what
    // the last created layer left).
    if (m.kind == ModuleKind::Linear && cfg.fan_in_fan_out) {
      warn("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting "
           "fan_in_fan_out to False.");
      cfg.fan_in_fan_out = false;
    } else if (m.kind == ModuleKind::Conv1D && !cfg.fan_in_fan_out) {
      warn("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting "
           "fan_in_fan_out to True.");
      cfg.fan_in_fan_out = true;
    }
    PlannedLayer layer;
    layer.key = m.key;
    layer.kind = m.kind;
    layer.settings = resolve(m.key);
    layer.fan_in_fan_out = cfg.fan_in_fan_out;
    // Linear's orthogonal init needs an even rank (PEFT checks it there only; an Embedding falls
    // back to the default init and a convolution refuses the init itself).
    if (init == InitMethod::Orthogonal && layer.settings.r % 2 != 0 && linear_like(m))
      throw ConfigError(layer.settings.rank_pattern_key ? "rank_pattern" : "r",
                        std::to_string(layer.settings.r),
                        "Orthogonal initialization requires the LoRA rank to be even (module `" +
                            m.key + "`)",
                        "use an even rank or another init_lora_weights");
    if (cfg.lora_bias && !m.has_bias)
      warn("`lora_bias=True` was passed but the targeted layer `" + m.key +
           "` has no bias. This means that merging LoRA weights won't be possible.");
    plan.layers.push_back(std::move(layer));
  }

  if (plan.layers.empty()) {
    std::string candidates;
    for (const auto& m : modules)
      if ((linear_like(m) || m.kind == ModuleKind::Embedding || m.kind == ModuleKind::Conv) && !inside_lora(m.key) &&
          m.kind != ModuleKind::LoraLayer) {
        auto dot = m.key.rfind('.');
        std::string leaf = dot == std::string::npos ? m.key : m.key.substr(dot + 1);
        if (candidates.find("`" + leaf + "`") == std::string::npos)
          candidates += (candidates.empty() ? "" : ", ") + ("`" + leaf + "`");
      }
    std::string hint = candidates.empty() ? std::string(" The model has no Linear/Embedding/Conv layer.")
                                          : " Layers that can be targeted: " + candidates + ".";
    if (!plan.excluded.empty() && plan.unmatched.empty())
      throw TargetNotFoundError("All modules were excluded. Check `target_modules`, "
                                "`exclude_modules` and `modules_to_save`." + hint);
    if (plan.excluded.empty() && !cfg.target_modules.truthy())
      throw TargetNotFoundError("No `target_modules` passed and no `target_parameters` found." + hint);
    if (plan.excluded.empty()) {
      std::string what = cfg.target_modules.is_regex() ? "\"" + cfg.target_modules.pattern() + "\""
                                                       : "{";
      if (cfg.target_modules.is_list()) {
        for (std::size_t i = 0; i < cfg.target_modules.names().size(); ++i)
          what += (i ? ", " : "") + ("'" + cfg.target_modules.names()[i] + "'");
        what += "}";
      }
      std::string note;
      if (cfg.layers_to_transform)
        note = " Note: layers_to_transform / layers_pattern also filter the matches.";
      throw TargetNotFoundError("Target modules " + what + " not found in the base model." + note + hint);
    }
    throw TargetNotFoundError("No modules were targeted for adaptation: every match was excluded "
                              "by `exclude_modules` or `modules_to_save`." + hint);
  }
  if (cfg.exclude_modules.truthy() && plan.excluded.empty())
    warn("exclude_modules was given but no modules were excluded. Please check that "
         "exclude_modules was set correctly.");
  return plan;
}

}  // namespace peft
