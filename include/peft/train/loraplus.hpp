#pragma once
/// LoRA+ (PEFT's create_loraplus_optimizer; docs/lifecycle.md "LoRA+"): AdamW whose B factors
/// learn `loraplus_lr_ratio` times faster than the A factors.
///
///   auto opt = peft::create_loraplus_optimizer(pm, torch::optim::AdamWOptions(2e-4), /*ratio=*/16);
///
/// Trainable parameters (requires_grad) go to PEFT's four groups, in this order:
///   groupA            everything else (A factors, 2-D copies)    lr,          weight_decay
///   embedding         (always empty, see the quirk below)        lr_embedding, weight_decay
///   groupB            lora_B.* and 1-D parameters, with decay    lr · ratio,  weight_decay
///   groupB_no_decay   the same without decay: biases and the     lr · ratio,  0
///                     parameters of LayerNorm / RMSNorm modules
/// weight_decay is `loraplus_weight_decay` (PEFT ignores the optimizer's own weight_decay here:
/// every group sets its own). Quirk kept: PEFT tests `isinstance(attrgetter(name)(model),
/// Embedding)` on the *parameter*, so its embedding group is always empty and embedding LoRA
/// factors land in groupA (lora_embedding_A) / groupA (lora_embedding_B is not "lora_B");
/// peft-cpp groups the same way, so results match. Empty groups are left out.

#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft {

struct LoraPlusOptions {
  double loraplus_lr_ratio = 16.0;      ///< ηB / ηA; should be >= 1
  double loraplus_lr_embedding = 1e-6;  ///< lr of the embedding group (empty, see above)
  double loraplus_weight_decay = 0.0;   ///< weight decay of groupA, embedding and groupB
};

/// The four groups as (name, parameter names, parameters), for inspection and tests.
struct LoraPlusGroups {
  std::vector<std::string> names[4];
  std::vector<torch::Tensor> params[4];
};

inline LoraPlusGroups loraplus_parameter_groups(const torch::nn::Module& model) {
  // PEFT: get_parameter_names(model, ALL_LAYERNORM_LAYERS), minus names containing "bias".
  std::vector<std::string> norm_prefixes;
  for (const auto& item : model.named_modules("", true)) {
    const std::string type = item.value()->name();
    const bool norm = dynamic_cast<const torch::nn::LayerNormImpl*>(item.value().get()) ||
                      (type.size() >= 11 && type.compare(type.size() - 11, 11, "RMSNormImpl") == 0) ||
                      (type.size() >= 7 && type.compare(type.size() - 7, 7, "RMSNorm") == 0);
    if (norm) norm_prefixes.push_back(item.key().empty() ? "" : item.key() + ".");
  }
  LoraPlusGroups g;
  for (const auto& p : model.named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    const std::string& name = p.key();
    bool in_norm = false;
    for (const auto& pre : norm_prefixes) in_norm = in_norm || name.compare(0, pre.size(), pre) == 0;
    const bool decay = !in_norm && name.find("bias") == std::string::npos;
    int group = 0;
    if (name.find("lora_B") != std::string::npos || p.value().dim() == 1) group = decay ? 2 : 3;
    g.names[group].push_back(name);
    g.params[group].push_back(p.value());
  }
  return g;
}

/// AdamW over `pm`'s trainable parameters in LoRA+ groups; `options` gives lr (ηA), betas, eps
/// and amsgrad; its weight_decay is replaced per group (see above).
inline std::unique_ptr<torch::optim::AdamW> create_loraplus_optimizer(const LoraModel& pm,
                                                                      const torch::optim::AdamWOptions& options,
                                                                      const LoraPlusOptions& plus = {}) {
  if (!(plus.loraplus_lr_ratio > 0))
    throw ConfigError::about("create_loraplus_optimizer", "loraplus_lr_ratio", std::to_string(plus.loraplus_lr_ratio),
                             "must be positive", "ηB/ηA, typically 2 to 16");
  const auto groups = loraplus_parameter_groups(*pm.model_ptr());
  const double lr = options.lr();
  const double lrs[4] = {lr, plus.loraplus_lr_embedding, lr * plus.loraplus_lr_ratio, lr * plus.loraplus_lr_ratio};
  const double decays[4] = {plus.loraplus_weight_decay, plus.loraplus_weight_decay, plus.loraplus_weight_decay, 0.0};
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  for (int i = 0; i < 4; ++i) {
    if (groups.params[i].empty()) continue;
    auto o = std::make_unique<torch::optim::AdamWOptions>(options);
    o->lr(lrs[i]).weight_decay(decays[i]);
    param_groups.emplace_back(groups.params[i], std::move(o));
  }
  return std::make_unique<torch::optim::AdamW>(param_groups, options);
}

}  // namespace peft
