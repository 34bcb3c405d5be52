#include "peft/init/lora_init.hpp"

#include <torch/nn/init.h>

#include <cmath>
#include <string>

#include "peft/error.hpp"
#include "peft/init/base_rewrite.hpp"
#include "peft/layers/base_layer.hpp"

namespace peft {

void check_lora_settings(const AdapterSettings& s) {
  if (s.r <= 0)
    throw ConfigError("r", std::to_string(s.r), "`r` should be a positive integer value", "use a rank >= 1");
  if (s.init == InitMethod::Orthogonal && s.r % 2 != 0)
    throw ConfigError("r", std::to_string(s.r), "Orthogonal initialization requires the LoRA rank to be even",
                      "use an even r");
  switch (s.init) {
    case InitMethod::Default:
    case InitMethod::Random:
    case InitMethod::Gaussian:
    case InitMethod::Orthogonal:
    case InitMethod::Eva: return;
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Corda:
    case InitMethod::Loftq: return;
    default:
      throw ConfigError("init_lora_weights", "", "this initialisation is not implemented in peft-cpp yet",
                        "use true, false, \"gaussian\", \"orthogonal\", \"pissa\", \"pissa_niter_N\", "
                        "\"olora\", \"corda\" or \"loftq\"");
  }
}

void check_lora_init_target(const AdapterSettings& s, BaseLayer& base, const CordaEigens* eigens) {
  if (!rewrites_base_weight(s.init)) return;
  // A quantised (4-bit) base: PEFT refuses these inits on a non-floating weight (PiSSA: "Please
  // initialize PiSSA under float32, float16, or bfloat16"); so do we, for all of them.
  if (!base.base_weight().is_floating_point())
    throw ConfigError("init_lora_weights", "'" + s.init_name + "'",
                      "this init rewrites the base weight, which is quantised (4-bit) here",
                      "initialise on the dense model, then quantise the residual base (quantize_model_4bit)",
                      ConfigError::Kind::NotImplemented);
  check_base_rewrite(s.init, base.dense_weight(), s.r, s.pissa_niter, base.fan_in_fan_out(), eigens, "",
                     s.loftq_bits, s.loftq_iter);
}

void init_lora_factors(const AdapterSettings& s, const LoraFactors& f, BaseLayer& base,
                       std::optional<CordaEigens>& eigens) {
  torch::NoGradGuard no_grad;
  auto zero_b = [&] {
    f.B.zero_();
    if (f.B_bias.defined()) f.B_bias.zero_();
  };
  switch (s.init) {
    case InitMethod::Default:
      torch::nn::init::kaiming_uniform_(f.A, std::sqrt(5.0));
      zero_b();
      break;
    case InitMethod::Gaussian:
      f.A.normal_(0.0, 1.0 / static_cast<double>(s.r));
      zero_b();
      break;
    case InitMethod::Orthogonal: {
      const std::int64_t h = s.r / 2;
      auto q = std::get<0>(torch::linalg_qr(torch::randn({s.r, s.r})));
      auto q_odd = q.slice(0, 0, s.r, 2);
      auto q_even = q.slice(0, 1, s.r, 2);
      f.A.copy_(torch::matmul(torch::randn({base.in_features(), h}), q_odd).t() / 10.0);
      f.B.copy_(torch::matmul(torch::randn({h, base.out_features()}).t(), q_even) / 10.0);
      break;
    }
    case InitMethod::Eva: zero_b(); break;  // A keeps the constructor's values until EVA installs the PCA rows
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Corda:
    case InitMethod::Loftq: {  // after the constructors' draws, like PEFT (pissa_niter draws next)
      auto r = base_rewrite_init(s.init, base.dense_weight(), s.r, s.scaling, s.pissa_niter, base.fan_in_fan_out(),
                                 eigens ? &*eigens : nullptr, s.loftq_bits, s.loftq_iter);
      f.A.copy_(r.lora_A);
      f.B.copy_(r.lora_B);
      base.write_dense_weight(r.base_weight);  // in place: holders sharing the weight see the residual
      if (s.init == InitMethod::Corda) eigens.reset();
      break;
    }
    default: break;  // Random: keep the constructors' values
  }
}

}  // namespace peft
