#pragma once
/// Levenshtein distance, for the "did you mean" hints of the config readers (LoraConfig keys in
/// config/config_json.cpp, training YAML keys in train/train_config.cpp).

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace peft::detail {

/// Insertions, deletions and substitutions needed to turn `a` into `b`. O(|a|·|b|) time.
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace peft::detail
