#pragma once
/// PiSSA (docs/init.md#strategies-at-a-glance): principal singular vectors of W become the adapter, the
/// rest stays in the base.
///
///   W32 = transpose(W, fan_in_fan_out) as fp32 [out, in];  W32 = V diag(S) Uh
///   S' = S[:r] / scaling;  A = diag(sqrt S') Uh[:r]  [r, in];  B = V[:, :r] diag(sqrt S')  [out, r]
///   residual = transpose(W32 - (scaling * B) @ A, fan_in_fan_out) in W's dtype
///
/// "pissa" uses the exact SVD; "pissa_niter_N" uses svd_lowrank(W32, r, N), which draws one randn
/// from W's device generator (same draw as PEFT, so identical after the same torch::manual_seed).
/// Bit-compat: the product is (scaling * B) @ A, scalar first, as in PEFT.

#include <torch/types.h>
#include <torch/utils.h>

#include <optional>

#include "peft/layers/lora_math.hpp"
#include "peft/init/init_factors.hpp"
#include "peft/init/svd_lowrank.hpp"

namespace peft {

/// dtype / rank checks of pissa_init without computing anything (ConfigError).
inline void check_pissa(const torch::Tensor& W, std::int64_t r, const std::string& init_name = "pissa") {
  detail::require_float_weight(W, init_name,
                               "Please initialize PiSSA under float32, float16, or bfloat16. Subsequently, "
                               "re-quantize the residual model to help minimize quantization errors.");
  detail::require_rank_fits(W, r, init_name);
}

/// PiSSA factors of W (stored layout). `niter` empty: exact SVD ("pissa"); N: "pissa_niter_N".
inline InitFactors pissa_init(const torch::Tensor& W, std::int64_t r, double scaling, bool fan_in_fan_out,
                              std::optional<std::int64_t> niter = std::nullopt) {
  check_pissa(W, r, niter ? "pissa_niter_" + std::to_string(*niter) : "pissa");
  torch::NoGradGuard no_grad;
  const torch::Tensor w = transpose_if(W.to(torch::kFloat32), fan_in_fan_out);
  torch::Tensor Vr, Sr, Uhr;
  if (!niter) {
    auto [V, S, Uh] = torch::linalg_svd(w, /*full_matrices=*/false);
    Vr = V.slice(1, 0, r);
    Sr = S.slice(0, 0, r) / scaling;
    Uhr = Uh.slice(0, 0, r);
  } else {
    auto [V, S, U] = svd_lowrank(w, r, *niter);
    Vr = V;
    Sr = S / scaling;
    Uhr = U.t();
  }
  InitFactors f;
  f.lora_A = torch::matmul(torch::diag(torch::sqrt(Sr)), Uhr);
  f.lora_B = torch::matmul(Vr, torch::diag(torch::sqrt(Sr)));
  f.base_weight = transpose_if((w - torch::matmul(f.lora_B * scaling, f.lora_A)).to(W.scalar_type()), fan_in_fan_out);
  return f;
}

}  // namespace peft
