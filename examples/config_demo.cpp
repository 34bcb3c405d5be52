// peft_config_demo: build a LoRA config in C++, print it as the adapter_config.json PEFT writes,
// read it back, and show what a model's modules would get.
//
//   peft_config_demo                 the built-in example config
//   peft_config_demo train.yaml      the `lora:` section of a training config
//   peft_config_demo adapter_dir/    an adapter_config.json written by Python PEFT

#include <peft/peft.hpp>
#include <peft/train/lora_yaml.hpp>  // load_lora_yaml (peft::train)

#include <iostream>

int main(int argc, char** argv) {
  try {
    peft::LoraConfig cfg;
    if (argc > 1) {
      const std::filesystem::path path = argv[1];
      const auto ext = path.extension().string();
      cfg = (ext == ".yaml" || ext == ".yml") ? peft::load_lora_yaml(path)
                                              : peft::load_adapter_config(path);
    } else {
      cfg.r = 16;
      cfg.lora_alpha = 32;
      cfg.lora_dropout = 0.05;
      cfg.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
      cfg.layers_to_transform = {0, 1};
      cfg.layers_pattern = "layers";
      cfg.rank_pattern.set("o_proj", 8);
      cfg.alpha_pattern.set("^model.layers.0.self_attn.q_proj", 64);
      cfg.task_type = peft::TaskType::CAUSAL_LM;
      cfg.validate();
    }

    const std::string json = peft::to_json(cfg);
    std::cout << "adapter_config.json:\n" << json << "\n\n";

    // Reading our own output back must give the same configuration.
    const peft::LoraConfig back = peft::lora_config_from_json(json);
    if (peft::to_json(back) != json) {
      std::cerr << "round trip changed the config\n";
      return 1;
    }
    std::cout << "read back: identical\n\n";

    // What a small Llama-style model's modules would get from this config.
    std::vector<peft::ModuleInfo> modules = {{"", peft::ModuleKind::Container, "Model"}};
    for (int i = 0; i < 2; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
      for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
        modules.push_back({p + n, peft::ModuleKind::Linear, "Linear"});
    }
    try {
      const peft::TargetPlan plan = peft::plan_targets(cfg, modules);
      std::cout << "targets in a 2-layer Llama-style model:\n";
      for (const auto& l : plan.layers)
        std::cout << "  " << l.key << ": r=" << l.settings.r << " alpha=" << l.settings.lora_alpha.value
                  << " scaling=" << l.settings.scaling << '\n';
    } catch (const peft::TargetNotFoundError& e) {
      std::cout << "no target in the demo model: " << e.what() << '\n';
    }
    return 0;
  } catch (const peft::Error& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
