#!/usr/bin/env bash
# Installs what is missing, builds everything, runs peft_conformance (golden files written by
# Python PEFT: the copy in tests/fixtures, or $PEFT_FIXTURES) and the whole ctest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
# Our own test build treats warnings as errors (-Wall -Wextra -Wshadow, cmake/PeftHelpers.cmake);
# other builds (users', bench, the GPU check with another compiler) only show them.
PEFT_CMAKE_ARGS="-DPEFT_WARNINGS_AS_ERRORS=ON ${PEFT_CMAKE_ARGS:-}" bash scripts/build.sh
build_dir="${PEFT_BUILD_DIR:-build}"
echo "== build finished in $(( $(date +%s) - start )) s"
echo "== peft_conformance (FAIL/SKIP lines and summary)"
"$build_dir/tests/peft_conformance" | grep -v '^PASS ' || true
echo "== ctest"
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)"
