#pragma once
/// CorDA math (docs/init.md#strategies-at-a-glance, PEFT's tuners/lora/corda.py): context-oriented
/// decomposition of W
/// against the covariance C of the layer's calibration inputs.
///
///   per forward call:  X = input reshaped [tokens, in] (fp32);  X /= |max(X)|;  C += X^T X
///   C /= calls;  C' = C + d * mean(diag C) * I   (d = 0.01, doubled until ||C' inv(C') - I|| < 0.05)
///   U, S, Vh = svd(W C');  V = (Vh inv(C'))^T          ipm keeps the first r, kpm the last r
///   init:  S' = S / scaling;  A = V^T * sqrt(S')[:, None]  [r, in];  B = U * sqrt(S')  [out, r]
///          residual = W - (scaling * B) @ A, in W's dtype
///
/// The calibration driver (hooks, model runs) is preprocess_corda in corda_preprocess.hpp.

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <string>

#include "peft/error.hpp"
#include "peft/init/corda_eigens.hpp"
#include "peft/init/init_factors.hpp"

namespace peft {

/// One calibration call's contribution X^T X [in, in]. PEFT squeezes the batch dimension and
/// needs 2-D inputs; peft-cpp flattens every leading dimension instead ([B, T, in] -> [B*T, in]),
/// which equals PEFT's result for PEFT's [1, T, in] inputs. `keep_dtype` is
/// use_float16_for_covariance (no fp32 upcast). Throws Error for NaN/Inf, like PEFT.
inline torch::Tensor corda_covariance_term(const torch::Tensor& input, bool keep_dtype = false) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = input.detach().reshape({-1, input.size(-1)});
  if (!keep_dtype) x = x.to(torch::kFloat32);
  x = x / torch::max(x).abs();  // PEFT: max of the signed values, then abs
  if (torch::isnan(x).any().item<bool>() || torch::isinf(x).any().item<bool>())
    throw Error("CorDA: Invalid value found in input, please check your input data (NaN/Inf after "
                "dividing by |max(X)|; an all-zero input also does this)");
  torch::Tensor cov = x.t().matmul(x);
  if (torch::isnan(cov).any().item<bool>() || torch::isinf(cov).any().item<bool>())
    throw Error("CorDA: Invalid value found in covariance (overflow?); try without use_float16_for_covariance");
  return cov;
}

/// PEFT's collect_eigens_for_layer + crop_corda_eigens: eigens of W [out, in] against the
/// averaged covariance C [in, in], cropped to rank r ("ipm": largest r, "kpm": smallest r).
inline CordaEigens corda_eigens(const torch::Tensor& W, const torch::Tensor& covariance, std::int64_t r,
                                const std::string& method) {
  if (method != "ipm" && method != "kpm")
    throw ConfigError("corda_config.corda_method", "\"" + method + "\"", "Invalid corda_method",
                      "it should be 'ipm' or 'kpm'");
  const std::int64_t k = std::min(W.size(0), W.size(1));
  if (r > k)
    throw ConfigError("r", std::to_string(r), "CorDA rank mismatch: the layer has only " + std::to_string(k) +
                      " singular components", "lower r (or rank_pattern) for this layer");
  torch::NoGradGuard no_grad;
  const torch::Tensor w = W.to(torch::kFloat32);
  const torch::Tensor cov = covariance.to(torch::kFloat32);
  const std::int64_t n = cov.size(0);
  const auto opts = cov.options();
  double damp = 0.01;
  torch::Tensor fixed, inv;
  // PEFT loops until the inverse is accurate; a non-finite covariance would loop forever there.
  for (int attempt = 0;; ++attempt) {
    const torch::Tensor compensate = torch::diag(torch::ones({n}, opts) * torch::mean(torch::diag(cov)) * damp);
    fixed = cov + compensate;
    inv = torch::linalg_inv(fixed);
    const double err = torch::dist(torch::matmul(fixed, inv), torch::eye(n, opts)).item<double>();
    if (err < 0.05) break;
    if (attempt >= 60 || !std::isfinite(err))
      throw Error("CorDA: the calibration covariance cannot be inverted even with damping (is it all zero "
                  "or non-finite? feed more / more varied calibration data)");
    damp *= 2;
  }
  auto [U, S, Vh] = torch::linalg_svd(torch::matmul(w, fixed), /*full_matrices=*/false);
  const torch::Tensor V = torch::matmul(Vh, inv).transpose(0, 1);
  const std::int64_t lo = method == "ipm" ? 0 : S.size(0) - r;
  return CordaEigens{S.slice(0, lo, lo + r).clone(), U.slice(1, lo, lo + r).clone(), V.slice(1, lo, lo + r).clone()};
}

/// Throws ConfigError unless `e` fits a layer with weight W [out, in] and rank r (PEFT's checks,
/// including NaN/Inf). `where` names the module for the message.
inline void check_corda(const torch::Tensor& W, std::int64_t r, bool fan_in_fan_out, const CordaEigens* e,
                        const std::string& where) {
  detail::require_float_weight(W, "corda",
                               "Please initialize CorDA under float32, float16, or bfloat16. Subsequently, "
                               "re-quantize the residual model to help minimize quantization errors.");
  const std::string at = where.empty() ? "" : " (module `" + where + "`)";
  if (fan_in_fan_out)
    throw ConfigError("init_lora_weights", "\"corda\"",
                      "CorDA supports only Linear layers (weight [out, in])" + at,
                      "leave Conv1D / fan_in_fan_out layers out of target_modules");
  if (!e)
    throw ConfigError("init_lora_weights", "\"corda\"",
                      "`eigens` attribute not found for layer" + at + ", please run `preprocess_corda` first",
                      "call peft::preprocess_corda(model, config, run_model) with the same config before "
                      "creating the adapter (the layer must be a peft::Linear)");
  const std::int64_t out = W.size(0), in = W.size(1);
  for (const auto* t : {&e->S_WC, &e->U_WC, &e->V_WC})
    if (!t->defined() || torch::isnan(*t).any().item<bool>() || torch::isinf(*t).any().item<bool>())
      throw ConfigError("init_lora_weights", "\"corda\"", "Invalid value found in the CorDA eigens" + at,
                        "re-run preprocess_corda with other calibration data");
  if (e->U_WC.dim() != 2 || e->U_WC.size(0) != out || e->U_WC.size(1) != r || e->S_WC.dim() != 1 ||
      e->S_WC.size(0) != r || e->V_WC.dim() != 2 || e->V_WC.size(0) != in || e->V_WC.size(1) != r)
    throw ConfigError("init_lora_weights", "\"corda\"",
                      "CorDA eigens do not fit the layer" + at + ": expected U (" + std::to_string(out) + ", " +
                          std::to_string(r) + "), S (" + std::to_string(r) + "), V (" + std::to_string(in) + ", " +
                          std::to_string(r) + ")",
                      "make sure the config given to preprocess_corda is the one used to create the adapter");
}

/// CorDA factors of W [out, in] from its eigens (checked with check_corda).
inline InitFactors corda_init(const torch::Tensor& W, const CordaEigens& e, std::int64_t r, double scaling) {
  check_corda(W, r, false, &e, "");
  torch::NoGradGuard no_grad;
  const torch::Tensor w = W.to(torch::kFloat32);
  const torch::Tensor s = e.S_WC.to(w.device()) / scaling;
  InitFactors f;
  f.lora_A = e.V_WC.to(w.device()).t().mul(s.sqrt().view({-1, 1})).contiguous();
  f.lora_B = e.U_WC.to(w.device()).mul(s.sqrt()).contiguous();
  f.base_weight = (w - torch::matmul(f.lora_B * scaling, f.lora_A)).to(W.scalar_type());
  return f;
}

}  // namespace peft
