// peft_hf_logits: the C++ side of tests/python/compare_hf_models.py (run where transformers is
// installed; not a ctest entry).
//
//   peft_hf_logits MODEL_DIR IDS.safetensors OUT.safetensors
//       load_causal_lm(MODEL_DIR) (fp32, CPU, eval), forward the tensor "input_ids" ([B, T]
//       int64) and write its logits ([B, T, V] fp32) as the tensor "logits".
//   peft_hf_logits --save-builtin NAME DIR
//       make_builtin(NAME, seed 1), every parameter (norm weights and biases included) perturbed
//       by N(0, 0.02) from a seeded generator so no path is an identity, then save_causal_lm(DIR).

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <iostream>
#include <string>

#include "peft/error.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/models/causal_lm.hpp"

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--save-builtin") {
      auto model = peft::models::make_builtin(argv[2], 1);
      auto gen = at::detail::createCPUGenerator(2);
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.add_(torch::randn(p.sizes(), gen) * 0.02);
      peft::models::save_causal_lm(*model, argv[3]);
      return 0;
    }
    if (argc != 4) {
      std::cerr << "usage: peft_hf_logits MODEL_DIR IDS.safetensors OUT.safetensors\n"
                   "       peft_hf_logits --save-builtin NAME DIR\n";
      return 2;
    }
    auto model = peft::models::load_causal_lm(argv[1], torch::kCPU, torch::kFloat32);
    model->eval();
    auto file = peft::load_safetensors(argv[2]);
    const torch::Tensor* ids = file.find("input_ids");
    if (!ids) throw peft::SerializationError(std::string(argv[2]) + ": no tensor `input_ids`");
    torch::NoGradGuard no_grad;
    auto logits = model->forward(ids->to(torch::kInt64)).to(torch::kFloat32);
    peft::save_safetensors(argv[3], {{"logits", logits}});
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "peft_hf_logits: " << e.what() << "\n";
    return 1;
  }
}
