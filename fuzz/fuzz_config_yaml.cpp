// libFuzzer target: YAML training config (`lora:` section, and the whole document) -> LoraConfig
// via yaml-cpp and the shared keyword reader, and the whole training config (train_config_from_yaml).
// Rejections must be peft::Error; alias bombs and cycles must end as errors within the limits.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "peft/error.hpp"
#include "peft/config/config_json.hpp"
#include "peft/train/lora_yaml.hpp"
#include "peft/train/train_config.hpp"
#include "peft/warnings.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  peft::set_warning_handler([](const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const char* section : {"lora", ""}) {
    try {
      const peft::LoraConfig cfg = peft::lora_config_from_yaml(text, section, "fuzz.yaml");
      (void)peft::to_json(cfg);
    } catch (const peft::Error&) {
    }
  }
  try {
    (void)peft::train::train_config_from_yaml(text, "fuzz.yaml", std::filesystem::path("/nonexistent"));
  } catch (const peft::Error&) {
  }
  return 0;
}
