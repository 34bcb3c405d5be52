#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/) of the unit tests,
# peft_conformance and peft-inspect, then runs them. LibTorch itself is not instrumented; our
# code and the LibTorch headers it inlines are. Takes a while (a full build of the tests).
#   scripts/asan.sh                # build + run everything
#   scripts/asan.sh --gtest_filter='BadInputs*'   # extra arguments go to peft_unit_tests
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${PEFT_ASAN_BUILD_DIR:-build-asan}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-sanitize=vptr -fno-omit-frame-pointer"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFT_BUILD_EXAMPLES=OFF \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target peft_unit_tests peft_conformance peft-inspect

# Leaks: LibTorch keeps global registries alive until exit; report only leaks in our code.
supp="$build_dir/lsan.supp"
printf 'leak:libtorch\nleak:libc10\nleak:libgomp\nleak:libprotobuf\nleak:libdnnl\nleak:libopenblas\n' >"$supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0}"
export LSAN_OPTIONS="suppressions=$PWD/$supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PEFT_TEST_TMP="$PWD/$build_dir/tests/tmp"
export PEFT_TEST_DATA="$PWD/tests/data"
mkdir -p "$PEFT_TEST_TMP"
status=0
run() {  # run NAME COMMAND...: full log in $build_dir/NAME.log, its tail here
  local name="$1"; shift
  echo "== $name (ASan+UBSan)"
  if "$@" >"$build_dir/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (exit $?)"; status=1; fi
  grep -v '^PASS ' "$build_dir/$name.log" | grep -E "ERROR: |runtime error|FAIL|PASSED|SKIP|failure|summary|tests ran" | tail -n 20 || true
}
run peft_unit_tests "$build_dir/tests/peft_unit_tests" "$@"
run peft_conformance "$build_dir/tests/peft_conformance"
run peft_inspect bash tests/inspect_bad_inputs.sh "$build_dir/peft-inspect" tests/data
echo "== asan: $([ $status -eq 0 ] && echo clean || echo FAILED)"
exit $status
