#pragma once
/// rank_pattern / alpha_pattern resolution (docs/matching.md#rank-and-alpha-patterns) and the resulting
/// per-layer scaling.
///
///   get_pattern_key: first P (insertion order) with re.match("(.*\.)?(" + P + ")$", key)
///   r = rank_pattern[P_r] or config.r;  alpha = alpha_pattern[P_a] or config.lora_alpha
///   scaling = alpha / r, or alpha / sqrt(r) with use_rslora (double arithmetic, as in Python)
///
/// Quirk (kept): PEFT writes the maps key-sorted, so overlapping patterns may resolve differently
/// after a save/load round trip. We iterate in insertion order and keep file order on load.

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/regex.hpp"

namespace peft {

/// Compiled patterns of one map, in order.
class PatternKeyResolver {
 public:
  template <class V>
  PatternKeyResolver(const PatternMap<V>& map, const std::string& field) {
    for (const auto& e : map)
      compiled_.emplace_back(e.first, compile_python_regex("(.*\\.)?(" + e.first + ")$", field));
  }
  /// The first pattern matching `key`, or std::nullopt (PEFT then falls back to the default).
  std::optional<std::string> operator()(const std::string& key) const {
    for (const auto& c : compiled_)
      if (c.second.match(key)) return c.first;
    return std::nullopt;
  }

 private:
  std::vector<std::pair<std::string, PythonRegex>> compiled_;
};

/// One-shot get_pattern_key (std::nullopt = no pattern matched).
template <class V>
std::optional<std::string> get_pattern_key(const PatternMap<V>& map, const std::string& key) {
  return PatternKeyResolver(map, "pattern")(key);
}

/// scaling = alpha / r, or alpha / sqrt(r) with rslora.
inline double lora_scaling(double alpha, std::int64_t r, bool use_rslora) {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

/// What one targeted module gets.
struct LayerSettings {
  std::int64_t r = 0;
  Number lora_alpha;
  double scaling = 0.0;
  std::optional<std::string> rank_pattern_key;   ///< which pattern set r (nullopt = config.r)
  std::optional<std::string> alpha_pattern_key;  ///< which pattern set alpha
};

/// Resolves rank, alpha and scaling per module key for one config.
class LayerSettingsResolver {
 public:
  explicit LayerSettingsResolver(const LoraConfig& config)
      : r_(config.r),
        alpha_default_(config.lora_alpha),
        use_rslora_(config.use_rslora),
        rank_pattern_(config.rank_pattern),
        alpha_pattern_(config.alpha_pattern),
        rank_(config.rank_pattern, "rank_pattern"),
        alpha_(config.alpha_pattern, "alpha_pattern") {}

  /// Throws ConfigError when the resolved rank is not positive (PEFT: at layer creation).
  LayerSettings operator()(const std::string& key) const {
    LayerSettings s;
    s.rank_pattern_key = rank_(key);
    s.alpha_pattern_key = alpha_(key);
    s.r = s.rank_pattern_key ? *rank_pattern_.find(*s.rank_pattern_key) : r_;
    s.lora_alpha = s.alpha_pattern_key ? *alpha_pattern_.find(*s.alpha_pattern_key)
                                       : alpha_default_;
    if (s.r <= 0)
      throw ConfigError(s.rank_pattern_key ? "rank_pattern[\"" + *s.rank_pattern_key + "\"]" : "r",
                        std::to_string(s.r),
                        "`r` should be a positive integer value (module `" + key + "`)",
                        "use a rank >= 1, e.g. 8");
    s.scaling = lora_scaling(s.lora_alpha.value, s.r, use_rslora_);
    return s;
  }

 private:
  std::int64_t r_;
  Number alpha_default_;
  bool use_rslora_;
  PatternMap<std::int64_t> rank_pattern_;
  PatternMap<Number> alpha_pattern_;
  PatternKeyResolver rank_;
  PatternKeyResolver alpha_;
};

/// One-shot resolution for one key.
inline LayerSettings resolve_layer_settings(const LoraConfig& config, const std::string& key) {
  return LayerSettingsResolver(config)(key);
}

}  // namespace peft
