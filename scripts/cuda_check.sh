#!/usr/bin/env bash
# CUDA and Python-PEFT cross-checks, for a machine with an NVIDIA GPU whose python3 has torch
# (CUDA build), transformers and peft. Builds peft-cpp against pip torch's LibTorch 2.x into
# ./build-cuda and runs, each step logged to $OUT/<step>.log and timed:
#   build      configure + build everything (tests, tools, examples, bench when benchmark is found)
#   ctest      the whole ctest suite (CUDA tests run instead of skipping), then the CUDA tests alone
#   resaved    peft_conformance --resave, then Python PEFT reads our files back:
#              tests/python/check_resaved.py (configs) and check_resaved_models.py (adapters, outputs)
#   hf         tests/python/compare_hf_models.py (our GPT-2/Llama vs transformers, both directions)
#   tokenizer  tests/python/compare_tokenizer.py (our byte-level BPE vs HF tokenizers)
#   finetune   peft-finetune on CUDA with tiny settings
#   bench      bench (CUDA bf16, quick) and bench/compare_peft.py side by side
# Environment: STEPS (default: all of the above), OUT (default build-cuda/logs),
# PEFT_DEPS_PREFIX (a prefix holding nlohmann_json, yaml-cpp, GTest, benchmark when the system
# lacks them, e.g. Debian packages unpacked with dpkg -x), PEFT_FIXTURES (golden files).
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-build ctest resaved hf tokenizer finetune bench}"   # also: cuda (CUDA tests only)
B=build-cuda
OUT="${OUT:-$B/logs}"
mkdir -p "$OUT"
summary=()
step() {  # step NAME COMMAND...: run, log, time, remember the outcome
  local name=$1; shift
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  local t0=$(date +%s)
  echo "=== $name"
  ( "$@" ) >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL_LINES:-25}" "$OUT/$name.log"
  summary+=("$name: rc=$rc $(( $(date +%s) - t0 )) s")
  return $rc
}

do_build() {
  local torch_prefix deps=() gen=()
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  if [ -n "${PEFT_DEPS_PREFIX:-}" ]; then
    local d=$PEFT_DEPS_PREFIX/usr
    deps=(-Dnlohmann_json_DIR=$d/share/cmake/nlohmann_json -Dyaml-cpp_DIR=$d/lib/x86_64-linux-gnu/cmake/yaml-cpp
          -DGTest_DIR=$d/lib/x86_64-linux-gnu/cmake/GTest -DGTEST_ROOT=$d
          -Dbenchmark_DIR=$d/lib/x86_64-linux-gnu/cmake/benchmark)
    export LD_LIBRARY_PATH=$d/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  fi
  command -v ninja >/dev/null && gen=(-G Ninja)
  local bench=OFF
  [ -f bench/CMakeLists.txt ] && bench=ON
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch,sys;print("torch",torch.__version__,"cuda",torch.version.cuda,torch.cuda.get_device_name(0))'
  ${CXX:-c++} --version | head -1
  cmake -S . -B $B "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DPEFT_BUILD_BENCH=$bench "${deps[@]}" || return 1
  # BUILD_TARGETS: only these targets (default: everything).
  local targets=()
  for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
  cmake --build $B -j"$(nproc)" "${targets[@]}" || return 1
  # libstdc++ must come before LibTorch (see CMakeLists.txt, PEFT_STDCXX_FIRST).
  readelf -d $B/tests/peft_unit_tests 2>/dev/null | grep NEEDED | head -4
}

do_ctest() {
  ctest --test-dir $B --output-on-failure -j8 -E consumer_find_package
  local rc=$?
  do_cuda
  return $rc
}

do_cuda() {  # the CUDA tests alone (they skip in CI)
  $B/tests/peft_unit_tests --gtest_filter='*Cuda*:*CUDA*:*Gpu*' 2>&1 | grep -E '^\[ +(OK|FAILED|SKIPPED) +\]|Failure|Expected|Which|  Actual' | head -60
}

do_resaved() {
  local r=$B/resave
  rm -rf "$r"
  $B/tests/peft_conformance --resave "$r" | grep -v '^PASS' ; local f=${PEFT_FIXTURES:-tests/fixtures}
  [ -d "$f/peft" ] && f=$f/peft
  python3 tests/python/check_resaved.py "$r" "$f" | grep -v '^PASS' ; local a=${PIPESTATUS[0]}
  python3 tests/python/check_resaved_models.py "$r" "$f"; local b=$?
  return $(( a || b ))
}

do_py() {  # do_py SCRIPT: a Python comparison script taking the build dir
  [ -f "$1" ] || { echo "$1 not here"; return 0; }
  PYTHONUNBUFFERED=1 timeout 240 python3 "$1" $B
}

do_finetune() {
  local t=$B/ft && rm -rf $t && mkdir -p $t
  local exe=$B/tools/peft-finetune
  [ -x $exe ] || exe=$(find $B -name peft-finetune -type f | head -1)
  [ -n "$exe" ] || { echo "no peft-finetune"; return 0; }
  cat >$t/cuda.yaml <<EOF
base_model: builtin:tiny-llama
output_dir: $PWD/$t/run
data: {file: $PWD/data/corpus/part_b.txt, heldout_fraction: 0.05}
training: {steps: 60, batch_size: 16, seq_len: 128, lr: 3.0e-3, warmup_steps: 5, seed: 1, device: cuda, dtype: bfloat16, eval_every: 20, save_every: 30, log_every: 10}
lora: {r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj, up_proj]}
EOF
  timeout 180 $exe --config $t/cuda.yaml
}

do_bench() {  # the quick paired-step bench on CUDA bf16, then Python PEFT on the same shapes
  local exe=$B/bench/peft_bench json=$OUT/bench_cuda.json
  [ -x $exe ] || { echo "no peft_bench"; return 0; }
  BENCH_QUICK=1 timeout 150 $exe --benchmark_filter="${BENCH_CUDA_FILTER:-^cuda_bf16/paired_step/}" \
    --benchmark_out=$json --benchmark_out_format=json
  [ -f bench/compare_peft.py ] && PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_peft.py --device cuda \
    --dtype bf16 --shapes 2048x2048,4096x4096 --ranks 16 --iters 30 --ours $json
}

step build do_build || { printf '%s\n' "${summary[@]}"; exit 1; }
step ctest do_ctest
step cuda do_cuda
step resaved do_resaved
step hf do_py tests/python/compare_hf_models.py
step tokenizer do_py tests/python/compare_tokenizer.py
step finetune do_finetune
step bench do_bench
echo "=== summary"
printf '%s\n' "${summary[@]}"
