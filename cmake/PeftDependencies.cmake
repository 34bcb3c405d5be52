# Finds what the components in PEFT_FIND_COMPONENTS need: the build passes all of them; the
# installed peftConfig.cmake passes the requested ones with their dependencies, so that
# find_package(peft COMPONENTS lora) needs LibTorch only, and yaml-cpp only comes with `train`.
if(NOT COMMAND peft_find_dependency)
  macro(peft_find_dependency)
    find_package(${ARGN})
  endmacro()
endif()

set(_peft_torch_components lora models text train)
set(_peft_needs_torch OFF)
foreach(_c IN LISTS PEFT_FIND_COMPONENTS)
  if(_c IN_LIST _peft_torch_components)
    set(_peft_needs_torch ON)
  endif()
endforeach()

if(_peft_needs_torch)
  # Debian's libtorch-dev (1.13) or any LibTorch 2.x (CMAKE_PREFIX_PATH=...).
  peft_find_dependency(Torch REQUIRED)
  # Link LibTorch's imported targets, not the expanded paths TORCH_LIBRARIES also holds, so that
  # an installed peft follows the consumer's LibTorch instead of the one it was built with.
  set(PEFT_TORCH_LINK "")
  foreach(_lib IN LISTS TORCH_LIBRARIES)
    if(TARGET ${_lib})
      list(APPEND PEFT_TORCH_LINK ${_lib})
    endif()
  endforeach()
  # LibTorch >= 2.5 from pip exports the std::filesystem symbols of a statically linked libstdc++
  # (pytorch/pytorch#133437); a program using std::filesystem then binds to that copy and crashes
  # (seen on torch 2.11). With libstdc++ ahead of LibTorch on the link line, the linker binds
  # those references to libstdc++'s versioned symbols instead.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND DEFINED Torch_VERSION AND Torch_VERSION VERSION_GREATER_EQUAL 2.5)
    list(PREPEND PEFT_TORCH_LINK stdc++)
  endif()
endif()

# PCRE2 (every component: the config regexes of peft::format/lora and the tokenizers' Split
# patterns) and utf8proc (peft::text's normalizers), from pkg-config: Debian ships no CMake
# package for either. The imported targets are GLOBAL so that the installed package's targets
# (static libraries link them as LINK_ONLY dependencies) find them in any directory.
peft_find_dependency(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::PCRE2)
  pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET GLOBAL libpcre2-8)
endif()
if("text" IN_LIST PEFT_FIND_COMPONENTS AND NOT TARGET PkgConfig::UTF8PROC)
  pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET GLOBAL libutf8proc)
endif()

# zlib (every component): peft::format's CRC-32 (format/checksum.hpp, training checkpoints).
peft_find_dependency(ZLIB REQUIRED)

# nlohmann_json is used inside peft's sources only; an installed peft does not need it.
if(PEFT_BUILDING OR PEFT_BUILD_TREE_PACKAGE)
  peft_find_dependency(nlohmann_json 3.2 REQUIRED)
endif()

if("train" IN_LIST PEFT_FIND_COMPONENTS)
  peft_find_dependency(yaml-cpp REQUIRED)
  # yaml-cpp 0.7 exports `yaml-cpp`, 0.8 exports `yaml-cpp::yaml-cpp`.
  if(TARGET yaml-cpp::yaml-cpp)
    set(PEFT_YAML_TARGET yaml-cpp::yaml-cpp)
  else()
    set(PEFT_YAML_TARGET yaml-cpp)
  endif()
endif()
