#!/usr/bin/env bash
# Data-parallel peft-finetune on loopback with c10d Gloo (seconds each):
#   distributed_cli.sh CASE PEFT_FINETUNE PEFT_COMPARE_SAFETENSORS SCRATCH_DIR
# CASE: equivalence | kill_rank | hang_rank | sigint | mismatch | bad_args
set -uo pipefail
tool=$2
compare=$3
source "$(dirname "$0")/cli_common.sh"
cli_setup "$1" "$4"
write_documents data.txt

# write_config FILE OUTPUT_DIR BATCH STEPS [DDP_TIMEOUT] [DROPOUT]
write_config() {
  cat > "$1" <<YAML
base_model: builtin:tiny-gpt2
output_dir: $2
data:
  file: data.txt
  heldout_fraction: 0.1
training:
  steps: $4
  batch_size: $3
  seq_len: 16
  lr: 3e-3
  warmup_steps: 2
  grad_accum: 2
  max_grad_norm: 0.5
  seed: 11
  threads: 1
  eval_every: 3
  eval_batches: 2
  save_every: 2
  keep_checkpoints: 3
  log_every: 1
  ddp_timeout: ${5:-30}
lora:
  r: 4
  lora_alpha: 8
  lora_dropout: ${6:-0.0}
  target_modules: [c_attn, c_fc]
  fan_in_fan_out: true
YAML
}

free_port() { echo $((20000 + (RANDOM * 7 + $$) % 30000)); }

# start_rank RANK WORLD PORT CONFIG LOG [EXTRA ARGS]: one rank the way torchrun starts it.
start_rank() {
  RANK=$1 WORLD_SIZE=$2 LOCAL_RANK=$1 LOCAL_WORLD_SIZE=$2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$3 \
    "$tool" --config "$4" "${@:6}" > "$5" 2>&1 &
}

# start_pair CONFIG FILE: ranks 0 and 1 started by hand (r0, r1; logs rank0.txt, rank1.txt), then
# waits until FILE exists.
start_pair() {
  local port
  port=$(free_port)
  start_rank 0 2 "$port" "$1" rank0.txt
  r0=$!
  start_rank 1 2 "$port" "$1" rank1.txt
  r1=$!
  wait_for "$2" $r0 || { cat rank0.txt rank1.txt; fail "no $2"; }
}

case $case_name in
equivalence)
  # 1 rank with batch 4 = 2 ranks with batch 2 (launcher) = 2 "machines" of 1 rank (loopback).
  write_config one.yaml one 4 6
  write_config two.yaml two 2 6
  write_config nodes.yaml nodes 2 6
  "$tool" --config one.yaml > one.txt 2>&1 || { cat one.txt; fail "1-rank run failed"; }
  "$tool" --config two.yaml --nproc-per-node 2 > two.txt 2>&1 || { cat two.txt; fail "2-rank run failed"; }
  "$compare" one/adapter/adapter_model.safetensors two/adapter/adapter_model.safetensors 1e-5 \
    || fail "2 ranks x batch 2 differ from 1 rank x batch 4"
  grep -q 'data parallel on 2 ranks (gloo, batch 2 per rank)' two.txt || { cat two.txt; fail "no data-parallel line"; }
  [ "$(grep -c '^peft-finetune: config' two.txt)" -eq 1 ] || fail "more than one rank printed the run line"
  [ "$(grep -c '^summary' two.txt)" -eq 1 ] || fail "more than one summary"
  # Same losses and held-out losses per step (metrics.jsonl, written by rank 0).
  [ "$(wc -l < two/metrics.jsonl)" -eq 6 ] || fail "metrics.jsonl should have 6 lines"
  paste -d' ' <(grep -o '"eval_loss": [0-9.e-]*' one/metrics.jsonl) <(grep -o '"eval_loss": [0-9.e-]*' two/metrics.jsonl) |
    awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > 1e-5) { print "eval loss " $2 " vs " $4; exit 1 } }' || fail "eval losses differ"
  grep -q '"world_size": 2' two/checkpoints/step-6/trainer_state.json || fail "checkpoint lacks world_size"
  grep -q '"rank_cpu_rng_states"' two/checkpoints/step-6/trainer_state.json || fail "checkpoint lacks the ranks' RNG states"
  port=$(free_port)
  "$tool" --config nodes.yaml --nproc-per-node 1 --nnodes 2 --node-rank 1 --master-addr 127.0.0.1 --master-port "$port" > node1.txt 2>&1 &
  node1=$!
  "$tool" --config nodes.yaml --nproc-per-node 1 --nnodes 2 --node-rank 0 --master-addr 127.0.0.1 --master-port "$port" > node0.txt 2>&1 \
    || { cat node0.txt node1.txt; fail "node 0 failed"; }
  wait $node1 || { cat node1.txt; fail "node 1 failed"; }
  grep -q 'launcher: 1 rank(s) of 2 on this machine (node 1 of 2)' node1.txt || { cat node1.txt; fail "node 1 launcher line"; }
  "$compare" two/adapter/adapter_model.safetensors nodes/adapter/adapter_model.safetensors 1e-6 \
    || fail "2 machines x 1 rank differ from 1 machine x 2 ranks"
  # Dropout is seeded per rank: the run differs from 1 rank, but is reproducible.
  write_config drop.yaml drop 2 4 30 0.1
  write_config drop2.yaml drop2 2 4 30 0.1
  "$tool" --config drop.yaml --nproc-per-node 2 > drop.txt 2>&1 || { cat drop.txt; fail "dropout run failed"; }
  "$tool" --config drop2.yaml --nproc-per-node 2 > drop2.txt 2>&1 || { cat drop2.txt; fail "dropout run 2 failed"; }
  cmp drop/adapter/adapter_model.safetensors drop2/adapter/adapter_model.safetensors || fail "dropout runs not reproducible"
  # Instruction records on 2 ranks: epochs count global batches; rank 0 alone answers and merges.
  for i in $(seq 1 40); do printf '{"prompt": "Q: %d?\\nA: ", "completion": "%s"}\n' "$i" "$((i % 2))"; done > pc.jsonl
  write_config pc.yaml pc 2 1
  sed -i -e 's/  file: data.txt/  file: pc.jsonl/' -e 's/  steps: 1$/  num_train_epochs: 2/' pc.yaml
  "$tool" --config pc.yaml --nproc-per-node 2 > pc.txt 2>&1 || { cat pc.txt; fail "instruction run failed"; }
  grep -q '2 epochs of 36 rows in batches of 2 x 2 x 2 ranks = 9 steps' pc.txt || { cat pc.txt; fail "epochs line"; }
  [ "$(grep -c '^answers: exact match on 4 held-out prompts' pc.txt)" -eq 1 ] || { cat pc.txt; fail "answers not printed once"; }
  grep -q 'held-out exact match:    before [0-4]/4 .* -> after [0-4]/4 .*, merged [0-4]/4' pc.txt || fail "summary line"
  [ "$(tail -n 1 pc/metrics.jsonl | grep -o '"step": [0-9]*')" = '"step": 9' ] || fail "last metrics step is not 9"
  ;;
kill_rank)
  # SIGKILL of rank 1 mid-run: rank 0 stops at once with a clear message and exit 1, the last
  # checkpoint stays complete, and resuming on 2 ranks ends where an uninterrupted run ends.
  write_config ref.yaml ref 2 10
  write_config run.yaml run 2 10
  "$tool" --config ref.yaml --nproc-per-node 2 > ref.txt 2>&1 || { cat ref.txt; fail "reference run failed"; }
  PEFT_FINETUNE_STEP_DELAY_MS=150 start_pair run.yaml run/checkpoints/step-4/trainer_state.json
  kill -KILL $r1
  exits_within 20 $r0 || { kill -KILL $r0; fail "rank 0 still running 20 s after rank 1 died"; }
  [ "$rc" -eq 1 ] || { cat rank0.txt; fail "rank 0 exit code $rc, expected 1"; }
  grep -q 'rank 0 of 2: .* failed after .* s: .*last complete checkpoint: run/checkpoints/step-[0-9]* (continue with --resume)' rank0.txt \
    || { cat rank0.txt; fail "rank 0's message"; }
  ls -a run/checkpoints | grep -q '^\.tmp' && fail "a partial checkpoint was left"
  [ -e run/adapter ] && fail "a failed run wrote the final adapter"
  "$tool" --config run.yaml --nproc-per-node 2 --resume > resumed.txt 2>&1 || { cat resumed.txt; fail "resume failed"; }
  grep -q 'resume: from run/checkpoints/step-' resumed.txt || { cat resumed.txt; fail "did not resume"; }
  cmp ref/adapter/adapter_model.safetensors run/adapter/adapter_model.safetensors \
    || fail "resumed 2-rank adapter differs from the uninterrupted run's"
  ;;
hang_rank)
  # SIGSTOP of rank 1: rank 0 gives up after ddp_timeout (6 s) with exit 1.
  write_config run.yaml run 2 200 6
  PEFT_FINETUNE_STEP_DELAY_MS=100 start_pair run.yaml run/checkpoints/step-2/trainer_state.json
  kill -STOP $r1
  start=$(date +%s)
  exits_within 40 $r0 || { kill -KILL $r0 $r1; fail "rank 0 still running 40 s after rank 1 hung"; }
  took=$(($(date +%s) - start))
  kill -KILL $r1
  [ "$rc" -eq 1 ] || { cat rank0.txt; fail "rank 0 exit code $rc, expected 1"; }
  [ "$took" -ge 4 ] || { cat rank0.txt; fail "rank 0 stopped after $took s, before the 6 s timeout"; }
  grep -q 'rank 0 of 2: .* failed after [0-9.]* s: .*collectives wait at most 6.0 s' rank0.txt || { cat rank0.txt; fail "message"; }
  ;;
sigint)
  # Ctrl-C on the launcher: every rank stops at the same step after one checkpoint, exit 130;
  # resuming ends where an uninterrupted run ends.
  write_config ref.yaml ref 2 12 30 0.1
  write_config run.yaml run 2 12 30 0.1
  "$tool" --config ref.yaml --nproc-per-node 2 > ref.txt 2>&1 || { cat ref.txt; fail "reference run failed"; }
  PEFT_FINETUNE_STEP_DELAY_MS=150 "$tool" --config run.yaml --nproc-per-node 2 > run1.txt 2> err1.txt &
  pid=$!
  wait_for run/checkpoints/step-2/trainer_state.json $pid || { cat run1.txt err1.txt; fail "no step-2 checkpoint"; }
  kill -INT $pid
  exits_within 60 $pid || { kill -KILL $pid; fail "launcher still running 60 s after Ctrl-C"; }
  [ "$rc" -eq 130 ] || { cat run1.txt err1.txt; fail "exit code $rc, expected 130"; }
  [ "$(grep -c 'interrupted at step' err1.txt)" -eq 1 ] || { cat err1.txt; fail "expected one interruption message"; }
  step=$(sed -n 's/.*interrupted at step \([0-9]*\)\/.*/\1/p' err1.txt)
  grep -q "\"step\": $step," "run/checkpoints/step-$step/trainer_state.json" || fail "no checkpoint for step $step"
  [ "$step" -lt 12 ] || fail "the run finished before the interrupt"
  "$tool" --config run.yaml --nproc-per-node 2 --resume > run2.txt 2>&1 || { cat run2.txt; fail "resume failed"; }
  cmp ref/adapter/adapter_model.safetensors run/adapter/adapter_model.safetensors \
    || fail "interrupted + resumed adapter differs from the uninterrupted run's (per-rank RNG states)"
  ;;
mismatch)
  # A checkpoint of 2 ranks cannot be resumed on 1; a rank cannot see another resume point.
  write_config run.yaml run 2 4
  "$tool" --config run.yaml --nproc-per-node 2 > run.txt 2>&1 || { cat run.txt; fail "2-rank run failed"; }
  "$tool" --config run.yaml --resume --steps 6 > one.txt 2> err.txt
  rc=$?
  [ $rc -eq 1 ] || { cat one.txt err.txt; fail "exit code $rc, expected 1"; }
  grep -q 'written by a run on 2 rank(s), this run has 1 (hint: resume with the same number of ranks, e.g. peft-finetune --nproc-per-node 2' err.txt \
    || { cat err.txt; fail "world-size message"; }
  ;;
bad_args)
  write_config run.yaml run 2 4
  RANK=2 WORLD_SIZE=2 "$tool" --config run.yaml > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 2 ] || { cat err.txt; fail "RANK=2 WORLD_SIZE=2: exit code $rc, expected 2"; }
  grep -q 'environment.RANK = 2: expected an integer in \[0, 1\]' err.txt || { cat err.txt; fail "RANK message"; }
  "$tool" --config run.yaml --nproc-per-node 2 --nnodes 2 > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "--nnodes 2 without --master-port: exit code"
  grep -q 'needs --master-port' err.txt || { cat err.txt; fail "--nnodes message"; }
  "$tool" --config run.yaml --master-port 1234 > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "--master-port without --nproc-per-node: exit code"
  "$tool" --config run.yaml --nproc-per-node 0 > out.txt 2> err.txt
  [ $? -eq 2 ] || fail "--nproc-per-node 0: exit code"
  sed -i 's/ddp_timeout: 30/ddp_backend: nccl/' run.yaml
  "$tool" --config run.yaml --nproc-per-node 2 > out.txt 2> err.txt
  rc=$?
  [ $rc -ne 0 ] || fail "nccl on CPU: exit code 0"
  grep -q 'training.ddp_backend = nccl: NCCL needs CUDA tensors' err.txt || { cat err.txt; fail "nccl message"; }
  ;;
*)
  fail "unknown case"
  ;;
esac
echo "PASS ($case_name)"
