#pragma once
// Small LibTorch helpers shared by the unit tests (scratch_dir is in fixtures.hpp).

#include <torch/nn/module.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "peft/tuner/lora_model.hpp"
#include "support/fixtures.hpp"

namespace peft_test {

/// named_parameters() keys in order.
inline std::vector<std::string> param_names(torch::nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.key());
  return out;
}

/// A LoraConfig with only target_modules, r and lora_alpha set.
inline peft::LoraConfig lora_config(peft::ModuleSpec targets, std::int64_t r, long long alpha) {
  peft::LoraConfig c;
  c.target_modules = std::move(targets);
  c.r = r;
  c.lora_alpha = alpha;
  return c;
}

/// Settings of a plain LoRA adapter of rank r: lora_alpha = alpha, scaling = alpha / r.
inline peft::AdapterSettings adapter_settings(std::int64_t r, double alpha) {
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = alpha;
  s.scaling = alpha / static_cast<double>(r);
  return s;
}

/// Stand-in for training: every B factor (lora_B or lora_embedding_B) gets N(0, 0.5) values, so
/// adapters change outputs.
inline void randomise_lora_B(peft::LoraModel& pm) {
  torch::NoGradGuard g;
  for (auto& [key, layer] : pm.lora_layers())
    for (const auto& n : layer->adapter_names())
      for (auto& [suffix, t] : layer->adapter_tensors(n))
        if (suffix.rfind("lora_B", 0) == 0 || suffix.rfind("lora_embedding_B", 0) == 0) t.normal_(0, 0.5);
}

}  // namespace peft_test
