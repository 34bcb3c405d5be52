#pragma once
/// PEFT's task-vector combination functions (peft/utils/merge_utils.py), used by
/// add_weighted_adapter (docs/lifecycle.md#weighted-adapters) and usable on their own.
///
/// Each combines a stack T = [T_1 .. T_n] of same-shaped tensors with weights λ (a 1-D tensor of
/// n values, broadcast over the trailing dims):
///   task_arithmetic   Σ λ_i T_i
///   magnitude_prune   Σ λ_i prune_magnitude(T_i)           keep the top k = int(density·numel) |values|
///   ties              disjoint_mean(λ_i prune_magnitude(T_i), sign election on the unweighted pruned T_i)
///   dare_linear       Σ λ_i prune_random(T_i)              mask ~ Bernoulli(density), kept values / density
///   dare_ties         disjoint_mean(λ_i prune_random(T_i), sign election)
/// Sign election: maj = +1 where Σ T_i >= 0 ("total") or Σ sign(T_i) >= 0 ("frequency"), else -1;
/// disjoint_mean = Σ(λ_i T_i [sign(T_i) == maj]) / max(Σ [sign(T_i) == maj], 1).
///
/// density >= 1 warns and does not prune; density < 0 is a ConfigError. The random pruning draws
/// from the default CPU generator with torch::bernoulli exactly like PEFT, so after
/// torch::manual_seed(s) the masks equal Python's.

#include <torch/types.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace merge {

enum class PruneMethod { magnitude, random };

namespace detail {
inline std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}
}  // namespace detail
/// The sign election of ties / dare_ties (add_weighted_adapter's majority_sign_method).
enum class MajoritySignMethod { total, frequency };

/// "total" / "frequency" (PEFT's spelling); anything else is a ConfigError (subject
/// add_weighted_adapter) naming the value and the valid set.
inline MajoritySignMethod parse_majority_sign_method(const std::string& s) {
  if (s == "total") return MajoritySignMethod::total;
  if (s == "frequency") return MajoritySignMethod::frequency;
  throw ConfigError::about("add_weighted_adapter", "majority_sign_method", "\"" + s + "\"",
                           "Unimplemented mask method", "use \"total\" or \"frequency\"");
}

/// PEFT's spelling; ConfigError (subject add_weighted_adapter) for a value outside the enum.
inline std::string to_string(MajoritySignMethod m) {
  switch (m) {
    case MajoritySignMethod::total: return "total";
    case MajoritySignMethod::frequency: return "frequency";
  }
  throw ConfigError::about("add_weighted_adapter", "majority_sign_method", std::to_string(static_cast<int>(m)),
                           "Unimplemented mask method", "use \"total\" or \"frequency\"");
}

/// Weights as PEFT passes them: `torch.tensor(list_of_python_floats)`, i.e. float32 (each double
/// rounded once), on `device`.
inline torch::Tensor weights_tensor(const std::vector<double>& weights, torch::Device device = torch::kCPU) {
  return torch::tensor(weights, torch::TensorOptions().dtype(torch::kFloat64))
      .to(torch::kFloat32)
      .to(device);
}

/// `weights` viewed as [n, 1, ..., 1] so it broadcasts over a stack of dim `stack_dim`.
inline torch::Tensor reshape_weights(const torch::Tensor& stack, const torch::Tensor& weights) {
  std::vector<std::int64_t> shape(weights.sizes().begin(), weights.sizes().end());
  while (static_cast<std::int64_t>(shape.size()) < stack.dim()) shape.push_back(1);
  return weights.view(shape);
}

/// Keep the k = int(density·numel) largest |values| (torch.topk on the flattened tensor, so ties
/// are broken like PEFT's), zero the rest.
inline torch::Tensor magnitude_based_pruning(const torch::Tensor& t, double density) {
  auto mask = torch::zeros_like(t).reshape(-1);
  const auto k = static_cast<std::int64_t>(density * static_cast<double>(t.numel()));
  auto top = std::get<1>(torch::topk(t.abs().reshape(-1), k, /*dim=*/-1, /*largest=*/true));
  mask.index_fill_(0, top, 1);
  return t * mask.reshape(t.sizes());
}

/// mask = bernoulli(full_like(t, density)) from the default generator; t·mask (÷ density when
/// `rescale`).
inline torch::Tensor random_pruning(const torch::Tensor& t, double density, bool rescale) {
  auto mask = torch::bernoulli(torch::full_like(t, density));
  auto pruned = t * mask;
  return rescale ? pruned / density : pruned;
}

/// PEFT's prune(): density >= 1 warns and returns `t` unchanged; density < 0 throws; density 0
/// with `rescale` throws too (PEFT divides 0 by 0 and returns NaN everywhere).
inline torch::Tensor prune(const torch::Tensor& t, double density, PruneMethod method, bool rescale = false) {
  if (density >= 1) {
    warn("The density " + detail::number_text(density) + " is greater than or equal to 1, no pruning will be performed.");
    return t;
  }
  if (!(density >= 0))
    throw ConfigError::about("merge::prune", "density", detail::number_text(density), "Density should be >= 0",
                             "use a fraction of values to keep in [0, 1]");
  if (method == PruneMethod::magnitude) return magnitude_based_pruning(t, density);
  if (rescale && density == 0)
    throw ConfigError::about("merge::prune", "density", "0",
                             "random pruning with density 0 keeps nothing and rescales by 1/0 (NaN)",
                             "use a density in (0, 1]");
  return random_pruning(t, density, rescale);
}

/// Boolean mask, same shape as the stack: sign(T_i) == majority sign (stack on dim 0).
inline torch::Tensor calculate_majority_sign_mask(const torch::Tensor& stack,
                                                  MajoritySignMethod method = MajoritySignMethod::total) {
  auto sign = stack.sign();
  auto magnitude = method == MajoritySignMethod::total ? stack.sum(0) : sign.sum(0);
  auto majority = torch::where(magnitude >= 0, torch::ones_like(magnitude), -torch::ones_like(magnitude));
  return sign == majority;
}

/// Σ(T_i·mask_i) / max(Σ mask_i, 1) over dim 0.
inline torch::Tensor disjoint_merge(const torch::Tensor& stack, const torch::Tensor& mask) {
  auto mixed = (stack * mask).sum(0);
  auto kept = mask.sum(0);
  return mixed / torch::clamp(kept, 1);
}

inline torch::Tensor weighted_sum(const torch::Tensor& stack, const torch::Tensor& weights) {
  return (stack * reshape_weights(stack, weights)).sum(0);
}

inline torch::Tensor task_arithmetic(const std::vector<torch::Tensor>& tensors, const torch::Tensor& weights) {
  return weighted_sum(torch::stack(tensors, 0), weights);
}

inline std::vector<torch::Tensor> pruned(const std::vector<torch::Tensor>& tensors, double density,
                                         PruneMethod method, bool rescale) {
  std::vector<torch::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back(prune(t, density, method, rescale));
  return out;
}

inline torch::Tensor magnitude_prune(const std::vector<torch::Tensor>& tensors, const torch::Tensor& weights,
                                     double density) {
  return weighted_sum(torch::stack(pruned(tensors, density, PruneMethod::magnitude, false), 0), weights);
}

inline torch::Tensor ties(const std::vector<torch::Tensor>& tensors, const torch::Tensor& weights, double density,
                          MajoritySignMethod method = MajoritySignMethod::total) {
  auto stack = torch::stack(pruned(tensors, density, PruneMethod::magnitude, false), 0);
  // The sign is elected on the unweighted pruned tensors, as in PEFT.
  auto mask = calculate_majority_sign_mask(stack, method);
  return disjoint_merge(stack * reshape_weights(stack, weights), mask);
}

inline torch::Tensor dare_linear(const std::vector<torch::Tensor>& tensors, const torch::Tensor& weights,
                                 double density) {
  return weighted_sum(torch::stack(pruned(tensors, density, PruneMethod::random, true), 0), weights);
}

inline torch::Tensor dare_ties(const std::vector<torch::Tensor>& tensors, const torch::Tensor& weights,
                               double density, MajoritySignMethod method = MajoritySignMethod::total) {
  auto stack = torch::stack(pruned(tensors, density, PruneMethod::random, true), 0);
  auto mask = calculate_majority_sign_mask(stack, method);
  return disjoint_merge(stack * reshape_weights(stack, weights), mask);
}

}  // namespace merge
}  // namespace peft
