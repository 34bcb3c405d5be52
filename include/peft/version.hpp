#pragma once
/// peft-cpp's own version, and the Python PEFT release whose behaviour and files it follows.

#define PEFT_CPP_VERSION_MAJOR 0
#define PEFT_CPP_VERSION_MINOR 1
#define PEFT_CPP_VERSION_PATCH 0
#define PEFT_CPP_VERSION "0.1.0"

namespace peft {
inline constexpr const char* kVersion = PEFT_CPP_VERSION;
}  // namespace peft
