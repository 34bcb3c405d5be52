# c10d for data parallelism (include/peft/train/distributed.hpp). LibTorch itself carries
# ProcessGroupGloo (and ProcessGroupNCCL in CUDA builds); only src/train/distributed.cpp includes
# their headers, so consumers of an installed peft need neither gloo's headers nor these macros.
#   Gloo: needs gloo's headers at build time (Debian: libgloo-dev; pip's LibTorch may ship them
#         under its include directory). Without them peft::train builds, and
#         ProcessGroup::create refuses gloo with a ConfigError saying so.
#   NCCL: -DPEFT_WITH_NCCL=ON with a CUDA LibTorch (pip's LibTorch 2.x): one GPU per rank.
option(PEFT_WITH_NCCL "Build c10d NCCL into peft::train's process groups (needs a CUDA LibTorch)" OFF)

function(peft_enable_c10d target source)
  find_path(PEFT_GLOO_INCLUDE_DIR gloo/algorithm.h PATHS ${TORCH_INCLUDE_DIRS})
  find_path(PEFT_C10D_INCLUDE_DIR torch/csrc/distributed/c10d/ProcessGroupGloo.hpp PATHS ${TORCH_INCLUDE_DIRS})
  set(_defs "")
  if(PEFT_GLOO_INCLUDE_DIR AND PEFT_C10D_INCLUDE_DIR)
    list(APPEND _defs PEFT_HAVE_C10D_GLOO USE_C10D_GLOO)
    # Not for /usr/include itself: a -I there breaks libstdc++'s #include_next <stdlib.h>.
    if(NOT PEFT_GLOO_INCLUDE_DIR IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
      set_property(SOURCE ${source} APPEND PROPERTY INCLUDE_DIRECTORIES ${PEFT_GLOO_INCLUDE_DIR})
    endif()
    message(STATUS "peft: data parallelism with c10d Gloo (gloo headers: ${PEFT_GLOO_INCLUDE_DIR})")
  else()
    message(STATUS "peft: gloo's headers not found (Debian: libgloo-dev): no c10d Gloo process groups")
  endif()
  if(PEFT_WITH_NCCL)
    find_path(PEFT_C10D_NCCL_INCLUDE_DIR torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp PATHS ${TORCH_INCLUDE_DIRS})
    if(NOT PEFT_C10D_NCCL_INCLUDE_DIR)
      message(FATAL_ERROR "PEFT_WITH_NCCL=ON but this LibTorch has no ProcessGroupNCCL.hpp")
    endif()
    list(APPEND _defs PEFT_HAVE_C10D_NCCL USE_C10D_NCCL)
    message(STATUS "peft: data parallelism with c10d NCCL")
  endif()
  if(_defs)
    set_property(SOURCE ${source} APPEND PROPERTY COMPILE_DEFINITIONS ${_defs})
  endif()
endfunction()
