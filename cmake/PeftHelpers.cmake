# Helpers shared by every peft target.
include(GNUInstallDirs)

option(PEFT_WARNINGS_AS_ERRORS "Treat compiler warnings in peft's own code as errors" OFF)

# peft's warning set for a target's own sources (LibTorch's and GoogleTest's headers come from
# imported targets and count as system headers, so they do not trip it).
function(peft_target_warnings target)
  target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wshadow>)
  if(PEFT_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU,Clang>:-Werror>)
  endif()
endfunction()

# peft_add_library(<component> <sources>...): the library peft_<component>, exported and
# installed as peft::<component>, with peft's include directory, C++17 and warnings.
function(peft_add_library component)
  set(target peft_${component})
  add_library(${target} ${ARGN})
  add_library(peft::${component} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${component} CXX_EXTENSIONS OFF
                                             POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                              $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  peft_target_warnings(${target})
endfunction()
