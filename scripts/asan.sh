#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/) of the library, the tools and
# every test, then the whole ctest suite under it: unit tests, conformance and the CLI tests of
# peft-inspect, peft-merge, peft-finetune (single process and data parallel) and peft-generate.
# LibTorch itself is not instrumented; our code and the LibTorch headers it inlines are.
# consumer_find_package is left out (it links an outside project against the installed library,
# which would need the sanitizer runtime too; it tests packaging, not our code).
#   scripts/asan.sh                       # build + run everything (about an hour on 2 cores)
#   scripts/asan.sh -R peft_unit_tests    # extra arguments go to ctest
#   PEFT_ASAN_GTEST_FILTER='BadInputs*' scripts/asan.sh -R peft_unit_tests
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${PEFT_ASAN_BUILD_DIR:-build-asan}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-sanitize=vptr -fno-omit-frame-pointer"
# Timeouts and the CLI scripts' own time limits are scaled: instrumented code runs ~2-4x slower.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_INSTALL=OFF \
  -DPEFT_TEST_TIMEOUT_SCALE=4 \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

# Leaks: LibTorch keeps global registries alive until exit; report only leaks in our code.
supp="$build_dir/lsan.supp"
printf 'leak:libtorch\nleak:libc10\nleak:libgomp\nleak:libprotobuf\nleak:libdnnl\nleak:libopenblas\nleak:libgloo\n' >"$supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0}"
export LSAN_OPTIONS="suppressions=$PWD/$supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PEFT_TEST_TIME_SCALE=4
[ -n "${PEFT_ASAN_GTEST_FILTER:-}" ] && export GTEST_FILTER="$PEFT_ASAN_GTEST_FILTER"
status=0
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" -E consumer_find_package "$@" \
  2>&1 | tee "$build_dir/ctest.log" || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# A sanitizer report in any test's output fails the run even where a script tolerated the exit.
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$build_dir/ctest.log"; then
  echo "== sanitizer reports:"; grep -nE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$build_dir/ctest.log" | head -20
  status=1
fi
echo "== asan: $([ $status -eq 0 ] && echo clean || echo FAILED)"
exit $status
