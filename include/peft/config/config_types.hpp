#pragma once
/// Value types that LoraConfig fields are made of: Python's int-or-float, one-or-many,
/// list-or-regex module selectors, bool-or-name init, and insertion-ordered pattern maps.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace peft {

/// A Python number that remembers whether it was an int (`8`) or a float (`8.0`, `2.5`), so a
/// saved adapter_config.json writes it back the same way. Converts to double for arithmetic.
struct Number {
  double value = 0.0;
  bool integral = true;

  constexpr Number() = default;
  constexpr Number(int v) : value(v), integral(true) {}
  constexpr Number(long v) : value(static_cast<double>(v)), integral(true) {}
  constexpr Number(long long v) : value(static_cast<double>(v)), integral(true) {}
  constexpr Number(double v) : value(v), integral(false) {}
  constexpr operator double() const { return value; }

  friend bool operator==(const Number& a, const Number& b) { return a.value == b.value; }
  friend bool operator!=(const Number& a, const Number& b) { return !(a == b); }
};

/// A field that Python accepts as a single value or a list (`layers_to_transform: 1` or `[0, 2]`).
/// `scalar` records which form was given so that it serialises back unchanged.
template <class T>
struct OneOrMany {
  std::vector<T> values;
  bool scalar = false;

  OneOrMany() = default;
  OneOrMany(std::initializer_list<T> list) : values(list) {}
  OneOrMany(std::vector<T> list) : values(std::move(list)) {}
  template <class U, class = std::enable_if_t<std::is_convertible<U, T>::value &&
                                              !std::is_same<std::decay_t<U>, OneOrMany>::value>>
  OneOrMany(U&& single) : values{T(std::forward<U>(single))}, scalar(true) {}

  /// Python truthiness: `0`, `[]` and `""`-like single values are falsy.
  bool truthy() const {
    if (!scalar) return !values.empty();
    if constexpr (std::is_same<T, std::string>::value) return !values.front().empty();
    else return values.front() != T{};
  }
  friend bool operator==(const OneOrMany& a, const OneOrMany& b) {
    return a.values == b.values && a.scalar == b.scalar;
  }
};

using LayerIndices = OneOrMany<std::int64_t>;   ///< layers_to_transform
using LayerPatterns = OneOrMany<std::string>;   ///< layers_pattern

/// `target_modules` / `exclude_modules`: None, a list (exact key or `.`-suffix match) or a regex
/// string (full match; the string `"all-linear"`, any case, is the all-linear keyword).
/// Lists are de-duplicated (PEFT turns them into a set) but keep their first-seen order.
class ModuleSpec {
 public:
  enum class Kind { None, List, Regex };

  ModuleSpec() = default;
  ModuleSpec(std::nullopt_t) {}
  ModuleSpec(const char* regex) : kind_(Kind::Regex), pattern_(regex) {}
  ModuleSpec(std::string regex) : kind_(Kind::Regex), pattern_(std::move(regex)) {}
  ModuleSpec(std::initializer_list<std::string> names) : ModuleSpec(std::vector<std::string>(names)) {}
  ModuleSpec(std::vector<std::string> names) : kind_(Kind::List) {
    // A set, in first-seen order; hashed so that 100k names take milliseconds, not minutes.
    std::unordered_set<std::string> seen;
    for (auto& n : names)
      if (seen.insert(n).second) names_.push_back(std::move(n));
  }
  static ModuleSpec list(std::vector<std::string> names) { return ModuleSpec(std::move(names)); }
  static ModuleSpec regex(std::string pattern) { return ModuleSpec(std::move(pattern)); }

  Kind kind() const noexcept { return kind_; }
  bool is_none() const noexcept { return kind_ == Kind::None; }
  bool is_list() const noexcept { return kind_ == Kind::List; }
  bool is_regex() const noexcept { return kind_ == Kind::Regex; }
  const std::vector<std::string>& names() const noexcept { return names_; }
  const std::string& pattern() const noexcept { return pattern_; }
  /// The `"all-linear"` keyword (only as a string, any letter case; a list entry is a suffix).
  bool is_all_linear() const {
    if (!is_regex() || pattern_.size() != 10) return false;
    std::string lower = pattern_;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lower == "all-linear";
  }
  /// Python truthiness: None, an empty list and "" are falsy.
  bool truthy() const {
    return (is_list() && !names_.empty()) || (is_regex() && !pattern_.empty());
  }
  friend bool operator==(const ModuleSpec& a, const ModuleSpec& b) {
    if (a.kind_ != b.kind_) return false;
    if (a.is_regex()) return a.pattern_ == b.pattern_;
    // Lists are sets in PEFT: order is not meaningful.
    if (a.names_.size() != b.names_.size()) return false;
    const std::unordered_set<std::string> theirs(b.names_.begin(), b.names_.end());
    return std::all_of(a.names_.begin(), a.names_.end(), [&](const std::string& n) { return theirs.count(n) > 0; });
  }
  friend bool operator!=(const ModuleSpec& a, const ModuleSpec& b) { return !(a == b); }

 private:
  Kind kind_ = Kind::None;
  std::vector<std::string> names_;
  std::string pattern_;
};

/// What `init_lora_weights` asks for, independent of its spelling.
enum class InitMethod {
  Default,     ///< True: kaiming-uniform A (a=sqrt(5)), zero B
  Random,      ///< False: random A and B (adapter is not an identity at start)
  Gaussian,    ///< normal(0, 1/r) A, zero B
  Eva,         ///< data-driven (SVD of layer inputs)
  Olora,       ///< QR of the base weight
  Pissa,       ///< full SVD of the base weight
  PissaNiter,  ///< randomised SVD with N subspace iterations ("pissa_niter_N")
  Corda,       ///< data-driven covariance (needs calibration)
  Loftq,       ///< quantisation-aware (needs loftq_config)
  Orthogonal,  ///< orthogonal A and B with B @ A == 0 (even r)
  Mica,
  LoraGa,
};

/// `init_lora_weights`: a bool or a strategy name. Names are matched case-insensitively
/// ("OLoRA", "GAUSSIAN") and written back exactly as given, like PEFT.
class InitLoraWeights {
 public:
  InitLoraWeights(bool value = true) : is_bool_(true), flag_(value) {}
  InitLoraWeights(const char* name) : is_bool_(false), name_(name) {}
  InitLoraWeights(std::string name) : is_bool_(false), name_(std::move(name)) {}

  bool is_bool() const noexcept { return is_bool_; }
  bool as_bool() const noexcept { return flag_; }
  const std::string& name() const noexcept { return name_; }
  /// The name in lower case ("" for a bool).
  std::string lower_name() const {
    std::string s = name_;
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  }
  /// Text for messages: `True`, `False` or the name.
  std::string describe() const { return is_bool_ ? (flag_ ? "True" : "False") : name_; }

  friend bool operator==(const InitLoraWeights& a, const InitLoraWeights& b) {
    return a.is_bool_ == b.is_bool_ && (a.is_bool_ ? a.flag_ == b.flag_ : a.name_ == b.name_);
  }

 private:
  bool is_bool_;
  bool flag_ = true;
  std::string name_;
};

/// An insertion-ordered string -> V map (rank_pattern, alpha_pattern). Order matters: the first
/// pattern that matches a module wins. `set` on an existing key keeps its position.
template <class V>
class PatternMap {
 public:
  using Entry = std::pair<std::string, V>;
  PatternMap() = default;
  PatternMap(std::initializer_list<Entry> entries) {
    for (const auto& e : entries) set(e.first, e.second);
  }
  /// O(1) on average: a config file with 100k patterns must not cost 100k² comparisons.
  void set(const std::string& key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      entries_[it->second].second = std::move(value);
      return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(key, std::move(value));
  }
  const V* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  friend bool operator==(const PatternMap& a, const PatternMap& b) { return a.entries_ == b.entries_; }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // key -> position in entries_
};

}  // namespace peft
