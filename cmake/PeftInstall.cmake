# Exports every component (peft::format, lora, models, text, train and the umbrella peft::peft):
# installed under <prefix>/lib/cmake/peft, and as a build-tree package (find_package(peft) with
# peft_DIR=<build dir>). Only with PEFT_INSTALL (a project that adds peft as a subdirectory
# links the targets directly and needs neither).
if(NOT PEFT_INSTALL)
  return()
endif()
include(CMakePackageConfigHelpers)

set(PEFT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/peft CACHE STRING
    "Where peftConfig.cmake is installed")

# One export set per component, so a consumer loads (and finds dependencies for) only the
# components it asks for.
foreach(_c format lora models text train)
  set(_set peft-${_c}-targets)
  install(TARGETS peft_${_c} EXPORT ${_set}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(EXPORT ${_set} NAMESPACE peft:: DESTINATION ${PEFT_INSTALL_CMAKEDIR})
  export(EXPORT ${_set} NAMESPACE peft:: FILE ${PROJECT_BINARY_DIR}/${_set}.cmake)
endforeach()
install(TARGETS peft EXPORT peft-targets)
install(EXPORT peft-targets NAMESPACE peft:: DESTINATION ${PEFT_INSTALL_CMAKEDIR})
export(EXPORT peft-targets NAMESPACE peft:: FILE ${PROJECT_BINARY_DIR}/peft-targets.cmake)

# The same config file serves both trees; the build tree's also finds nlohmann_json, which the
# build-tree targets still reference.
foreach(_tree install build)
  if(_tree STREQUAL "install")
    set(PEFT_CONFIG_BUILD_TREE OFF)
    set(_out ${PROJECT_BINARY_DIR}/package/peftConfig.cmake)
  else()
    set(PEFT_CONFIG_BUILD_TREE ON)
    set(_out ${PROJECT_BINARY_DIR}/peftConfig.cmake)
  endif()
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/peftConfig.cmake.in ${_out}
    INSTALL_DESTINATION ${PEFT_INSTALL_CMAKEDIR})
endforeach()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
configure_file(${PROJECT_SOURCE_DIR}/cmake/PeftDependencies.cmake
               ${PROJECT_BINARY_DIR}/PeftDependencies.cmake COPYONLY)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/peft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES
  ${PROJECT_BINARY_DIR}/package/peftConfig.cmake
  ${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/PeftDependencies.cmake
  DESTINATION ${PEFT_INSTALL_CMAKEDIR})
if(PEFT_BUILD_TOOLS)
  install(TARGETS peft-inspect peft-merge peft-finetune peft-generate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/examples/train/default.yaml
          DESTINATION ${CMAKE_INSTALL_DATADIR}/peft/examples/train)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/data/corpus ${PROJECT_SOURCE_DIR}/data/instructions
          DESTINATION ${CMAKE_INSTALL_DATADIR}/peft/data OPTIONAL)
endif()
