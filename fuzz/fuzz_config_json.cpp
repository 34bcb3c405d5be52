// libFuzzer target: adapter_config.json text -> LoraConfig (our JSON reader + every field's type
// and value checks). Rejections must be peft::Error; an accepted config must serialise and read
// back to an equal config.

#include <cstddef>
#include <cstdint>
#include <string>

#include "peft/error.hpp"
#include "peft/config/config_json.hpp"
#include "peft/warnings.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  peft::set_warning_handler([](const std::string&) {});  // warnings are expected, not printed
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  peft::LoraConfig cfg;
  try {
    cfg = peft::lora_config_from_json(text);
  } catch (const peft::Error&) {
    return 0;
  }
  const std::string again = peft::to_json(cfg);
  try {
    const peft::LoraConfig back = peft::lora_config_from_json(again);
    if (peft::to_json(back) != again) __builtin_trap();  // written config must read back the same
  } catch (const peft::Error&) {
    __builtin_trap();  // what we write must be readable
  }
  return 0;
}
