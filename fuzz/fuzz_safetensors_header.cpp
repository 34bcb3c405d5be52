// libFuzzer target: the safetensors header/entry validation (what every adapter and checkpoint
// load goes through before any tensor is built). Rejections must be peft::SerializationError;
// accepted inputs must describe entries that lie inside the input and do not overlap.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "peft/error.hpp"
#include "peft/format/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy the exact size of the input, so ASan sees any read past its end.
  char* copy = static_cast<char*>(std::malloc(size ? size : 1));
  if (size) __builtin_memcpy(copy, data, size);
  try {
    const peft::SafetensorsHeader h = peft::parse_safetensors_header(copy, size, "fuzz");
    if (h.data_start > size || h.data_start + h.data_size != size) __builtin_trap();
    std::uint64_t total = 0;
    for (const auto& e : h.entries) {
      if (e.begin > e.end || e.end > h.data_size) __builtin_trap();
      if (e.end - e.begin != e.numel() * e.dtype_size) __builtin_trap();
      total += e.end - e.begin;
    }
    if (total > h.data_size) __builtin_trap();  // overlapping ranges would exceed the buffer
  } catch (const peft::SerializationError&) {
  }
  std::free(copy);
  return 0;
}
