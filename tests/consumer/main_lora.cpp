// Uses the installed peft: config -> JSON -> config, and one LoRA formula on LibTorch tensors.
#include <peft/peft.hpp>

#include <iostream>

int main() {
  peft::LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.target_modules = {"q_proj", "v_proj"};
  cfg.validate();
  peft::LoraConfig back = peft::lora_config_from_json(peft::to_json(cfg));
  if (back.r != 4 || back.target_modules != cfg.target_modules) return 1;
  auto a = torch::ones({4, 3});
  auto b = torch::ones({2, 4});
  auto delta = peft::lora_delta_weight(a, b, 0.5);
  if (delta.size(0) != 2 || delta.size(1) != 3 || delta[0][0].item<float>() != 2.0f) return 2;
  std::cout << "peft " << peft::kVersion << " consumer OK" << std::endl;
  return 0;
}
