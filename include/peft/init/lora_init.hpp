#pragma once
/// A new adapter's init (PEFT's reset_lora_parameters and the base-rewriting inits; docs/init.md),
/// run by LoraLayer::update_layer on the factors its base layer created (CPU, fp32, after the
/// constructors' draws), so the global generator's stream is PEFT's:
///   true (Default)  kaiming_uniform_(A, a = sqrt(5)), B = 0, b_B = 0
///   "gaussian"      A ~ N(0, 1/r), B = 0, b_B = 0
///   "orthogonal"    Q = qr(randn(r, r)); A = (randn(in, r/2) @ Q[0::2])ᵀ / 10,
///                   B = randn(r/2, out)ᵀ @ Q[1::2] / 10           (B A = 0; r even)
///   "eva"           B = 0, b_B = 0 (A keeps the constructor's values until EVA installs it)
///   false (Random)  the constructors' values
///   pissa, pissa_niter_N, olora, corda, loftq: A, B from init/base_rewrite.hpp and the base's
///                   dense weight replaced by the residual W - s·B A (written back in place)

#include <optional>

#include "peft/init/corda_eigens.hpp"
#include "peft/layers/adapter_settings.hpp"

namespace peft {

class BaseLayer;
struct LoraFactors;

/// Throws ConfigError for settings no layer can be created with (r <= 0, odd r for
/// "orthogonal", an init peft-cpp does not implement), so injection can check a whole plan first.
void check_lora_settings(const AdapterSettings& s);

/// The checks a base-rewriting init does on `base` before anything changes (dtype, layout, rank,
/// CorDA eigens); nothing for the other inits.
void check_lora_init_target(const AdapterSettings& s, BaseLayer& base, const CordaEigens* eigens);

/// Initialises factors `f` (fresh, CPU fp32) for s.init; a "corda" init consumes `eigens`.
void init_lora_factors(const AdapterSettings& s, const LoraFactors& f, BaseLayer& base,
                       std::optional<CordaEigens>& eigens);

}  // namespace peft
