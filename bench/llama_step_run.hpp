#pragma once
// A Llama with a LoRA adapter (r 16, alpha 32, all-linear but lm_head) and AdamW on its trainable
// parameters, and one timed training step: the whole-model step of bench_checkpointing.cpp and
// bench_qlora.cpp.

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <vector>

#include "peft/models/llama.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft_bench {

struct LlamaStepRun {
  std::shared_ptr<peft::models::LlamaForCausalLMImpl> model;
  std::unique_ptr<peft::LoraModel> pm;
  std::unique_ptr<torch::optim::AdamW> opt;

  /// Attaches the adapter to `m` (already built and prepared) and the optimiser; training mode.
  explicit LlamaStepRun(std::shared_ptr<peft::models::LlamaForCausalLMImpl> m) : model(std::move(m)) {
    peft::LoraConfig cfg;
    cfg.r = 16;
    cfg.lora_alpha = 32;
    cfg.target_modules = peft::ModuleSpec("all-linear");
    peft::LoraModelOptions opts;
    opts.plan.output_layer = "lm_head";
    pm = std::make_unique<peft::LoraModel>(peft::get_peft_model(model, cfg, "default", opts));
    std::vector<torch::Tensor> params;
    for (const auto& p : model->parameters())
      if (p.requires_grad()) params.push_back(p);
    opt = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-4));
    model->train();
  }

  /// One optimiser step on the next-token loss of `ids`; milliseconds.
  double step(const torch::Tensor& ids) {
    const auto t0 = std::chrono::steady_clock::now();
    opt->zero_grad();
    auto loss = peft::models::causal_lm_loss(*model, ids, ids);
    loss.backward();
    opt->step();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
};

}  // namespace peft_bench
