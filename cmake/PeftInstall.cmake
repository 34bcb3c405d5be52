# install() + export: headers, the library, peftTargets.cmake (namespace peft::),
# peftConfig.cmake (finds Torch, nlohmann_json and yaml-cpp) and peftConfigVersion.cmake.
include(CMakePackageConfigHelpers)

set(PEFT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/peft CACHE STRING
    "Where peftConfig.cmake is installed")

install(TARGETS peft EXPORT peftTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/peft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT peftTargets NAMESPACE peft:: DESTINATION ${PEFT_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/peftConfig.cmake.in
  ${PROJECT_BINARY_DIR}/peftConfig.cmake INSTALL_DESTINATION ${PEFT_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/peftConfig.cmake
  ${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/PeftDependencies.cmake
  DESTINATION ${PEFT_INSTALL_CMAKEDIR})
