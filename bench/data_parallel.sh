#!/usr/bin/env bash
# Throughput of peft-finetune on 1 rank and on 2 ranks (--nproc-per-node 2, c10d Gloo on
# loopback), same global batch, same steps, figures for bench/RESULTS.md:
#   bench/data_parallel.sh PEFT_FINETUNE [BASE_MODEL] [STEPS] [SEQ_LEN] [GLOBAL_BATCH]
# BASE_MODEL: builtin:tiny-llama (default) or a Hugging Face Llama directory (e.g. one written by
# the snippet in bench/RESULTS.md). Prints one line per setting: tokens/s over the training steps
# (the summary's tokens / the last metrics record's elapsed_s) and the wall time of the command.
set -euo pipefail
tool=$(realpath "$1")
base=${2:-builtin:tiny-llama}
steps=${3:-30}
seq=${4:-128}
global=${5:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for i in $(seq 1 400); do
  printf 'Document %d: the quick brown fox jumps over the lazy dog %d times, then it rests for %d minutes.\n\n' "$i" "$((i % 7))" "$((i % 5))"
done > data.txt
[ -d "$base" ] && base=$(realpath "$base")

run() {  # run NAME THREADS BATCH [launcher args...]
  local name=$1 threads=$2 batch=$3
  shift 3
  cat > "$name.yaml" <<YAML
base_model: $base
output_dir: $name
data: {file: data.txt, heldout_fraction: 0.05}
training: {steps: $steps, batch_size: $batch, seq_len: $seq, lr: 1e-3, warmup_steps: 2, seed: 0,
           threads: $threads, eval_every: 0, eval_batches: 1, save_every: 0, log_every: 10}
lora: {r: 16, lora_alpha: 32, target_modules: all-linear}
YAML
  local t0 t1
  t0=$(date +%s.%N)
  "$tool" --config "$name.yaml" "$@" > "$name.txt" 2>&1 || { cat "$name.txt"; exit 1; }
  t1=$(date +%s.%N)
  # tokens from the summary; seconds from the last metrics.jsonl record (elapsed_s, full precision)
  local tokens secs
  tokens=$(sed -n 's/^  steps: *[0-9]*, \([0-9]*\) tokens,.*/\1/p' "$name.txt")
  secs=$(tail -n 1 "$name/metrics.jsonl" | sed -n 's/.*"elapsed_s": \([0-9.e+-]*\).*/\1/p')
  awk -v n="$name" -v k="$tokens" -v s="$secs" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "%-26s %8d tokens  %7.2f s training  %9.0f tokens/s  %6.1f s wall\n", n, k, s, k / s, b - a }'
}

echo "base $base, $steps steps, seq $seq, global batch $global, $(nproc) cores"
run one_rank_1_thread 1 "$global"
run one_rank_2_threads 2 "$global"
run two_ranks_1_thread_each 1 $((global / 2)) --nproc-per-node 2
