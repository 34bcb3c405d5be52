// Uses the installed umbrella peft::peft: the LoRA core, a builtin reference model, the byte
// tokenizer and the trainer's YAML reader, together.
#include <peft/models.hpp>
#include <peft/peft.hpp>
#include <peft/text.hpp>
#include <peft/train.hpp>

#include <iostream>

int main() {
  const auto cfg = peft::train::train_config_from_yaml(
      "base_model: builtin:tiny-llama\nlora: {r: 2, lora_alpha: 4, target_modules: [q_proj]}\n", "consumer.yaml",
      ".");
  if (cfg.lora.r != 2) return 1;
  torch::manual_seed(0);
  auto model = peft::models::make_builtin(cfg.base_model, 0);
  auto pm = peft::get_peft_model(model, cfg.lora);
  peft::text::ByteTokenizer tok;
  const auto ids = tok.encode("hello");
  auto x = torch::tensor(std::vector<std::int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  const auto logits = model->forward(x);
  if (logits.size(1) != x.size(1)) return 2;
  std::cout << "peft " << peft::kVersion << " umbrella consumer OK (" << pm.trainable_parameters_summary() << ")"
            << std::endl;
  return 0;
}
