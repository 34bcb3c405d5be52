#pragma once
/// Target matching: PEFT's `check_target_module_exists(config, key)` (docs/matching.md#the-per-key-test)
/// as a pure
/// function of a config and a module key. Build a TargetMatcher once per config (it compiles the
/// regexes) and ask it about many keys.
///
///   exclude_modules   str: re.fullmatch | list: key == e or key ends with "." + e  -> Excluded
///   modules_to_save   re.match("(^|.*\.)" + m + "($|\..*)", key)                  -> Excluded
///   target_modules    str: re.fullmatch (no layer filter) | list: exact key (no layer filter)
///                     or "."-suffix, then the layers_to_transform / layers_pattern filter.

#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/regex.hpp"

namespace peft {

enum class MatchResult {
  NoMatch,   ///< not a target
  Match,     ///< wrap this module
  Excluded,  ///< hit by exclude_modules or modules_to_save (PEFT's falsy "excluded" marker)
};

/// True when `key` equals `name` or ends with "." + name (PEFT's list rule).
inline bool key_matches_suffix(const std::string& key, const std::string& name) {
  if (key == name) return true;
  return key.size() > name.size() && key.compare(key.size() - name.size(), name.size(), name) == 0 &&
         key[key.size() - name.size() - 1] == '.';
}

/// The names of a list-form target_modules / exclude_modules, hashed: a key is tested against
/// each of its own "."-suffixes (a few) instead of against every name (100k names stay fast).
class ModuleNameSet {
 public:
  explicit ModuleNameSet(const std::vector<std::string>& names) : names_(names.begin(), names.end()) {}
  bool contains(const std::string& key) const { return names_.count(key) > 0; }
  /// Some name equals `key` or is a "."-suffix of it (key_matches_suffix for any name).
  bool matches_suffix_of(const std::string& key) const {
    if (contains(key)) return true;
    for (std::size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1))
      if (names_.count(key.substr(dot + 1))) return true;
    return false;
  }

 private:
  std::unordered_set<std::string> names_;
};

/// The layer index a key lies in, as PEFT's layers_to_transform filter reads it: the digits of the
/// first `.<pattern>.<digits>.` segment (any segment when `patterns` is empty; patterns tried in
/// order, first match wins). std::nullopt when no pattern matches.
class LayerIndexReader {
 public:
  explicit LayerIndexReader(const std::optional<LayerPatterns>& patterns) {
    if (!patterns || !patterns->truthy()) {
      regexes_.emplace_back(R"(.*?\.[^.]*\.(\d+)\.)", "layers_pattern");
      return;
    }
    for (const auto& p : patterns->values)
      regexes_.push_back(compile_python_regex(".*?\\." + p + "\\.(\\d+)\\.", "layers_pattern"));
  }
  std::optional<std::int64_t> operator()(const std::string& key) const {
    for (const auto& re : regexes_) {
      std::vector<std::string> groups;
      if (re.match(key, &groups)) {
        // int("001") == 1; very long digit runs saturate instead of overflowing.
        const std::string& digits = groups.at(0);
        std::int64_t v = 0;
        for (char c : digits) {
          if (v > (INT64_MAX - 9) / 10) return INT64_MAX;
          v = v * 10 + (c - '0');
        }
        return v;
      }
    }
    return std::nullopt;
  }

 private:
  std::vector<PythonRegex> regexes_;
};

/// PEFT's modules_to_save test for entry `m`: re.match("(^|.*\.)" + m + "($|\..*)", key), the
/// entry inserted raw (not escaped), exactly like PEFT.
inline PythonRegex modules_to_save_regex(const std::string& m) {
  return compile_python_regex("(^|.*\\.)" + m + "($|\\..*)", "modules_to_save");
}

/// Precompiled matcher for one config.
class TargetMatcher {
 public:
  explicit TargetMatcher(const LoraConfig& config)
      : target_(config.target_modules),
        exclude_(config.exclude_modules),
        layers_to_transform_(config.layers_to_transform),
        layer_index_(config.layers_pattern),
        target_names_(target_.names()),
        exclude_names_(exclude_.names()) {
    if (target_.is_regex()) target_re_ = compile_python_regex(target_.pattern(), "target_modules");
    if (exclude_.is_regex() && exclude_.truthy())
      exclude_re_ = compile_python_regex(exclude_.pattern(), "exclude_modules");
    if (config.modules_to_save)
      for (const auto& m : *config.modules_to_save) save_res_.push_back(modules_to_save_regex(m));
  }

  MatchResult operator()(const std::string& key) const {
    if (exclude_re_) {
      if (exclude_re_->fullmatch(key)) return MatchResult::Excluded;
    } else if (exclude_.is_list() && exclude_names_.matches_suffix_of(key)) {
      return MatchResult::Excluded;
    }
    for (const auto& re : save_res_)
      if (re.match(key)) return MatchResult::Excluded;
    if (target_re_) return target_re_->fullmatch(key) ? MatchResult::Match : MatchResult::NoMatch;
    if (!target_.is_list()) return MatchResult::NoMatch;  // None: nothing to match against
    if (target_names_.contains(key)) return MatchResult::Match;  // exact keys bypass the layer filter
    if (!target_names_.matches_suffix_of(key)) return MatchResult::NoMatch;
    if (layers_to_transform_ && !layers_to_transform_->values.empty()) {  // [] means no filter
      auto idx = layer_index_(key);
      if (!idx) return MatchResult::NoMatch;
      const auto& wanted = layers_to_transform_->values;
      if (std::find(wanted.begin(), wanted.end(), *idx) == wanted.end()) return MatchResult::NoMatch;
    }
    return MatchResult::Match;
  }

 private:
  ModuleSpec target_;
  ModuleSpec exclude_;
  std::optional<LayerIndices> layers_to_transform_;
  LayerIndexReader layer_index_;
  ModuleNameSet target_names_;
  ModuleNameSet exclude_names_;
  std::optional<PythonRegex> target_re_;
  std::optional<PythonRegex> exclude_re_;
  std::vector<PythonRegex> save_res_;
};

/// One-shot form of TargetMatcher (compiles the config's regexes on every call).
inline MatchResult check_target_module_exists(const LoraConfig& config, const std::string& key) {
  return TargetMatcher(config)(key);
}

}  // namespace peft
