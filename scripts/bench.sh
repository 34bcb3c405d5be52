#!/usr/bin/env bash
# Builds and runs peft_bench (Google Benchmark) in ./build-bench. Default: the 2048x2048 shapes,
# r=16, fp32 CPU (and bf16 CUDA if present). Arguments go to peft_bench, e.g.
#   scripts/bench.sh --benchmark_filter=.            # every shape and rank (long)
#   scripts/bench.sh --benchmark_repetitions=5
# BENCH_QUICK=1 (a GPU run that must fit in ~3 minutes): only the paired steps of 2048x2048 and
# 4096x4096 at r=16 (CUDA bf16 when a GPU is present, else CPU fp32), the JSON written to
# build-bench/bench.json, then bench/compare_peft.py on the same shapes with --ours that file when
# python3 has torch and peft. If peft_bench cannot be built there (no LibTorch for C++, no
# libbenchmark), compare_peft.py still runs. BENCH_NO_DEPS=1 skips the apt-get step (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
quick="${BENCH_QUICK:-0}"
[ "$quick" = 0 ] && quick=""
have_gpu=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then have_gpu=1; fi

build() {
  if [ -z "${BENCH_NO_DEPS:-}" ] && command -v apt-get >/dev/null 2>&1; then
    bash scripts/install-deps.sh
    if ! dpkg -s libbenchmark-dev >/dev/null 2>&1; then apt-get install -y --no-install-recommends libbenchmark-dev; fi
  fi
  local extra=""
  # No Debian LibTorch here (e.g. a GPU machine with pip's torch): use the wheel's CMake package.
  if ! dpkg -s libtorch-dev >/dev/null 2>&1 && python3 -c 'import torch' >/dev/null 2>&1; then
    extra="-DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  fi
  PEFT_BUILD_DIR=build-bench PEFT_CMAKE_ARGS="-DPEFT_BUILD_BENCH=ON -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_EXAMPLES=OFF -DPEFT_INSTALL=OFF -DPEFT_BUILD_TOOLS=OFF $extra" \
    bash scripts/build.sh --target peft_bench
}

if [ -z "$quick" ]; then
  build
  if [ "$#" -eq 0 ]; then
    set -- '--benchmark_filter=/2048x2048/t2048/r16/' --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  fi
  exec ./build-bench/bench/peft_bench "$@"
fi

# ---- quick mode ----
json=build-bench/bench.json
if [ -n "$have_gpu" ]; then
  filter='^cuda_bf16/paired_step/'; device=cuda; dtype=bf16
else
  filter='^cpu_fp32/paired_step/2048x2048/'; device=cpu; dtype=fp32
fi
built=""
if (build); then built=1; else echo "bench.sh: peft_bench did not build; running compare_peft.py alone" >&2; fi
if [ -n "$built" ]; then
  mkdir -p build-bench
  BENCH_QUICK=1 ./build-bench/bench/peft_bench "--benchmark_filter=$filter" --benchmark_out="$json" \
    --benchmark_out_format=json "$@"
fi
if python3 -c 'import torch, peft' >/dev/null 2>&1; then
  shapes=2048x2048,4096x4096
  [ "$device" = cpu ] && shapes=2048x2048
  ours=()
  [ -n "$built" ] && [ -f "$json" ] && ours=(--ours "$json")
  python3 bench/compare_peft.py --device "$device" --dtype "$dtype" --shapes "$shapes" --ranks 16 \
    --iters "$([ "$device" = cuda ] && echo 30 || echo 7)" "${ours[@]}"
else
  echo "bench.sh: python3 has no torch/peft; skipping compare_peft.py" >&2
fi
