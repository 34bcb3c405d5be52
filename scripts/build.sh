#!/usr/bin/env bash
# Configures and builds peft-cpp into ./build (or $PEFT_BUILD_DIR). Extra arguments are passed
# to `cmake --build` (e.g. --target peft_config_demo).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${PEFT_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" ${PEFT_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)" "$@"
