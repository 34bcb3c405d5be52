# Installs the peft build into WORK_DIR/prefix and builds and runs consumer projects against it,
# as a user would: the LoRA core alone (COMPONENTS lora, with yaml-cpp and nlohmann_json made
# unfindable, and neither on its compile or link lines), the umbrella, and the LoRA core again
# from the build tree (peft_DIR = the build directory, no install).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${PEFT_BUILD_DIR} --prefix ${WORK_DIR}/prefix
                OUTPUT_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install failed (${rc})")
endif()

function(consumer name)
  cmake_parse_arguments(C "" "" "ARGS" ${ARGN})
  set(build ${WORK_DIR}/${name})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${build} -DCMAKE_BUILD_TYPE=Release
                          -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DTorch_DIR=${TORCH_DIR} ${C_ARGS}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name}: configuring the consumer failed (${rc}):\n${out}\n${err}")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name}: building the consumer failed (${rc}):\n${out}\n${err}")
  endif()
  execute_process(COMMAND ${build}/peft_consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "${name}: ${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name}: the consumer failed (${rc})")
  endif()
endfunction()

function(expect_no_mention name)
  file(READ ${WORK_DIR}/${name}/compile_commands.json compile)
  file(READ ${WORK_DIR}/${name}/CMakeFiles/peft_consumer.dir/link.txt link)
  foreach(word yaml nlohmann)
    if(compile MATCHES "${word}" OR link MATCHES "${word}")
      message(FATAL_ERROR "${name}: `${word}` is on the consumer's compile or link line:\n${compile}\n${link}")
    endif()
  endforeach()
endfunction()

set(no_extras -DCMAKE_DISABLE_FIND_PACKAGE_yaml-cpp=ON -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON)
consumer(lora ARGS -DCONSUMER_COMPONENTS=lora "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" ${no_extras})
expect_no_mention(lora)
consumer(umbrella ARGS "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
consumer(build_tree ARGS -DCONSUMER_COMPONENTS=lora -Dpeft_DIR=${PEFT_BUILD_DIR})
