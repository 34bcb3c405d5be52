#!/usr/bin/env bash
# End-to-end tests of peft-finetune on tiny settings (seconds each):
#   finetune_cli.sh CASE PEFT_FINETUNE SCRATCH_DIR [PEFT_INSPECT]
# CASE: smoke | resume_after_kill | sigint | bad_yaml | instructions | default_run | used_checkpoints
set -uo pipefail
tool=$2
inspect=${4:-}
chatml=$(cd "$(dirname "$0")/../data/instructions" && pwd)/chatml.jinja
source "$(dirname "$0")/cli_common.sh"
cli_setup "$1" "$3"
write_documents data.txt  # a small training text: 120 short documents

write_config() {  # write_config FILE STEPS SAVE_EVERY
  cat > "$1" <<YAML
base_model: builtin:tiny-gpt2
output_dir: out
data:
  file: data.txt
  heldout_fraction: 0.1
training:
  steps: $2
  batch_size: 2
  seq_len: 16
  lr: 3e-3
  warmup_steps: 2
  grad_accum: 2
  max_grad_norm: 1.0
  seed: 7
  threads: 1
  eval_every: 3
  eval_batches: 2
  save_every: $3
  keep_checkpoints: 2
  log_every: 1
lora:
  r: 4
  lora_alpha: 8
  lora_dropout: 0.1
  target_modules: [c_attn, c_fc]
  fan_in_fan_out: true
YAML
}

flip_byte() {  # flip_byte FILE OFFSET: one bit of one byte changed in place
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 16)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

case $case_name in
smoke)
  write_config train.yaml 6 2
  "$tool" --config train.yaml > stdout.txt 2> stderr.txt || { cat stdout.txt stderr.txt; fail "exit code $?"; }
  for f in out/adapter/adapter_config.json out/adapter/adapter_model.safetensors out/metrics.jsonl out/loss.svg \
           out/checkpoints/step-6/trainer_state.json out/checkpoints/step-6/optimizer.safetensors \
           out/checkpoints/step-6/adapter_model.safetensors out/checkpoints/step-4/adapter_config.json; do
    [ -s "$f" ] || fail "missing $f"
  done
  [ -e out/checkpoints/step-2 ] && fail "keep_checkpoints: 2 left step-2 behind"
  grep -q '</svg>' out/loss.svg || fail "loss.svg is not a complete SVG"
  grep -q 'held-out loss' stdout.txt || fail "no held-out loss in the summary"
  grep -q 'merged model' stdout.txt || fail "no merged-model check in the summary"
  [ "$(wc -l < out/metrics.jsonl)" -eq 6 ] || fail "metrics.jsonl should have 6 lines"
  if command -v python3 > /dev/null; then
    python3 - <<'PY' || fail "metrics.jsonl does not parse"
import json
rows = [json.loads(l) for l in open("out/metrics.jsonl")]
assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6], rows
assert all(k in rows[0] for k in ("loss", "lr", "tokens_per_s", "elapsed_s"))
assert "eval_loss" in rows[2] and "eval_loss" in rows[5] and "eval_loss" not in rows[0]
cfg = json.load(open("out/adapter/adapter_config.json"))
assert cfg["peft_type"] == "LORA" and cfg["r"] == 4, cfg
PY
  fi
  if [ -n "$inspect" ]; then
    "$inspect" out/adapter > inspect.txt 2>&1 || { cat inspect.txt; fail "peft-inspect rejects the adapter"; }
  fi
  ;;
resume_after_kill)
  write_config train.yaml 10 2
  mkdir ref && cp data.txt ref/ && write_config ref/train.yaml 10 2
  (cd ref && "$tool" --config train.yaml > stdout.txt 2> stderr.txt) || fail "reference run failed"
  PEFT_FINETUNE_STEP_DELAY_MS=150 "$tool" --config train.yaml > run1.txt 2>&1 &
  pid=$!
  wait_for out/checkpoints/step-4/trainer_state.json $pid || fail "no step-4 checkpoint appeared"
  kill -KILL $pid
  wait $pid 2>/dev/null
  [ -e out/adapter/adapter_model.safetensors ] && fail "the run finished before it was killed"
  "$tool" --config train.yaml --resume > run2.txt 2>&1 || { cat run2.txt; fail "resumed run failed"; }
  grep -q 'resume: from .*step-' run2.txt || fail "the second run did not resume"
  cmp ref/out/adapter/adapter_model.safetensors out/adapter/adapter_model.safetensors \
    || fail "resumed adapter differs from the uninterrupted run's"
  [ "$(tail -n 1 out/metrics.jsonl | grep -o '"step": [0-9]*')" = '"step": 10' ] || fail "last metrics step is not 10"
  [ "$(wc -l < out/metrics.jsonl)" -eq 10 ] || fail "metrics.jsonl should have 10 lines after resuming"
  ;;
sigint)
  write_config train.yaml 50 2
  PEFT_FINETUNE_STEP_DELAY_MS=150 "$tool" --config train.yaml > run1.txt 2> err1.txt &
  pid=$!
  wait_for out/checkpoints/step-2/trainer_state.json $pid || fail "no step-2 checkpoint appeared"
  kill -INT $pid
  wait $pid
  rc=$?
  [ $rc -eq 130 ] || { cat run1.txt err1.txt; fail "exit code $rc, expected 130"; }
  grep -q 'interrupted at step' err1.txt || fail "no interruption message"
  step=$(sed -n 's/.*interrupted at step \([0-9]*\)\/.*/\1/p' err1.txt)
  [ -s "out/checkpoints/step-$step/trainer_state.json" ] || fail "no checkpoint for step $step"
  grep -q "\"step\": $step," "out/checkpoints/step-$step/trainer_state.json" || fail "trainer_state.json step"
  [ -e out/adapter ] && fail "an interrupted run must not write the final adapter"
  ;;
instructions)
  # prompt/completion records: answers before/after, exact match, answers.jsonl, epochs -> steps.
  for i in $(seq 1 40); do printf '{"prompt": "Q: %d?\\nA: ", "completion": "%s"}\n' "$i" "$((i % 2))"; done > pc.jsonl
  write_config train.yaml 1 0
  sed -i -e 's/  file: data.txt/  file: pc.jsonl/' -e 's/  steps: 1$/  num_train_epochs: 2/' train.yaml
  "$tool" --config train.yaml > stdout.txt 2> stderr.txt || { cat stdout.txt stderr.txt; fail "exit code $?"; }
  grep -q '^data: .*(40 prompt_completion records, .*36 train / 4 held-out records, padded per batch; loss on completions only' stdout.txt \
    || { cat stdout.txt; fail "data line"; }
  grep -q '2 epochs of 36 rows in batches of 2 x 2 = 18 steps' stdout.txt || { cat stdout.txt; fail "epochs line"; }
  grep -q '^answers: greedy answers to held-out prompts, before -> after LoRA' stdout.txt || fail "no answers header"
  grep -q '^  "Q: 37?\\nA: " (expected "1"): ".*" -> ".*"' stdout.txt || { cat stdout.txt; fail "no answer line"; }
  grep -q '^answers: exact match on 4 held-out prompts: [0-4]/4 (.*%) -> [0-4]/4' stdout.txt || fail "no exact-match line"
  grep -q 'held-out exact match:    before [0-4]/4 .* -> after [0-4]/4 .*, merged [0-4]/4' stdout.txt || fail "summary line"
  [ "$(wc -l < out/answers.jsonl)" -eq 4 ] || fail "answers.jsonl should have 4 lines"
  [ "$(tail -n 1 out/metrics.jsonl | grep -o '"step": [0-9]*')" = '"step": 18' ] || fail "last metrics step is not 18"
  # messages records rendered with the shipped ChatML template, loss on the assistant turns.
  for i in $(seq 1 20); do
    printf '{"messages": [{"role": "user", "content": "%d?"}, {"role": "assistant", "content": "%s"}]}\n' "$i" "$((i % 2))"
  done > chat.jsonl
  write_config chat.yaml 2 0
  sed -i -e "s|  file: data.txt|  file: chat.jsonl\n  chat_template: $chatml\n  max_length: 128|" -e 's|output_dir: out|output_dir: chat_out|' chat.yaml
  "$tool" --config chat.yaml > chat.txt 2>&1 || { cat chat.txt; fail "messages run: exit code"; }
  grep -q '(20 messages records, .*18 train / 2 held-out records, padded per batch; loss on assistant turns only' chat.txt \
    || { cat chat.txt; fail "messages data line"; }
  grep -q '^  "19?" (expected "1"): ' chat.txt || { cat chat.txt; fail "messages answer line"; }
  # A malformed record: exit 1, one line naming file:line and the field.
  printf '{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n' > bad.jsonl
  sed -i 's/  file: pc.jsonl/  file: bad.jsonl/' train.yaml
  "$tool" --config train.yaml > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 1 ] || fail "malformed record: exit code $rc, expected 1"
  grep -q 'bad.jsonl:2: field "completion" missing' err.txt || { cat err.txt; fail "malformed record message"; }
  ;;
default_run)
  # The embedded default: an instruction fine-tune whose held-out exact match must improve.
  "$tool" > stdout.txt 2> stderr.txt || { cat stdout.txt stderr.txt; fail "exit code $?"; }
  grep -q '^answers: greedy answers to held-out prompts, before -> after LoRA' stdout.txt || fail "no answers"
  [ "$(grep -c '^  "Q: .*(expected ".*"): ".*" -> ".*"' stdout.txt)" -ge 3 ] || { cat stdout.txt; fail "answer lines"; }
  line=$(grep '^answers: exact match on' stdout.txt) || fail "no exact-match line"
  before=$(echo "$line" | sed -n 's/.*prompts: \([0-9]*\)\/.* -> \([0-9]*\)\/.*/\1/p')
  after=$(echo "$line" | sed -n 's/.*prompts: \([0-9]*\)\/.* -> \([0-9]*\)\/.*/\2/p')
  [ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ] || fail "exact match did not improve: $line"
  grep -q 'merged model: ' stdout.txt || fail "no merge check"
  [ -s peft-finetune-out/answers.jsonl ] || fail "no answers.jsonl"
  ;;
bad_yaml)
  printf 'training:\n  steps: 5\n  lr: fast\n' > bad.yaml
  "$tool" --config bad.yaml > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 2 ] || fail "exit code $rc, expected 2"
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt; fail "expected one line on stderr"; }
  grep -q 'bad.yaml:3:7: training.lr = fast: expected a number' err.txt || { cat err.txt; fail "message"; }
  printf 'training:\n  stpes: 5\n' > typo.yaml
  "$tool" --config typo.yaml > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "unknown key: exit code"
  grep -q "typo.yaml:2:3: training.stpes: unknown key.*did you mean .steps." err.txt || { cat err.txt; fail "typo message"; }
  printf 'training: [1, 2\n' > broken.yaml
  "$tool" --config broken.yaml > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "malformed YAML: exit code"
  [ "$(wc -l < err.txt)" -eq 1 ] && grep -q 'broken.yaml:' err.txt || { cat err.txt; fail "malformed YAML message"; }
  "$tool" --bogus > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "unknown option: exit code"
  ;;
used_checkpoints)
  # Checkpoints are verified before a resume uses them, and a used output_dir is not reused
  # silently (docs/checkpoints.md).
  write_config train.yaml 4 2
  "$tool" --config train.yaml > run1.txt 2>&1 || { cat run1.txt; fail "first run failed"; }
  for f in optimizer.safetensors checksums.json; do [ -s "out/checkpoints/step-4/$f" ] || fail "missing $f"; done
  [ -e out/checkpoints/step-4/optimizer.pt ] && fail "a pickled optimizer was written"
  # A fresh run into the used output_dir: exit 2 with the way out, the checkpoints untouched.
  "$tool" --config train.yaml > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 2 ] || fail "fresh run into a used output_dir: exit code $rc, expected 2"
  grep -q 'output_dir = out: already holds checkpoints of a run (newest: step-4).*(hint: pass --resume' err.txt \
    || { cat err.txt; fail "used output_dir message"; }
  [ -d out/checkpoints/step-2 ] && [ -d out/checkpoints/step-4 ] || fail "the refused run touched the checkpoints"
  # A resume under another config: exit 2 naming the key that differs.
  sed 's/  lr: 3e-3/  lr: 1e-3/' train.yaml > other.yaml
  "$tool" --config other.yaml --resume > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 2 ] || { cat err.txt; fail "resume under another config: exit code $rc, expected 2"; }
  grep -q 'resume = out/checkpoints/step-4: the checkpoint belongs to a run with another config: training.lr: "0.003" (checkpoint) vs "0.001" (now)' err.txt \
    || { cat err.txt; fail "another-config message"; }
  # One flipped byte in a checkpoint file: exit 1 naming the file.
  for f in optimizer.safetensors adapter_model.safetensors trainer_state.json; do
    cp -r out/checkpoints/step-4 saved
    flip_byte "out/checkpoints/step-4/$f" 100
    "$tool" --config train.yaml --resume > out.txt 2> err.txt
    rc=$?
    [ $rc -eq 1 ] || { cat err.txt; fail "flipped byte in $f: exit code $rc, expected 1"; }
    grep -q "out/checkpoints/step-4/$f: CRC-32 [0-9a-f]*, checksums.json recorded [0-9a-f]* (the file changed" err.txt \
      || { cat err.txt; fail "flipped byte in $f: message"; }
    rm -rf out/checkpoints/step-4 && mv saved out/checkpoints/step-4
  done
  # A truncated optimizer file, and a checkpoint of the old format (pickled optimizer.pt).
  cp -r out/checkpoints/step-4 saved
  truncate -s -5 out/checkpoints/step-4/optimizer.safetensors
  "$tool" --config train.yaml --resume > out.txt 2> err.txt
  [ $? -eq 1 ] && grep -q 'optimizer.safetensors: [0-9]* bytes, checksums.json recorded [0-9]* (truncated or replaced)' err.txt \
    || { cat err.txt; fail "truncated optimizer file"; }
  rm out/checkpoints/step-4/checksums.json
  mv out/checkpoints/step-4/optimizer.safetensors out/checkpoints/step-4/optimizer.pt
  "$tool" --config train.yaml --resume > out.txt 2> err.txt
  [ $? -eq 1 ] && grep -q 'step-4: written by an older peft-cpp (optimizer.pt' err.txt || { cat err.txt; fail "old checkpoint"; }
  rm -rf out/checkpoints/step-4 && mv saved out/checkpoints/step-4
  # The intact checkpoint resumes, and the run goes on (steps may change), pruning its own.
  "$tool" --config train.yaml --resume --steps 6 > run2.txt 2>&1 || { cat run2.txt; fail "resume failed"; }
  grep -q 'resume: from out/checkpoints/step-4' run2.txt || fail "did not resume from step-4"
  [ -e out/checkpoints/step-2 ] && fail "keep_checkpoints: 2 left step-2 behind"
  [ -s out/checkpoints/step-6/checksums.json ] || fail "no step-6 checkpoint"
  ;;
*)
  fail "unknown case"
  ;;
esac
echo "PASS ($case_name)"
