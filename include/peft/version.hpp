#pragma once
/// peft-cpp's own version (the only place it is written: CMake's project() parses the three
/// numbers below), and the Python PEFT release whose behaviour and files it follows.

#define PEFT_CPP_VERSION_MAJOR 0
#define PEFT_CPP_VERSION_MINOR 2
#define PEFT_CPP_VERSION_PATCH 0

#define PEFT_CPP_STRINGIFY_(x) #x
#define PEFT_CPP_STRINGIFY(x) PEFT_CPP_STRINGIFY_(x)
/// "MAJOR.MINOR.PATCH"
#define PEFT_CPP_VERSION                                                                          \
  PEFT_CPP_STRINGIFY(PEFT_CPP_VERSION_MAJOR) "." PEFT_CPP_STRINGIFY(PEFT_CPP_VERSION_MINOR) "." \
      PEFT_CPP_STRINGIFY(PEFT_CPP_VERSION_PATCH)

namespace peft {
inline constexpr const char* kVersion = PEFT_CPP_VERSION;
}  // namespace peft
