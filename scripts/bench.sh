#!/usr/bin/env bash
# Builds and runs peft_bench (Google Benchmark) in ./build-bench. Default: the 2048x2048 shapes,
# r=16, fp32 CPU (and bf16 CUDA if present). Arguments go to peft_bench, e.g.
#   scripts/bench.sh --benchmark_filter=.            # every shape and rank (long)
#   scripts/bench.sh --benchmark_repetitions=5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then apt-get install -y --no-install-recommends libbenchmark-dev; fi
PEFT_BUILD_DIR=build-bench PEFT_CMAKE_ARGS="-DPEFT_BUILD_BENCH=ON -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_INSTALL=OFF" \
  bash scripts/build.sh --target peft_bench
if [ "$#" -eq 0 ]; then
  set -- '--benchmark_filter=/2048x2048/t2048/r16/' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
fi
exec ./build-bench/bench/peft_bench "$@"
