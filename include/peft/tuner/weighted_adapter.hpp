#pragma once
/// add_weighted_adapter: a new LoRA adapter combined from existing ones (PEFT 0.20.0
/// LoraModel.add_weighted_adapter, docs/lifecycle.md#weighted-adapters).
///
///   peft::add_weighted_adapter(pm, {"default", "other"}, {0.7, 0.5}, "mix",
///                              {.combination_type = peft::CombinationType::ties, .density = 0.5});  // C++20
///   o.combination_type = peft::parse_combination_type("ties");   // from PEFT's spelling
///   pm.set_adapter("mix");
///
/// New rank R: linear / ties / dare_linear / dare_ties / magnitude_prune need equal source ranks
/// ρ_i = max(r_i, rank_pattern_i values) and use R = ρ; cat: R = Σ ρ_i; *svd: R = svd_rank or max ρ_i.
/// New config = adapters[0]'s config with r = lora_alpha = R, rank/alpha_pattern {} and
/// target_modules "(t1)|(t2)|.." (regex sources) or the union (list sources). Per layer, with
/// w_i the user weight and s_i the source scaling (only sources present in the layer):
///   cat:       A = [w_i·s_i·A_i] stacked on rows, B = [B_i] on columns (sum of the sources, exactly)
///   linear, ties, dare_linear, dare_ties, magnitude_prune (factor-wise, F from tuner/combination_ops.hpp):
///              A = F({A_i}, sign(c_i)·√|c_i|), B = F({B_i}, √|c_i|),  c_i = w_i·s_i
///   *svd:      D = F({Δ_i}, w_i·s_i) (Δ_i already holds s_i: w_i·s_i²·B_iA_i, PEFT's quirk),
///              D.T for fan_in_fan_out; U,S,Vh = svd(D); B = U[:, :R]·diag(S[:R]), A = Vh[:R]
///              (both clamped to ±quantile(|[U, Vh]|, svd_clamp) when svd_clamp is set).
///
/// Decisions on PEFT's quirks (and where peft-cpp is stricter):
/// * An existing `adapter_name`: PEFT returns silently; we warn and return false (nothing changes).
/// * use_rslora is inherited, so the new adapter's scaling is R/√R = √R, not 1 (PEFT 0.20.0; fixed
///   upstream later). lora_bias, init_lora_weights, dropout, modules_to_save are inherited too: the
///   new adapter gets a fresh copy of the *original* module for modules_to_save, and its lora_B
///   bias keeps its init (weights of A and B are overwritten, the bias is not).
/// * The new adapter is injected like add_adapter (its init draws from the CPU generator, so the
///   dare masks that follow are the ones PEFT draws after the same torch::manual_seed), frozen,
///   and not activated.
/// * The *svd types scale each delta by s_i twice (Δ_i includes s_i and the weight is w_i·s_i),
///   as PEFT does. Weights are rounded to float32 like PEFT's torch.tensor(list).
/// * Stricter than PEFT, checked before anything changes: weights.size() must equal
///   adapters.size() (PEFT zips); unknown combination_type, majority_sign_method, negative
///   svd_rank, svd_clamp outside [0, 1], a missing density for a pruning type, density < 0 (and
///   0 for dare, a 0/0 in PEFT) are ConfigErrors even where PEFT would ignore them; a targeted
///   layer without any source adapter (possible with layers_to_transform / exclude_modules,
///   PEFT's IndexError) and, for the factor-wise types, sources of unequal rank on one layer
///   (rank_pattern; PEFT's torch.stack error) are Errors; sources whose init rewrites the base
///   weights (pissa, olora, corda, loftq) or computes from data (eva) are refused, because the
///   inherited init would run again on the base model.
/// * Where a combined factor is smaller than the allocated [R, in] / [out, R] (rank_pattern with
///   the factor-wise types, svd_rank beyond the matrix rank) it is written into the leading
///   rows/columns and the rest stays zero; PEFT replaces the parameter by the smaller tensor (a
///   saved file its own loader rejects) or fails.
/// * svd_driver (cuSOLVER only: "gesvd", "gesvdj", "gesvda") requires CUDA adapters; on the CPU it
///   is a ConfigError, like torch's own error, raised before any change.
/// * Layer types as in PEFT: the factors are lora_A/lora_B or an Embedding's lora_embedding_A/B;
///   cat concatenates A along dim 0 and B along dim 1 whatever the factor's other dims (conv
///   kernels); the svd types transpose an Embedding's delta (W is [num, dim]) and flatten a
///   Conv2d's delta to [out, in·kh·kw] before the SVD, then reshape the factors to the conv's.
///   PEFT's svd path reshapes Conv2d only (a Conv1d/Conv3d delta would reach torch.linalg.svd as
///   a batch of matrices), so the svd types refuse Conv1d/Conv3d layers; cat and the factor-wise
///   types take them.
/// On any error thrown after the new adapter was injected (a failing SVD) it is deleted again.

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/tuner/injection.hpp"
#include "peft/tuner/combination_ops.hpp"
#include "peft/tuner/combination_type.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"

namespace peft {

struct WeightedAdapterOptions {
  /// svd, linear, cat, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd,
  /// magnitude_prune, magnitude_prune_svd (tuner/combination_type.hpp). With one source adapter
  /// PEFT always uses linear.
  CombinationType combination_type = CombinationType::svd;
  std::optional<std::int64_t> svd_rank;  ///< *svd: rank of the result (None or 0: max source rank)
  std::optional<double> svd_clamp;       ///< *svd: quantile in [0, 1] to clamp U and Vh to
  bool svd_full_matrices = true;         ///< torch.linalg.svd(full_matrices=...)
  std::optional<std::string> svd_driver; ///< cuSOLVER driver (CUDA only)
  std::optional<double> density;         ///< fraction kept by ties / dare / magnitude_prune types
  /// ties types: total or frequency (merge::parse_majority_sign_method reads PEFT's spelling)
  merge::MajoritySignMethod majority_sign_method = merge::MajoritySignMethod::total;
};

namespace detail {

enum class WeightedKind { cat, factorwise, svd };

struct WeightedPlan {
  CombinationType combination_type = CombinationType::svd;  ///< after the one-source -> linear rule
  WeightedKind kind = WeightedKind::factorwise;
  /// linear/ties/dare_linear/dare_ties/magnitude_prune (svd: its F)
  CombinationType base_function = CombinationType::linear;
  std::int64_t rank = 0;
  LoraConfig config;
};

/// F of the combination type applied to a stack with weights.
inline torch::Tensor weighted_combine(CombinationType function, const std::vector<torch::Tensor>& tensors,
                                      const torch::Tensor& weights, const WeightedAdapterOptions& o) {
  switch (function) {
    case CombinationType::linear: return merge::task_arithmetic(tensors, weights);
    case CombinationType::ties: return merge::ties(tensors, weights, *o.density, o.majority_sign_method);
    case CombinationType::dare_linear: return merge::dare_linear(tensors, weights, *o.density);
    case CombinationType::dare_ties: return merge::dare_ties(tensors, weights, *o.density, o.majority_sign_method);
    default: return merge::magnitude_prune(tensors, weights, *o.density);
  }
}

/// Write `value` into `param` (same dtype as `param`); a smaller value fills the leading block.
inline void weighted_assign(torch::Tensor& param, const torch::Tensor& value) {
  if (value.sizes() == param.sizes()) {
    param.copy_(value);
    return;
  }
  param.zero_();
  param.slice(0, 0, value.size(0)).slice(1, 0, value.size(1)).copy_(value);
}

inline WeightedPlan plan_weighted_adapter(LoraModel& pm, const std::vector<std::string>& adapters,
                                          const std::vector<double>& weights, const std::string& adapter_name,
                                          const WeightedAdapterOptions& o) {
  WeightedPlan plan;
  if (adapters.empty())
    throw weighted_adapter_error("adapters", "[]", "needs at least one source adapter", "name the adapters to combine");
  if (weights.size() != adapters.size())
    throw weighted_adapter_error("weights", std::to_string(weights.size()) + " values",
                                 "needs one weight per adapter (" + std::to_string(adapters.size()) + " adapters)",
                                 "pass exactly one weight per source adapter");
  for (const auto& a : adapters)
    if (std::find(pm.adapter_names().begin(), pm.adapter_names().end(), a) == pm.adapter_names().end())
      throw Error("Adapter " + a + " does not exist (hint: add or load it before combining)");
  for (const auto& a : adapters)
    if (pm.peft_config(a).target_parameters && !pm.peft_config(a).target_parameters->empty())
      throw ConfigError("target_parameters", "[...]",
                        "add_weighted_adapter does not support targeting nn.Parameter (problematic adapter '" + a +
                            "')",
                        "combine adapters that target modules only");
  // Enums hold PEFT's closed sets; a value cast from outside them is refused here, in PEFT's order.
  to_string(o.combination_type);
  merge::to_string(o.majority_sign_method);

  // Two sources owning the same modules_to_save copy cannot be combined.
  // (in-layer or value-swapped copies alike)
  const std::size_t clashes = pm.modules_to_save_conflicts(adapters).size();
  if (clashes)
    throw Error("Cannot add weighted adapters if they target the same module with modules_to_save, but found " +
                std::to_string(clashes) + " such instance(s).");

  plan.combination_type = adapters.size() == 1 ? CombinationType::linear : o.combination_type;
  const CombinationType type = plan.combination_type;
  const std::string type_text = "\"" + to_string(type) + "\"";
  std::vector<std::int64_t> ranks;
  for (const auto& a : adapters) {
    const auto& c = pm.peft_config(a);
    std::int64_t r = c.r;
    for (const auto& [pattern, value] : c.rank_pattern) r = std::max(r, value);
    ranks.push_back(r);
  }
  if (type == CombinationType::cat) {
    plan.kind = WeightedKind::cat;
    for (auto r : ranks) plan.rank += r;
  } else if (is_svd_combination(type)) {
    plan.kind = WeightedKind::svd;
    plan.base_function = combination_function(type);
    if (o.svd_rank && *o.svd_rank < 0)
      throw weighted_adapter_error("svd_rank", std::to_string(*o.svd_rank), "the rank of the combined adapter must be positive",
                                   "leave it unset to use the largest source rank");
    plan.rank = o.svd_rank && *o.svd_rank > 0 ? *o.svd_rank : *std::max_element(ranks.begin(), ranks.end());
    if (o.svd_clamp && !(*o.svd_clamp >= 0.0 && *o.svd_clamp <= 1.0))
      throw weighted_adapter_error("svd_clamp", merge::detail::number_text(*o.svd_clamp),
                                   "the clamp quantile must lie in [0, 1]", "use e.g. 0.99, or leave it unset");
    if (o.svd_driver) {
      const auto& d = *o.svd_driver;
      if (d != "gesvd" && d != "gesvdj" && d != "gesvda")
        throw weighted_adapter_error("svd_driver", "\"" + d + "\"", "unknown cuSOLVER driver",
                                     "use \"gesvd\", \"gesvdj\", \"gesvda\" or leave it unset");
      for (const auto& [key, layer] : pm.lora_layers())
        for (const auto& a : adapters)
          if (layer->has_adapter(a) && !layer->lora_factors(a).A.device().is_cuda())
            throw weighted_adapter_error("svd_driver", "\"" + d + "\"",
                                         "torch.linalg.svd accepts a driver only for CUDA inputs (the adapters are "
                                         "on " + layer->lora_factors(a).A.device().str() + ")",
                                         "leave svd_driver unset on the CPU");
    }
  } else {
    plan.kind = WeightedKind::factorwise;
    plan.base_function = type;
    for (auto r : ranks)
      if (r != ranks.front())
        throw weighted_adapter_error("combination_type", type_text,
                                     "All adapters must have the same r value when using combination_type linear, "
                                     "ties, dare_ties, dare_linear or magnitude_prune",
                                     "use \"cat\" or an svd type to combine adapters of different ranks");
    plan.rank = ranks.front();
  }
  if (plan.kind != WeightedKind::cat && plan.base_function != CombinationType::linear) {
    if (!o.density)
      throw weighted_adapter_error("density", "None", "combination_type " + type_text + " prunes and needs a density",
                                   "pass the fraction of values to keep, e.g. density = 0.5");
    if (!(*o.density >= 0))
      throw weighted_adapter_error("density", merge::detail::number_text(*o.density), "Density should be >= 0",
                                   "use a fraction of values to keep in [0, 1]");
    if (*o.density == 0 && (plan.base_function == CombinationType::dare_linear ||
                            plan.base_function == CombinationType::dare_ties))
      throw weighted_adapter_error("density", "0", "dare with density 0 keeps nothing and rescales by 1/0 (NaN)",
                                   "use a density in (0, 1]");
  }

  // The new config: a copy of the first source's with the combined rank and targets.
  std::vector<ModuleSpec::Kind> kinds;
  for (const auto& a : adapters) kinds.push_back(pm.peft_config(a).target_modules.kind());
  for (auto k : kinds)
    if (k != kinds.front())
      throw ConfigError("target_modules", "", "all adapter configs should follow the same target modules type. "
                        "Combining adapters with `target_modules` type being a mix of list/set and string is not "
                        "supported.", "combine adapters whose target_modules are all lists or all regex strings");
  LoraConfig cfg = pm.peft_config(adapters.front());
  switch (cfg.init_method()) {
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Corda:
    case InitMethod::Loftq:
    case InitMethod::Eva:
      throw ConfigError("init_lora_weights", cfg.init_lora_weights.describe(),
                        "add_weighted_adapter copies the first source's config, and this init would run again "
                        "(rewriting the base weights or needing data)",
                        "put an adapter with init_lora_weights=true first, or convert the adapter to plain LoRA");
    default: break;
  }
  if (kinds.front() == ModuleSpec::Kind::Regex) {
    std::string joined;
    for (const auto& a : adapters)
      joined += (joined.empty() ? "(" : "|(") + pm.peft_config(a).target_modules.pattern() + ")";
    cfg.target_modules = ModuleSpec::regex(joined);
  } else if (kinds.front() == ModuleSpec::Kind::List) {
    std::vector<std::string> names;
    for (const auto& a : adapters)
      for (const auto& n : pm.peft_config(a).target_modules.names()) names.push_back(n);
    cfg.target_modules = ModuleSpec::list(names);  // de-duplicated, first-seen order
  } else {
    throw ConfigError("target_modules", "None", "Invalid type found in target_modules",
                      "the source adapters have no resolved target_modules");
  }
  cfg.r = plan.rank;
  cfg.lora_alpha = Number(static_cast<long long>(plan.rank));
  cfg.rank_pattern = {};
  cfg.alpha_pattern = {};
  // Dry run of the injection: every layer that will get the new adapter must hold a source.
  // Its warnings are dropped: add_adapter repeats the same validation and planning.
  const ModuleTree tree(pm.model_ptr());
  TargetPlan targets;
  {
    ScopedWarningCapture dry_run;
    cfg.validate();
    targets = plan_targets(cfg, tree.infos);
  }
  plan.config = cfg;
  for (const auto& planned : targets.layers) {
    auto layer = std::dynamic_pointer_cast<LoraLayer>(tree.find(planned.key));
    std::vector<std::string> present;
    if (layer)
      for (const auto& a : adapters)
        if (layer->has_adapter(a)) present.push_back(a);
    if (present.empty())
      throw Error("add_weighted_adapter: module `" + planned.key + "` would get adapter `" + adapter_name +
                  "` but none of the source adapters is on it (No matching LoRAs found; hint: check "
                  "layers_to_transform / exclude_modules of `" + adapters.front() + "`, whose config is copied)");
    const std::string layer_type = layer->layer_type();
    if (plan.kind == WeightedKind::svd && (layer_type == "Conv1d" || layer_type == "Conv3d"))
      throw weighted_adapter_error("combination_type", type_text,
                                   "module `" + planned.key + "` is a lora." + layer_type +
                                       ": PEFT's svd combination reshapes Conv2d deltas only",
                                   "use \"cat\" or \"linear\" for adapters on Conv1d/Conv3d layers");
    if (plan.kind != WeightedKind::factorwise) continue;
    for (const auto& a : present)
      if (layer->lora_factors(a).A.sizes() != layer->lora_factors(present.front()).A.sizes() ||
          layer->lora_factors(a).B.sizes() != layer->lora_factors(present.front()).B.sizes())
        throw weighted_adapter_error("combination_type", type_text,
                                     "adapters `" + present.front() + "` and `" + a + "` have different ranks on "
                                     "module `" + planned.key + "` (rank_pattern), which a factor-wise combination "
                                     "cannot stack", "use \"cat\" or an svd type");
  }
  return plan;
}

/// The new factors (A, B) of one layer.
inline std::pair<torch::Tensor, torch::Tensor> weighted_factors(LoraLayer& layer, const WeightedPlan& plan,
                                                                const std::vector<std::string>& adapters,
                                                                const std::vector<double>& weights,
                                                                const WeightedAdapterOptions& o) {
  std::vector<std::size_t> present;
  for (std::size_t i = 0; i < adapters.size(); ++i)
    if (layer.has_adapter(adapters[i])) present.push_back(i);
  if (plan.kind == WeightedKind::cat) {
    std::vector<torch::Tensor> as, bs;
    for (auto i : present) {
      // (A * w) * s: two roundings, in PEFT's order.
      as.push_back(layer.lora_factors(adapters[i]).A * weights[i] * layer.settings(adapters[i]).scaling);
      bs.push_back(layer.lora_factors(adapters[i]).B);
    }
    return {torch::cat(as, 0), torch::cat(bs, 1)};
  }
  if (plan.kind == WeightedKind::factorwise) {
    std::vector<torch::Tensor> as, bs;
    std::vector<double> wa, wb;
    for (auto i : present) {
      const double c = weights[i] * layer.settings(adapters[i]).scaling;
      const double root = std::sqrt(std::abs(c));
      wa.push_back(c >= 0 ? root : -root);  // the sign goes on A only, so it is not squared away
      wb.push_back(root);
      as.push_back(layer.lora_factors(adapters[i]).A);
      bs.push_back(layer.lora_factors(adapters[i]).B);
    }
    const auto dtype = as.front().scalar_type();
    auto A = weighted_combine(plan.base_function, as, merge::weights_tensor(wa, as.front().device()), o);
    auto B = weighted_combine(plan.base_function, bs, merge::weights_tensor(wb, bs.front().device()), o);
    return {A.to(dtype), B.to(dtype)};
  }
  std::vector<torch::Tensor> deltas;
  std::vector<double> ws;
  for (auto i : present) {
    deltas.push_back(layer.delta_weight(adapters[i]));
    ws.push_back(weights[i] * layer.settings(adapters[i]).scaling);
  }
  auto D = weighted_combine(plan.base_function, deltas, merge::weights_tensor(ws, deltas.front().device()), o);
  if (layer.fan_in_fan_out()) D = D.t();  // Conv1D and Embedding store W as [in, out]
  const auto& first = layer.lora_factors(adapters[present.front()]);
  if (D.dim() > 2) D = D.flatten(1);      // Conv2d: [out, in·kh·kw] (PEFT; 1x1 kernels squeeze to the same)
  auto usv = o.svd_driver ? torch::linalg_svd(D, o.svd_full_matrices, c10::string_view(*o.svd_driver))
                          : torch::linalg_svd(D, o.svd_full_matrices);
  const auto& S = std::get<1>(usv);
  // Beyond the matrix rank there are no singular values: keep k columns (PEFT fails there).
  const std::int64_t k = std::min<std::int64_t>(plan.rank, S.size(0));
  auto U = torch::matmul(std::get<0>(usv).slice(1, 0, k), torch::diag(S.slice(0, 0, k)));
  auto Vh = std::get<2>(usv).slice(0, 0, k);
  if (o.svd_clamp) {
    const double hi = torch::quantile(torch::cat({U.flatten(), Vh.flatten()}), *o.svd_clamp).item<double>();
    U = U.clamp(-hi, hi);
    Vh = Vh.clamp(-hi, hi);
  }
  if (first.A.dim() > 2) {  // back to the conv factors: A [k, in, kh, kw], B [out, k, 1, 1]
    auto a_shape = first.A.sizes().vec(), b_shape = first.B.sizes().vec();
    a_shape[0] = k;
    b_shape[1] = k;
    Vh = Vh.reshape(a_shape);
    U = U.reshape(b_shape);
  }
  return {Vh, U};
}

}  // namespace detail

/// Combine `adapters` with `weights` into a new adapter `adapter_name` (see the file comment for
/// the math and the quirk decisions). Returns false (with a warning) when `adapter_name` exists.
/// Throws ConfigError / Error before anything changes when the arguments or adapters do not fit.
inline bool add_weighted_adapter(LoraModel& pm, const std::vector<std::string>& adapters,
                                 const std::vector<double>& weights, const std::string& adapter_name,
                                 const WeightedAdapterOptions& options = {}) {
  const auto& names = pm.adapter_names();
  if (std::find(names.begin(), names.end(), adapter_name) != names.end()) {
    warn("Adapter " + adapter_name + " already exists; add_weighted_adapter leaves it unchanged "
         "(delete_adapter first to recompute it).");
    return false;
  }
  const detail::WeightedPlan plan = detail::plan_weighted_adapter(pm, adapters, weights, adapter_name, options);
  pm.add_adapter(adapter_name, plan.config);
  std::vector<std::string> messages;
  try {
    ScopedWarningCapture capture;  // prune() warns per tensor; report each message once
    torch::NoGradGuard no_grad;
    for (auto& [key, layer] : pm.lora_layers()) {
      if (!layer->has_adapter(adapter_name)) continue;
      auto A = layer->lora_factors(adapter_name).A;  // handles: writes land in the parameters
      auto B = layer->lora_factors(adapter_name).B;
      A.zero_();
      B.zero_();
      auto factors = detail::weighted_factors(*layer, plan, adapters, weights, options);
      if (plan.kind == detail::WeightedKind::cat) {
        A.slice(0, 0, factors.first.size(0)).copy_(factors.first);
        B.slice(1, 0, factors.second.size(1)).copy_(factors.second);
      } else {
        detail::weighted_assign(A, factors.first);
        detail::weighted_assign(B, factors.second);
      }
    }
    for (const auto& m : capture.messages())
      if (std::find(messages.begin(), messages.end(), m) == messages.end()) messages.push_back(m);
  } catch (...) {
    pm.delete_adapter(adapter_name);
    throw;
  }
  for (const auto& m : messages) warn(m);
  return true;
}

}  // namespace peft
