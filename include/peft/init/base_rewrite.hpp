#pragma once
/// Dispatch for the inits that rewrite the base weight at adapter creation (pissa, pissa_niter_N,
/// olora, corda, loftq): validation that can run before anything changes, and the computation.
/// LoraLayer::update_layer and inject_adapter use these; the math is in pissa.hpp, olora.hpp,
/// corda.hpp, loftq.hpp.

#include <torch/types.h>

#include <optional>
#include <string>

#include "peft/config/lora_config.hpp"
#include "peft/init/corda.hpp"
#include "peft/init/loftq.hpp"
#include "peft/init/olora.hpp"
#include "peft/init/pissa.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// True for the inits that replace the base weight by a residual.
inline bool rewrites_base_weight(InitMethod m) {
  return m == InitMethod::Pissa || m == InitMethod::PissaNiter || m == InitMethod::Olora || m == InitMethod::Corda ||
         m == InitMethod::Loftq;
}

/// Every check the init would do on a layer with weight W (stored layout) and rank r: dtype,
/// layout (olora/corda need [out, in]), rank, CorDA eigens. ConfigError naming `where`.
inline void check_base_rewrite(InitMethod m, const torch::Tensor& W, std::int64_t r, std::int64_t niter,
                               bool fan_in_fan_out, const CordaEigens* eigens, const std::string& where,
                               std::int64_t loftq_bits = 4, std::int64_t loftq_iter = 1) {
  try {
    switch (m) {
      case InitMethod::Pissa: check_pissa(W, r); break;
      case InitMethod::PissaNiter: check_pissa(W, r, "pissa_niter_" + std::to_string(niter)); break;
      case InitMethod::Olora: check_olora(W, r, fan_in_fan_out); break;
      case InitMethod::Corda: check_corda(W, r, fan_in_fan_out, eigens, where); break;
      case InitMethod::Loftq:
        detail::require_float_weight(W, "loftq", "LoftQ needs a floating base weight.");
        if (fan_in_fan_out)
          throw ConfigError("init_lora_weights", "\"loftq\"", "LoftQ supports only Linear layers (weight [out, in])",
                            "leave Conv1D / fan_in_fan_out layers out of target_modules");
        detail::require_rank_fits(W, r, "loftq");
        if (loftq_bits != 2 && loftq_bits != 4 && loftq_bits != 8)
          throw ConfigError("loftq_config.loftq_bits", std::to_string(loftq_bits),
                            "Only support 2, 4, 8 bits quantization", "use 4 (NF4) or 8");
        if (loftq_iter <= 0)
          throw ConfigError("loftq_config.loftq_iter", std::to_string(loftq_iter),
                            "Number of iterations must be greater than 0", "use 1 or more");
        break;
      default: break;
    }
  } catch (const ConfigError& e) {
    if (where.empty() || m == InitMethod::Corda) throw;
    throw e.located("module `" + where + "`");
  }
}

/// The factors and residual of init `m` for weight W (stored layout; `eigens` for CorDA).
inline InitFactors base_rewrite_init(InitMethod m, const torch::Tensor& W, std::int64_t r, double scaling,
                                     std::int64_t niter, bool fan_in_fan_out, const CordaEigens* eigens,
                                     std::int64_t loftq_bits = 4, std::int64_t loftq_iter = 1) {
  switch (m) {
    case InitMethod::Pissa: return pissa_init(W, r, scaling, fan_in_fan_out);
    case InitMethod::PissaNiter: return pissa_init(W, r, scaling, fan_in_fan_out, niter);
    case InitMethod::Olora:
      check_olora(W, r, fan_in_fan_out);
      return olora_init(W, r, scaling);
    case InitMethod::Corda:
      check_corda(W, r, fan_in_fan_out, eigens, "");
      return corda_init(W, *eigens, r, scaling);
    case InitMethod::Loftq:
      check_base_rewrite(m, W, r, niter, fan_in_fan_out, eigens, "", loftq_bits, loftq_iter);
      return loftq_init(W, loftq_bits, r, loftq_iter);
    default: throw Error("base_rewrite_init: init does not rewrite the base weight");
  }
}

/// PEFT's _check_new_adapter_config warning when a model gets a second adapter while any adapter
/// (new or existing) was made with "pissa" / "corda" / "olora" (exact spelling, like PEFT; the
/// first match in that order wins). `all` holds every adapter's init_lora_weights.
inline void warn_base_rewrite_with_other_adapters(const std::vector<InitLoraWeights>& all) {
  if (all.size() < 2) return;
  auto any = [&](const char* name) {
    for (const auto& w : all)
      if (!w.is_bool() && w.name() == name) return true;
    return false;
  };
  auto msg = [](const std::string& who, const std::string& anchor) {
    return who + " changes the base weights of the model and should thus not be used with other adapters. "
                 "Consider converting the " + who + " adapter into a normal LoRA adapter: "
                 "https://github.com/huggingface/peft/tree/main/examples/" + anchor;
  };
  if (any("pissa")) warn(msg("PiSSA", "pissa_finetuning#convert-pissa-to-lora"));
  else if (any("corda")) warn(msg("CorDA", "corda_finetuning#convert-corda-to-lora"));
  else if (any("olora")) warn(msg("OLoRA", "olora_finetuning#olora-and-lora"));
}

}  // namespace peft
