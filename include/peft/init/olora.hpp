#pragma once
/// OLoRA (docs/init.md#strategies-at-a-glance): the adapter starts as the first r columns/rows of W's QR
/// decomposition.
///
///   Q, R = qr(W as fp32 [out, in]) (reduced);  B = Q[:, :r]  [out, r];  A = R[:r]  [r, in]
///   residual = W - (scaling * B) @ A, in W's dtype
///
/// Unlike PiSSA there is no division by scaling: the adapter contributes scaling * Q_r R_r.
/// PEFT has no fan_in_fan_out handling here (a GPT-2 Conv1D would get wrongly shaped factors),
/// so peft-cpp rejects OLoRA on [in, out] weights instead (check_olora).

#include <torch/types.h>
#include <torch/utils.h>

#include "peft/init/init_factors.hpp"

namespace peft {

/// dtype / layout / rank checks of olora_init (ConfigError).
inline void check_olora(const torch::Tensor& W, std::int64_t r, bool fan_in_fan_out) {
  detail::require_float_weight(W, "olora", "Unsupported data type for the base layer.");
  if (fan_in_fan_out)
    throw ConfigError("init_lora_weights", "\"olora\"",
                      "OLoRA supports only Linear layers (weight [out, in]); PEFT has no fan_in_fan_out "
                      "handling for it",
                      "leave Conv1D / fan_in_fan_out layers out of target_modules or use \"pissa\"");
  detail::require_rank_fits(W, r, "olora");
}

/// OLoRA factors of W [out, in].
inline InitFactors olora_init(const torch::Tensor& W, std::int64_t r, double scaling) {
  check_olora(W, r, false);
  torch::NoGradGuard no_grad;
  const torch::Tensor w = W.to(torch::kFloat32);
  auto [Q, R] = torch::linalg_qr(w);
  InitFactors f;
  f.lora_B = Q.slice(1, 0, r).contiguous();
  f.lora_A = R.slice(0, 0, r).contiguous();
  f.base_weight = (w - torch::matmul(f.lora_B * scaling, f.lora_A)).to(W.scalar_type());
  return f;
}

}  // namespace peft
