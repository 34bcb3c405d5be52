#!/usr/bin/env bash
# peft-finetune and peft-merge on every model family's checkpoint directory (seconds each):
#   families_cli.sh PEFT_FINETUNE PEFT_MERGE HF_MODELS_DIR SCRATCH_DIR
# For each HF_MODELS_DIR/<family>/base (tests/fixtures/hf_models): a few LoRA steps on all-linear
# targets (gradient checkpointing on every other family), the trainer's own reload + merge check,
# then peft-merge of the saved adapter into the family's checkpoint.
set -uo pipefail
finetune=$1
merge=$2
models=$(cd "$3" && pwd)
scratch=$4/families
rm -rf "$scratch"
mkdir -p "$scratch"
cd "$scratch" || exit 1

fail() { echo "FAIL ($family): $*" >&2; exit 1; }

for i in $(seq 1 80); do
  printf 'Record %d: the quick brown fox jumps over the lazy dog %d times.\n\n' "$i" "$((i % 7))"
done > data.txt

n=0
for dir in "$models"/*/; do
  [ -f "$dir/base/config.json" ] || continue
  family=$(basename "$dir")
  vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$dir/base/config.json" | head -1)
  if [ "${vocab:-0}" -lt 257 ] && [ ! -f "$dir/base/tokenizer.json" ]; then
    echo "skip: $family (vocab $vocab, no tokenizer: the byte tokenizer needs 257 ids)"
    continue
  fi
  n=$((n + 1))
  ckpt=$([ $((n % 2)) -eq 0 ] && echo true || echo false)
  mkdir -p "$family"
  cat > "$family/train.yaml" <<YAML
base_model: $dir/base
output_dir: $scratch/$family/out
data:
  file: $scratch/data.txt
  heldout_fraction: 0.1
training:
  steps: 3
  batch_size: 2
  seq_len: 12
  lr: 3e-3
  warmup_steps: 1
  seed: 3
  threads: 1
  eval_every: 0
  eval_batches: 1
  save_every: 0
  log_every: 1
  gradient_checkpointing: $ckpt
lora:
  r: 4
  lora_alpha: 8
  target_modules: all-linear
  init_lora_weights: gaussian
YAML
  "$finetune" --config "$family/train.yaml" > "$family/stdout.txt" 2> "$family/stderr.txt"
  rc=$?
  [ $rc -eq 0 ] || { cat "$family/stdout.txt" "$family/stderr.txt"; fail "peft-finetune exit code $rc"; }
  [ -s "$family/out/adapter/adapter_model.safetensors" ] || fail "no adapter written"
  grep -q 'merged model' "$family/stdout.txt" || fail "no merged-model check in the summary"
  "$merge" --base "$dir/base" --adapter "$family/out/adapter" --out "$family/merged" --quiet > "$family/merge.txt" 2>&1
  rc=$?
  [ $rc -eq 0 ] || { cat "$family/merge.txt"; fail "peft-merge exit code $rc"; }
  [ -s "$family/merged/config.json" ] || fail "peft-merge wrote no config.json"
  echo "ok: $family (gradient_checkpointing $ckpt)"
done
[ "$n" -gt 0 ] || { echo "FAIL: no families under $models" >&2; exit 1; }
