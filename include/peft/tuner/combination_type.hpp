#pragma once
/// add_weighted_adapter's combination_type (PEFT's spellings: "svd", "linear", "cat", "ties",
/// "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune",
/// "magnitude_prune_svd"), parsed once from text with parse_combination_type.

#include <cstddef>
#include <iterator>
#include <string>

#include "peft/error.hpp"

namespace peft {

enum class CombinationType {
  svd,
  linear,
  cat,
  ties,
  ties_svd,
  dare_linear,
  dare_ties,
  dare_linear_svd,
  dare_ties_svd,
  magnitude_prune,
  magnitude_prune_svd,
};

namespace detail {
/// A ConfigError about an argument of add_weighted_adapter: `add_weighted_adapter.<field> = ...`.
inline ConfigError weighted_adapter_error(const std::string& field, const std::string& value,
                                          const std::string& problem, const std::string& hint) {
  return ConfigError::about("add_weighted_adapter", field, value, problem, hint);
}

inline constexpr const char* kCombinationTypeNames[] = {
    "svd",       "linear",          "cat",           "ties",           "ties_svd",           "dare_linear",
    "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd"};

/// The hint of a bad value: the valid set.
inline std::string combination_type_hint() {
  std::string out = "use one of ";
  for (std::size_t i = 0; i < std::size(kCombinationTypeNames); ++i)
    out += (i ? ", " : "") + std::string(kCombinationTypeNames[i]);
  return out;
}
}  // namespace detail

/// PEFT's spelling; ConfigError (subject add_weighted_adapter) for a value outside the enum.
inline std::string to_string(CombinationType t) {
  const auto i = static_cast<std::size_t>(t);
  if (i >= std::size(detail::kCombinationTypeNames))
    throw detail::weighted_adapter_error("combination_type", std::to_string(i), "Invalid combination_type",
                                         detail::combination_type_hint());
  return detail::kCombinationTypeNames[i];
}

/// The type PEFT spells `s`; ConfigError (subject add_weighted_adapter) naming `s` and the
/// valid set otherwise.
inline CombinationType parse_combination_type(const std::string& s) {
  for (std::size_t i = 0; i < std::size(detail::kCombinationTypeNames); ++i)
    if (s == detail::kCombinationTypeNames[i]) return static_cast<CombinationType>(i);
  throw detail::weighted_adapter_error("combination_type", "\"" + s + "\"", "Invalid combination_type",
                                       detail::combination_type_hint());
}

/// True for the *svd types (combine the deltas, then factor them by SVD).
inline bool is_svd_combination(CombinationType t) {
  switch (t) {
    case CombinationType::svd:
    case CombinationType::ties_svd:
    case CombinationType::dare_linear_svd:
    case CombinationType::dare_ties_svd:
    case CombinationType::magnitude_prune_svd: return true;
    default: return false;
  }
}

/// The function F an *svd type applies to the deltas (svd -> linear, ties_svd -> ties, ...);
/// any other type is its own F.
inline CombinationType combination_function(CombinationType t) {
  switch (t) {
    case CombinationType::svd: return CombinationType::linear;
    case CombinationType::ties_svd: return CombinationType::ties;
    case CombinationType::dare_linear_svd: return CombinationType::dare_linear;
    case CombinationType::dare_ties_svd: return CombinationType::dare_ties;
    case CombinationType::magnitude_prune_svd: return CombinationType::magnitude_prune;
    default: return t;
  }
}

}  // namespace peft
