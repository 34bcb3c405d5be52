# Finds peft's dependencies. Shared by the build and by the installed peftConfig.cmake
# (which sets PEFT_FIND_DEPENDENCY to find_dependency).
if(NOT DEFINED PEFT_FIND_DEPENDENCY)
  macro(PEFT_FIND_DEPENDENCY)
    find_package(${ARGN})
  endmacro()
endif()

include(GNUInstallDirs)
# LibTorch: Debian's libtorch-dev (1.13) or any LibTorch 2.x (CMAKE_PREFIX_PATH=...).
peft_find_dependency(Torch REQUIRED)
peft_find_dependency(nlohmann_json 3.2 REQUIRED)
peft_find_dependency(yaml-cpp REQUIRED)

# yaml-cpp 0.7 exports `yaml-cpp`, 0.8 exports `yaml-cpp::yaml-cpp`.
if(TARGET yaml-cpp::yaml-cpp)
  set(PEFT_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(PEFT_YAML_TARGET yaml-cpp)
endif()
